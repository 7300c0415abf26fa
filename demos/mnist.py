"""Draw a digit: three MNIST classifiers side by side on what you draw (the drawing is
made to look like an MNIST digit first: models.mnist.preprocess_drawing)."""
from pathlib import Path

import gradio as gr
import numpy as np
import torch
from PIL import Image

from core import checkpoints
from core.errors import BadInput
from core.plots import curves
from core.results import Entry, Figure
from core.ui import drawing_canvas, user_errors
from models import feature_maps
from models.mnist import (ARCHS, MEAN, STD, checkpoint_name, load_model, predict, preprocess_drawing, preprocess_photo,
                          train_command)

TITLE = "Draw a digit (MNIST)"
LABELS = {"cnn": "Bootcamp CNN", "lenet": "LeNet-style CNN", "mlp": "MLP 784-256-128-64-10"}
EXAMPLES = Path(__file__).parent / "examples" / "mnist"
# The editor can still send the last stroke's picture after its clear button was pressed (its
# change is sent when the picture is ready, and the request may land after Clear's); so Clear
# presses Classify a moment later, which answers for what the canvas holds then.
CLASSIFY_AFTER_CLEAR_MS = 1500
CLEAR_JS = f"""() => {{
  document.querySelector('#mnist-sketchpad button[aria-label="Clear canvas"]')?.click();
  setTimeout(() => document.querySelector('#mnist-classify')?.click(), {CLASSIFY_AFTER_CLEAR_MS});
}}"""


def models() -> list[str]:
    """The model names classify() accepts; "cnn" is the bootcamp CNN."""
    return list(ARCHS)


def classify_preprocessed(digit: np.ndarray, model: str = "cnn") -> dict[str, float]:
    if model not in ARCHS:
        raise BadInput(f"Unknown model {model!r}; choose one of {models()}.")
    probs = predict(load_model(model), digit)
    return {str(d): float(p) for d, p in enumerate(probs)}


def classify(image, model: str = "cnn") -> dict[str, float]:
    """Probabilities for "0".."9" from one model, given a Sketchpad value or a uint8 image
    (HxW, HxWx3 or HxWx4, either polarity). Raises BadInput for an empty canvas."""
    return classify_preprocessed(preprocess_drawing(image), model)


def predict_all(image, photo: bool = False):
    """The tab's action: every model's probabilities and the 28x28 image they saw, for a drawing
    or (photo=True) a photo of a digit written on paper."""
    try:
        digit = preprocess_photo(image) if photo else preprocess_drawing(image)
    except BadInput as e:
        return (*[None] * len(ARCHS), None, str(e))
    labels = []
    for name in ARCHS:
        try:
            labels.append(classify_preprocessed(digit, name))
        except checkpoints.MissingCheckpoint as e:
            labels.append(None)
            gr.Warning(str(e))
    seen = Image.fromarray((digit * 255).astype(np.uint8)).resize((140, 140), Image.Resampling.NEAREST)
    return (*labels, seen, "")


def predict_photo(image):
    return predict_all(image, photo=True)


def inside(image, model: str = "cnn", photo: bool = False) -> list[tuple[Image.Image, str]]:
    """Inside one model for a drawing (or a photo), as (picture, caption) pairs: the 28x28 digit
    it reads, every layer's output, and where it looked for the digit it chose. An empty canvas: []."""
    if model not in ARCHS:
        raise BadInput(f"Unknown model {model!r}; choose one of {models()}.")
    try:
        digit = preprocess_photo(image) if photo else preprocess_drawing(image)
    except BadInput:
        return []  # the prediction's status already says why
    net = load_model(model)
    x = torch.from_numpy((digit - MEAN) / STD).float().view(1, 1, 28, 28)
    layers = feature_maps.layers_of(net)
    outputs, scores = feature_maps.layer_outputs(net, x, layers)
    said = int(scores.argmax())
    pixels = (digit * 255).astype(np.uint8)
    shown = [(big(pixels), "the input: 28x28 pixels")]
    shown += [(Image.fromarray(picture), caption) for picture, caption in feature_maps.captioned(layers, outputs)]
    convs = [layer for layer in layers if isinstance(layer.module, torch.nn.Conv2d)]
    heat = feature_maps.grad_cam(net, x, feature_maps.shown_module(net, convs[-1]) if convs else None, said)
    looked = f"where {convs[-1].name} looked" if convs else "the pixels that counted most"
    shown.append((Image.fromarray(feature_maps.overlay(pixels, heat)), f"{looked} for the {said} it says (Grad-CAM)"
                  if convs else f"{looked} for the {said} it says (gradient x input)"))
    return shown


def big(pixels: np.ndarray, size: int = 168) -> Image.Image:
    return Image.fromarray(pixels).resize((size, size), Image.Resampling.NEAREST)


def cleared() -> tuple:
    """What the outputs of predict_all show for an empty canvas: no answers, no image, no note."""
    return (*[None] * len(ARCHS), None, "")


def mistakes_gallery(model: str = "cnn") -> list[tuple[Image.Image, str]]:
    """Test digits the model gets wrong, as (image, caption) pairs, from the saved
    mistakes in its checkpoint folder."""
    path = checkpoints.find(checkpoint_name(model))
    if path is None or not (path / "mistakes.safetensors").exists():
        return []
    from safetensors.numpy import load_file

    m = load_file(str(path / "mistakes.safetensors"))
    return [(Image.fromarray(img).resize((84, 84), Image.Resampling.NEAREST),
             f"true {label}, said {pred} ({conf:.0%})")
            for img, label, pred, conf in zip(m["images"], m["label"], m["predicted"], m["confidence"])]


def model_card(model: str = "cnn") -> tuple[str, object]:
    """A markdown summary and the training curves of one model's checkpoint."""
    if model not in ARCHS:
        raise BadInput(f"Unknown model {model!r}; choose one of {models()}.")
    metrics = checkpoints.load_metrics(checkpoint_name(model))
    if not metrics:
        return f"No checkpoint yet: run `{train_command(model)}`.", None
    errors = round((1 - metrics["test_accuracy"]) * metrics["test_images"])
    text = (f"**{LABELS[model]}**: test accuracy **{metrics['test_accuracy']:.2%}** on "
            f"{metrics['test_images']:,} test images ({errors} wrong), {metrics['parameters']:,} "
            f"parameters, trained in {metrics['train_wall_time_s'] / 60:.1f} min "
            f"({metrics['hyperparameters']['epochs']} epochs on {metrics['device']}). "
            f"Reproduce: `{metrics['command']}`")
    fig = curves(metrics["history"], {"loss": ["train_loss", "val_loss"],
                                      "accuracy": ["train_accuracy", "val_accuracy"]}, LABELS[model])
    return text, fig


def show_model(model: str):
    return (*model_card(model), mistakes_gallery(model))


# ---- what the Overview shows -----------------------------------------------------------------

OVERVIEW = Entry("Draw a digit (MNIST)", 2, train_command(),
                 [Figure("CNN", "mnist/cnn", "test_accuracy"), Figure("LeNet-style", "mnist/lenet", "test_accuracy"),
                  Figure("MLP", "mnist/mlp", "test_accuracy")],
                 ["no test accuracy stated (targets: CNN 99.3%, LeNet 99.2%, MLP 98.2%)"],
                 "10,000 test digits")


def thumbnail():
    """The Overview's picture of this experiment."""
    # The project's own example drawings, as the models see them (28x28, centred by mass).
    tiles = [preprocess_drawing(np.asarray(Image.open(path))) for path in sorted(EXAMPLES.glob("digit_*.png"))]
    picture = np.vstack([np.hstack(tiles[i:i + 5]) for i in range(0, len(tiles), 5)])
    image = Image.fromarray((picture * 255).astype(np.uint8))
    return image.resize((image.width * 3, image.height * 3), Image.Resampling.NEAREST)


def build():
    gr.Markdown("Draw one digit anywhere on the canvas, any size (if nothing appears, pick the brush: the pen "
                "icon left of the canvas), or upload a photo of one written on paper. Three networks answer as you "
                "draw; below, every layer of one of them shows what it makes of your digit. The small image is "
                "exactly what the models see: the ink cropped, scaled to fit 20x20 and centred by its centre of "
                "mass, as MNIST was made.")
    with gr.Row():
        with gr.Column(scale=2):
            sketch = drawing_canvas("Your digit", elem_id="mnist-sketchpad")
            with gr.Row():
                predict_btn = gr.Button("Classify", variant="primary", elem_id="mnist-classify")
                clear_btn = gr.Button("Clear")
            status = gr.Markdown(elem_id="mnist-status")
        with gr.Column(scale=1):
            seen = gr.Image(label="What the models see (28x28)", interactive=False, height=160,
                            buttons=[])
            photo = gr.Image(type="filepath", image_mode=None, label="Or a photo of a digit written on paper",
                             sources=["upload", "webcam", "clipboard"], height=200, elem_id="mnist-photo")
    with gr.Row():
        outputs = [gr.Label(num_top_classes=3, label=LABELS[name], elem_id=f"mnist-label-{name}")
                   for name in ARCHS]
    examples = sorted(EXAMPLES.glob("*.png"))
    if examples:
        # In the browser, loading an example into the editor fires no change event: run it here.
        drawn = gr.Examples([[str(p)] for p in examples], inputs=[sketch], outputs=[*outputs, seen, status],
                    fn=predict_all, run_on_click=True,
                    label="Examples (drawn by the project)", api_name="mnist_example", elem_id="mnist-examples")

    with gr.Accordion("Inside the network: every layer's output for your drawing", open=True):
        inside_model = gr.Radio([(LABELS[n], n) for n in ARCHS], value="cnn", label="Model",
                                info="Bright is strong. Each layer reads the one before; it follows your drawing.")
        layers = gr.Gallery(label="Layer by layer", columns=5, height="auto", object_fit="contain",
                            elem_id="mnist-inside")

    with gr.Accordion("Model cards: test accuracy, training curves, digits each model gets wrong", open=False):
        chosen = gr.Radio([(LABELS[n], n) for n in ARCHS], value="cnn", label="Model")
        text, fig, wrong = show_model("cnn")
        card = gr.Markdown(text)
        plot = gr.Plot(fig, label="Training curves")
        gallery = gr.Gallery(wrong, label="Test digits this model gets wrong", columns=8, height=320)

    predicting = gr.on([sketch.change, predict_btn.click], predict_all, inputs=sketch, outputs=[*outputs, seen, status],
                       api_name="mnist_predict", trigger_mode="always_last", show_progress="hidden",
                       concurrency_id="mnist_predict")
    # Setting the editor's value to None from Python leaves it unable to draw, so Clear
    # presses the editor's own clear button (the js), then empties the outputs itself and
    # cancels a prediction still pending for the last stroke, which would otherwise land
    # beside the empty canvas. One concurrency queue with the predictions: a prediction
    # already running when Clear is pressed finishes (and shows) before the clearing does.
    clear_btn.click(cleared, outputs=[*outputs, seen, status], js=CLEAR_JS, cancels=[predicting],
                    api_name="mnist_clear", api_visibility="private", show_progress="hidden",
                    concurrency_id="mnist_predict")
    chosen.change(user_errors(show_model), inputs=chosen, outputs=[card, plot, gallery], api_name="mnist_model_card")
    looking = gr.on([sketch.change, predict_btn.click, inside_model.change], user_errors(inside),
                    inputs=[sketch, inside_model], outputs=layers, api_name="mnist_inside", trigger_mode="always_last",
                    show_progress="hidden", concurrency_id="mnist_predict")
    clear_btn.click(lambda: [], outputs=layers, cancels=[looking], api_name="mnist_clear_inside",
                    api_visibility="private", show_progress="hidden", concurrency_id="mnist_predict")
    if examples:  # an example fills the canvas without a change event: look inside it too
        drawn.load_input_event.then(user_errors(inside), inputs=[sketch, inside_model], outputs=layers,
                                    api_name="mnist_example_inside", show_progress="hidden", concurrency_id="mnist_predict")
    # A photo: the same models and view, after evening out the paper's light (models.mnist.photo_ink).
    photo.upload(user_errors(predict_photo), inputs=photo, outputs=[*outputs, seen, status],
                 api_name="mnist_predict_photo", concurrency_id="mnist_predict").then(
        user_errors(lambda image, model: inside(image, model, photo=True)), inputs=[photo, inside_model],
        outputs=layers, api_name="mnist_inside_photo", show_progress="hidden", concurrency_id="mnist_predict")
    photo.clear(cleared, outputs=[*outputs, seen, status], api_name="mnist_clear_photo", api_visibility="private").then(
        lambda: [], outputs=layers, api_name="mnist_clear_photo_inside", api_visibility="private")
