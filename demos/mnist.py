"""Draw a digit: three MNIST classifiers side by side on what you draw.

The drawing is turned into what MNIST digits look like before any model sees it: the
ink is cropped, scaled to fit a 20x20 box (aspect ratio kept), and pasted into 28x28 so
that its centre of mass sits in the middle, as LeCun et al. made MNIST.
"""
import functools
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
from models.mnist import ARCHS, MEAN, STD
from train.mnist import checkpoint_name

TITLE = "Draw a digit (MNIST)"
LABELS = {"cnn": "Bootcamp CNN", "lenet": "LeNet-style CNN", "mlp": "MLP 784-256-128-64-10"}
EXAMPLES = Path(__file__).parent / "examples" / "mnist"
INK_THRESHOLD = 0.1  # ink below this (of full black) counts as paper
MAX_SIDE = 1024  # larger inputs are shrunk to this before anything else
CLEAR_JS = """() => { document.querySelector('#mnist-sketchpad button[aria-label="Clear canvas"]')?.click(); }"""


def models() -> list[str]:
    """The model names classify() accepts; "cnn" is the bootcamp CNN."""
    return list(ARCHS)


@functools.cache
def load_model(name: str):
    return checkpoints.load(ARCHS[name], checkpoint_name(name), f"python -m train.mnist --arch {name}")


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Any numeric array -> uint8 0..255: bool and floats in [0, 1] scale up, 16-bit scales
    down, other integers must already be 0..255."""
    if image.dtype == np.uint8:
        return image
    if image.dtype == bool:
        return image.astype(np.uint8) * 255
    if image.dtype == np.uint16:
        return (image // 257).astype(np.uint8)
    if image.size == 0 or not np.issubdtype(image.dtype, np.number):
        raise BadInput(f"Expected an image of numbers, got {image.dtype} with shape {image.shape}.")
    if np.issubdtype(image.dtype, np.floating):
        if not np.isfinite(image).all():
            raise BadInput("The image contains NaN or infinite values.")
        scale = 255.0 if image.max() <= 1.0 + 1e-3 and image.min() >= -1e-3 else 1.0
        return np.clip(np.round(image * scale), 0, 255).astype(np.uint8)
    if image.min() < 0 or image.max() > 255:
        raise BadInput(f"Expected pixel values 0..255, got {image.min()}..{image.max()}.")
    return image.astype(np.uint8)


def ink_image(image) -> np.ndarray:
    """Any accepted input -> (H, W) float32 ink in [0, 1] (1 = darkest stroke).

    Accepts a Sketchpad value (dict with "composite"), an image file path, a PIL image, or
    an array that is HxW, HxWx3 or HxWx4 (uint8, uint16, bool or float in [0, 1]),
    dark-on-light or light-on-dark."""
    if isinstance(image, dict):
        image = image.get("composite")
    if image is None:
        raise BadInput("The canvas is empty: pick the brush (left of the canvas) and draw a digit.")
    try:
        if isinstance(image, (str, Path)):
            image = Image.open(image)
        if isinstance(image, Image.Image):
            image = np.asarray(image.convert("RGBA"))
    except (OSError, ValueError) as e:  # not an image file, or a truncated one
        raise BadInput(f"Could not read that file as an image ({e}).") from e
    image = to_uint8(np.asarray(image))
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise BadInput(f"Expected an HxW, HxWx3 or HxWx4 image, got shape {image.shape}.")
    if min(image.shape[:2]) < 2:
        raise BadInput(f"Expected an image of at least 2x2 pixels; this one is {image.shape[1]}x{image.shape[0]}, "
                       "too small to hold a digit.")
    if max(image.shape[:2]) > MAX_SIDE:
        # A photo-sized upload: shrink first, the digit ends up 20 pixels tall anyway.
        small = Image.fromarray(image)
        small.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.BOX)
        image = np.asarray(small)
    image = image.astype(np.float32) / 255.0
    if image.ndim == 3:
        gray = image[:, :, :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        if image.shape[2] == 4:
            # Composite over white: the Sketchpad's black ink on a transparent background
            # becomes dark on light; colours under fully transparent pixels are arbitrary.
            alpha = image[:, :, 3]
            gray = alpha * gray + (1.0 - alpha)
    else:
        gray = image
    # Polarity from the border, where the paper is: light paper means dark ink.
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    paper = float(np.median(border))
    ink = paper - gray if paper >= 0.5 else gray - paper
    return np.clip(ink / max(max(paper, 1 - paper), 1e-6), 0.0, 1.0)


def preprocess_drawing(image) -> np.ndarray:
    """A drawing -> the (28, 28) float32 image in [0, 1] a model sees (white ink on black).

    Raises BadInput for an empty canvas or an unusable image."""
    ink = ink_image(image)
    if ink.max() < INK_THRESHOLD:
        raise BadInput("The canvas is empty: pick the brush (left of the canvas) and draw a digit.")
    ink = ink / ink.max()  # a faint pencil stroke counts as much as black ink
    ink = np.where(ink >= INK_THRESHOLD, ink, 0.0).astype(np.float32)
    rows, cols = np.nonzero(ink)
    ink = ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    h, w = ink.shape
    scale = 20.0 / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))  # PIL wants (width, height)
    small = np.asarray(Image.fromarray(ink).resize(size, Image.Resampling.LANCZOS)).clip(0, 1)
    if small.sum() == 0:
        raise BadInput("The drawing is too faint to read: draw with a thicker stroke.")
    # Paste so the centre of mass lands on the centre of the 28x28 image.
    ys, xs = np.indices(small.shape)
    cy, cx = (ys * small).sum() / small.sum(), (xs * small).sum() / small.sum()
    top = int(np.clip(round(14 - cy), 0, 28 - small.shape[0]))
    left = int(np.clip(round(14 - cx), 0, 28 - small.shape[1]))
    out = np.zeros((28, 28), dtype=np.float32)
    out[top:top + small.shape[0], left:left + small.shape[1]] = small
    return out


def classify_preprocessed(digit: np.ndarray, model: str = "cnn") -> dict[str, float]:
    if model not in ARCHS:
        raise BadInput(f"Unknown model {model!r}; choose one of {models()}.")
    x = torch.from_numpy((digit - MEAN) / STD).view(1, 1, 28, 28)
    with torch.inference_mode():
        probs = torch.softmax(load_model(model)(x), dim=1)[0]
    return {str(d): float(p) for d, p in enumerate(probs)}


def classify(image, model: str = "cnn") -> dict[str, float]:
    """Probabilities for "0".."9" from one model, given a Sketchpad value or a uint8 image
    (HxW, HxWx3 or HxWx4, either polarity). Raises BadInput for an empty canvas."""
    return classify_preprocessed(preprocess_drawing(image), model)


def predict_all(image):
    """The tab's action: every model's probabilities and the 28x28 image they saw."""
    try:
        digit = preprocess_drawing(image)
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
        return f"No checkpoint yet: run `python -m train.mnist --arch {model}`.", None
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

OVERVIEW = Entry("Draw a digit (MNIST)", 2, "python -m train.mnist",
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
    gr.Markdown("Draw one digit anywhere on the canvas, any size (if nothing appears, pick the "
                "brush: the pen icon left of the canvas). Each model's answer updates when you lift "
                "the pen. The small image is exactly what the models see: the ink cropped, scaled to "
                "fit 20x20 and centred by its centre of mass, as MNIST was made.")
    with gr.Row():
        with gr.Column(scale=2):
            sketch = drawing_canvas("Your digit", elem_id="mnist-sketchpad")
            with gr.Row():
                predict_btn = gr.Button("Classify", variant="primary")
                clear_btn = gr.Button("Clear")
            status = gr.Markdown(elem_id="mnist-status")
        with gr.Column(scale=1):
            seen = gr.Image(label="What the models see (28x28)", interactive=False, height=160,
                            buttons=[])
    with gr.Row():
        outputs = [gr.Label(num_top_classes=3, label=LABELS[name], elem_id=f"mnist-label-{name}")
                   for name in ARCHS]
    examples = sorted(EXAMPLES.glob("*.png"))
    if examples:
        # In the browser, loading an example into the editor fires no change event: run it here.
        gr.Examples([[str(p)] for p in examples], inputs=[sketch], outputs=[*outputs, seen, status],
                    fn=predict_all, run_on_click=True,
                    label="Examples (drawn by the project)", api_name="mnist_example")

    with gr.Accordion("Model cards: test accuracy, training curves, digits each model gets wrong", open=False):
        chosen = gr.Radio([(LABELS[n], n) for n in ARCHS], value="cnn", label="Model")
        text, fig, wrong = show_model("cnn")
        card = gr.Markdown(text)
        plot = gr.Plot(fig, label="Training curves")
        gallery = gr.Gallery(wrong, label="Test digits this model gets wrong", columns=8, height=320)

    gr.on([sketch.change, predict_btn.click], predict_all, inputs=sketch, outputs=[*outputs, seen, status],
          api_name="mnist_predict", trigger_mode="always_last", show_progress="hidden")
    # Setting the editor's value to None from Python leaves it unable to draw, so Clear
    # presses the editor's own clear button; its change event then empties the outputs.
    clear_btn.click(None, js=CLEAR_JS, api_name="mnist_clear", api_visibility="private")
    chosen.change(user_errors(show_model), inputs=chosen, outputs=[card, plot, gallery], api_name="mnist_model_card")
