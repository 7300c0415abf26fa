"""MNIST: the three classifiers, drawing preprocessing (models.mnist), the tab's functions,
a whole train-evaluate cycle, and the committed checkpoints re-measured by evaluation."""
import json

import numpy as np
import pytest
import torch

from conftest import run_cli
from core import data
from core.errors import BadInput
from demos import mnist
from demos.examples.draw_digits import EXAMPLE_BOXES, draw_digit
from drawn_digits import drawn_test_set
from models.mnist import ARCHS, ink_image, preprocess_drawing

MNIST_TARGETS = {"cnn": 0.993, "lenet": 0.992, "mlp": 0.982}


@pytest.mark.parametrize("arch", list(ARCHS))
def test_mnist_models_map_images_to_ten_logits(arch):
    model = ARCHS[arch]().eval()
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)


# ---- drawings -> 28x28 digits ----------------------------------------------------------------

def blank(h=280, w=280):
    return np.zeros((h, w, 4), dtype=np.uint8)  # what an untouched Sketchpad gives


def sketch_with_bar(top, left, h, w, canvas=(280, 280)):
    """Black ink on a transparent canvas, as the Sketchpad delivers it."""
    rgba = blank(*canvas)
    rgba[top:top + h, left:left + w, 3] = 255
    return {"background": None, "layers": [rgba], "composite": rgba}


def centre_of_mass(img):
    ys, xs = np.indices(img.shape)
    return (ys * img).sum() / img.sum(), (xs * img).sum() / img.sum()


def test_output_is_28x28_white_on_black_in_unit_range():
    out = preprocess_drawing(sketch_with_bar(50, 100, 150, 30))
    assert out.shape == (28, 28) and out.dtype == np.float32
    assert out.min() == 0.0 and 0.9 < out.max() <= 1.0


def test_digit_is_scaled_into_20x20_box_keeping_aspect_ratio():
    out = preprocess_drawing(sketch_with_bar(10, 10, 200, 100))  # 2:1 tall bar
    rows, cols = np.nonzero(out > 0.05)
    height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
    assert height == 20
    assert 9 <= width <= 12


@pytest.mark.parametrize("where", [(0, 0), (200, 200), (0, 220), (120, 5)])
def test_centred_by_centre_of_mass_wherever_drawn(where):
    out = preprocess_drawing(sketch_with_bar(*where, 60, 40))
    cy, cx = centre_of_mass(out)
    assert abs(cy - 14) < 0.75 and abs(cx - 14) < 0.75


def test_off_centre_mass_is_centred_not_the_box():
    # An "L": most ink in the vertical bar, so the centre of mass is left of the box centre.
    rgba = blank()
    rgba[40:240, 40:80, 3] = 255
    rgba[200:240, 40:200, 3] = 255
    out = preprocess_drawing(rgba)
    cy, cx = centre_of_mass(out)
    assert abs(cy - 14) < 0.75 and abs(cx - 14) < 0.75
    cols = np.nonzero(out.max(0) > 0.05)[0]
    assert (cols.min() + cols.max()) / 2 > 14.5  # so the bounding box sits right of centre


def test_polarity_and_formats_agree():
    ink = np.zeros((300, 200), dtype=bool)
    ink[50:250, 60:100] = True
    ink[50:90, 60:160] = True
    dark_on_light_gray = np.where(ink, 0, 255).astype(np.uint8)
    light_on_dark_gray = np.where(ink, 255, 0).astype(np.uint8)
    dark_on_light_rgb = np.stack([dark_on_light_gray] * 3, axis=2)
    rgba = np.zeros((300, 200, 4), dtype=np.uint8)
    rgba[..., 3] = ink * 255
    reference = preprocess_drawing(light_on_dark_gray)
    for image in (dark_on_light_gray, dark_on_light_rgb, rgba, {"composite": rgba}):
        np.testing.assert_allclose(preprocess_drawing(image), reference, atol=1e-5)


def test_alpha_is_the_ink_even_when_colour_under_transparency_is_garbage():
    rgba = np.random.default_rng(0).integers(0, 256, (280, 280, 4), dtype=np.uint8)
    rgba[..., 3] = 0
    rgba[100:200, 130:150] = (0, 0, 0, 255)
    out = preprocess_drawing(rgba)
    assert out.sum() > 20 and abs(centre_of_mass(out)[1] - 14) < 0.75


def test_grey_paper_is_not_ink():
    img = np.full((280, 280), 200, dtype=np.uint8)  # a grey photo of paper
    img[60:220, 130:150] = 30
    ink = ink_image(img)
    assert ink[0, 0] == 0 and ink[100, 140] > 0.8
    assert preprocess_drawing(img).max() == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("empty", [None, {"background": None, "layers": [], "composite": None},
                                   blank(), {"composite": blank()}, np.full((100, 100), 255, np.uint8),
                                   np.zeros((64, 64), np.uint8), np.full((50, 50, 3), 128, np.uint8)])
def test_empty_canvas_is_a_clear_message(empty):
    with pytest.raises(BadInput, match="empty"):
        preprocess_drawing(empty)


@pytest.mark.parametrize("bad", [np.zeros((5,), np.uint8), np.zeros((10, 10, 2), np.uint8),
                                 np.zeros((1, 1), np.uint8), np.zeros((4, 4, 7), np.uint8)])
def test_unusable_arrays_are_a_clear_message(bad):
    with pytest.raises(BadInput, match="Expected"):
        preprocess_drawing(bad)


def test_tiny_dot_and_huge_canvas_work():
    rgba = blank(3000, 4000)
    rgba[1500:1502, 2000:2002, 3] = 255  # a single click
    out = preprocess_drawing(rgba)
    assert out.shape == (28, 28) and out.max() > 0
    rgba = blank(3000, 4000)
    rgba[200:2800, 1000:1400, 3] = 255
    assert preprocess_drawing(rgba).max() > 0.9


def test_other_dtypes_match_uint8():
    img = np.zeros((100, 80), np.uint8)
    img[20:80, 30:45] = 255
    reference = preprocess_drawing(img)
    for variant in (img > 0, img.astype(np.float32) / 255 * 1.0005, img.astype(np.uint16) * 257,
                    img.astype(np.int64), img.astype(np.float64)):
        np.testing.assert_allclose(preprocess_drawing(variant), reference, atol=0.02)


@pytest.mark.parametrize("bad, message", [(np.full((20, 20), np.nan), "NaN"), (np.full((20, 20), -7), "0..255"),
                                          (np.array([["a", "b"], ["c", "d"]]), "numbers"),
                                          ("/etc/hostname", "Could not read")])
def test_unreadable_values_are_clear_messages(bad, message):
    with pytest.raises(BadInput, match=message):
        preprocess_drawing(bad)


# ---- training and the committed checkpoints ---------------------------------------------------

def test_mnist_train_then_eval(tmp_path):
    trained = run_cli("train.mnist", "--arch", "lenet", "--epochs", "1", "--limit", "512",
                      "--checkpoint-dir", str(tmp_path))
    folder = tmp_path / "mnist" / "lenet"
    assert {"model.safetensors", "config.json", "metrics.json", "mistakes.safetensors"} <= {p.name for p in folder.iterdir()}
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["train_images"] == 512 and metrics["command"].startswith("python -m train.mnist")
    assert trained["lenet"]["test_accuracy"] == metrics["test_accuracy"]
    evaluated = run_cli("train.mnist", "--arch", "lenet", "--eval", "--checkpoint-dir", str(tmp_path))
    assert evaluated["lenet"]["test_images"] == 10000 and 0 <= evaluated["lenet"]["test_accuracy"] <= 1


@pytest.mark.slow
def test_mnist_test_accuracy_meets_targets():
    result = run_cli("train.mnist", "--eval")
    for arch, target in MNIST_TARGETS.items():
        assert result[arch]["test_images"] == 10000
        assert result[arch]["test_accuracy"] >= target, (arch, result[arch])


@pytest.fixture(scope="module")
def drawn_digits():
    images, labels = data.mnist("test")
    return drawn_test_set(images.numpy(), labels.numpy(), n=500, seed=0)


@pytest.mark.slow
def test_cnn_reads_digits_drawn_with_a_mouse(drawn_digits):
    correct = {}
    for image, kind, label in drawn_digits:
        probs = mnist.classify(image, "cnn")
        correct.setdefault(kind, []).append(max(probs, key=probs.get) == str(label))
    accuracy = np.mean([c for cs in correct.values() for c in cs])
    by_kind = {k: round(float(np.mean(v)), 3) for k, v in correct.items()}
    print(f"CNN on {len(drawn_digits)} redrawn digits: {accuracy:.3f} {by_kind}")
    assert accuracy > 0.95, by_kind
    assert min(by_kind.values()) > 0.93, by_kind  # no input format is left behind


@pytest.mark.parametrize("model", mnist.models())
def test_every_model_reads_the_project_example_drawings(model):
    for digit in EXAMPLE_BOXES:
        probs = mnist.classify(np.asarray(draw_digit(digit, box=EXAMPLE_BOXES[digit])), model)
        assert max(probs, key=probs.get) == str(digit), (model, digit, probs)


def test_clear_empties_every_output_and_cancels_a_pending_prediction():
    """Clear presses the editor's own clear button (js), empties the outputs from the server
    and cancels a prediction still pending for the last stroke; it waits in the predictions'
    queue, so one already running lands before the clearing, not after it."""
    import gradio as gr

    with gr.Blocks() as demo:
        mnist.build()
    fns = {fn.api_name: fn for fn in demo.fns.values()}
    predict, clear = fns["mnist_predict"], fns["mnist_clear"]
    assert clear.js and "Clear canvas" in clear.js
    # ...and presses Classify a moment later, for a stroke's picture the editor sends after its clear
    assert "#mnist-classify" in clear.js and "setTimeout" in clear.js
    assert (demo.blocks[predict.targets[1][0]].elem_id, predict.targets[1][1]) == ("mnist-classify", "click")
    assert [b._id for b in clear.outputs] == [b._id for b in predict.outputs]
    assert clear.fn() == mnist.cleared() == (None, None, None, None, "")
    assert clear.concurrency_id == predict.concurrency_id
    index = {fn: k for k, fn in demo.fns.items()}
    cancellers = [fn for fn in demo.fns.values() if fn.is_cancel_function and index[predict] in fn.cancels]
    assert any(fn.targets == clear.targets for fn in cancellers)  # pressing Clear cancels it
    # an empty canvas (what the editor's clear leaves) gives the same empty outputs plus a hint
    *labels, seen, note = mnist.predict_all({"background": None, "layers": [], "composite": None})
    assert labels == [None] * 3 and seen is None and "empty" in note


def test_only_the_sketchpad_composite_is_read(tmp_path):
    """Gradio is told to decode the composite only: background and layers are dropped
    before preprocessing, however many a request names."""
    import gradio as gr
    from gradio.data_classes import FileData
    from PIL import Image

    with gr.Blocks():
        pad = mnist.drawing_canvas("Your digit", elem_id="x")
    ink = np.zeros((280, 280, 4), np.uint8)
    ink[60:220, 130:150, 3] = 255  # a "1"
    path = tmp_path / "one.png"
    Image.fromarray(ink).save(path)
    missing = FileData(path=str(tmp_path / "never-written.png"))  # decoding it would fail
    value = pad.preprocess(pad.data_model(background=missing, layers=[missing] * 20, composite=FileData(path=str(path))))
    assert value["background"] is None and value["layers"] == []
    assert mnist.classify(value, "cnn")["1"] > 0.5


def test_inside_the_network_shows_every_layer_and_where_it_looked():
    """For a drawn 7: the input, the CNN's three conv layers (after their ReLU: zero on most of
    the page) and a Grad-CAM map whose heat lies on the ink; the MLP's three dense layers; an
    empty canvas shows nothing (its prediction says why)."""
    from PIL import Image

    from models import feature_maps

    seven = np.asarray(Image.open(mnist.EXAMPLES / "digit_7.png"))
    shown = mnist.inside(seven, "cnn")
    assert [caption.split(" (")[0] for _, caption in shown] == [
        "the input: 28x28 pixels", "conv 1", "conv 2", "conv 3", "where conv 3 looked for the 7 it says"]
    net = mnist.load_model("cnn")
    layers = feature_maps.layers_of(net)
    assert all(isinstance(feature_maps.shown_module(net, layer), torch.nn.ReLU) for layer in layers)
    digit = mnist.preprocess_drawing(seven)
    x = torch.from_numpy((digit - mnist.MEAN) / mnist.STD).float().view(1, 1, 28, 28)
    outputs, scores = feature_maps.layer_outputs(net, x, layers)
    assert [tuple(o.shape) for o in outputs] == [(64, 14, 14), (128, 7, 7), (256, 4, 4)]
    assert min(o.min().item() for o in outputs) >= 0 and (outputs[0] == 0).float().mean() > 0.3
    heat = feature_maps.grad_cam(net, x, feature_maps.shown_module(net, layers[-1]), int(scores.argmax()))
    ink = digit > 0.5
    assert heat.shape == (28, 28) and heat.max() == 1
    # it looked at the digit, not the paper: the heat's centre lies inside the ink's box, and the
    # ink holds more heat per pixel than the paper
    rows, cols = np.nonzero(ink)
    centre = (heat * np.arange(28)[:, None]).sum() / heat.sum(), (heat * np.arange(28)).sum() / heat.sum()
    assert rows.min() <= centre[0] <= rows.max() and cols.min() <= centre[1] <= cols.max(), centre
    assert heat[ink].mean() > heat[~ink].mean()
    assert len(mnist.inside(seven, "mlp")) == 5 and "dense 3" in mnist.inside(seven, "mlp")[3][1]
    net.requires_grad_(False)  # another tab may freeze the shared model: Grad-CAM still works
    try:
        assert "Grad-CAM" in mnist.inside(seven, "cnn")[-1][1]
    finally:
        net.requires_grad_(True)
    assert mnist.inside({"background": None, "layers": [], "composite": None}, "cnn") == []


def test_the_inside_view_ignores_other_requests_passing_through_the_same_model():
    """The app shares one model between requests: while Grad-CAM and the layer outputs hook its
    layers, another thread's prediction passes through them (CI: a bare error in /classify_all).
    Their hooks answer only their own pass, and no gradient piles up in the shared weights."""
    import threading

    from models import feature_maps

    net = mnist.load_model("cnn")
    layers = feature_maps.layers_of(net)
    last = feature_maps.shown_module(net, layers[-1])
    x = torch.randn(1, 1, 28, 28)
    other = torch.randn(1, 1, 28, 28)
    errors = []

    def predict_elsewhere():
        try:
            with torch.inference_mode():
                net(other)
        except Exception as e:  # what the other request would have seen
            errors.append(e)

    def meanwhile(module, inputs):  # the first conv, on the caller's pass: another request runs now
        if threading.current_thread() is threading.main_thread():
            thread = threading.Thread(target=predict_elsewhere)
            thread.start()
            thread.join()

    alone_outputs, _ = feature_maps.layer_outputs(net, x, layers)
    alone_heat = feature_maps.grad_cam(net, x, last, 7)
    handle = layers[0].module.register_forward_pre_hook(meanwhile)
    try:
        outputs, _ = feature_maps.layer_outputs(net, x, layers)
        heat = feature_maps.grad_cam(net, x, last, 7)
    finally:
        handle.remove()
    assert not errors, errors
    assert all(torch.equal(a, b) for a, b in zip(outputs, alone_outputs))
    assert np.allclose(heat, alone_heat)
    assert all(p.grad is None for p in net.parameters())


def test_clear_also_empties_and_cancels_the_inside_view():
    import gradio as gr

    with gr.Blocks() as demo:
        mnist.build()
    fns = {fn.api_name: fn for fn in demo.fns.values()}
    inside, clear = fns["mnist_inside"], fns["mnist_clear_inside"]
    assert clear.fn() == [] and clear.targets == fns["mnist_clear"].targets
    index = {fn: k for k, fn in demo.fns.items()}
    assert any(fn.targets == clear.targets for fn in demo.fns.values()
               if fn.is_cancel_function and index[inside] in fn.cancels)


def photo_of(digit_path, light=(0.55, 0.95), size=(480, 360), seed=0):
    """A phone photo of a digit written on paper, made here: a project drawing as dark grey ink
    on paper lit unevenly (a gradient and a shadow), with sensor noise, as RGB."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    h, w = size[1], size[0]
    paper = np.linspace(light[0], light[1], w)[None, :] * np.ones((h, 1))
    paper[: h // 3, : w // 3] *= 0.8  # a shadow in one corner
    drawing = Image.open(digit_path).convert("RGBA").resize((200, 200))
    ink = np.asarray(drawing)[..., 3] / 255.0  # the drawing's strokes
    top, left = (h - 200) // 2, (w - 200) // 2
    paper[top:top + 200, left:left + 200] *= 1 - 0.7 * ink
    photo = np.clip(paper + rng.normal(0, 0.02, paper.shape), 0, 1)
    return (np.repeat(photo[..., None], 3, axis=2) * 255).astype(np.uint8)


@pytest.mark.parametrize("digit", [3, 7, 8])
def test_a_photo_of_a_digit_on_unevenly_lit_paper_is_read(digit):
    """The paper's light is evened out before the ink is cut out, so the shadow and the
    gradient are not ink; the digit is read as drawn."""
    picture = photo_of(mnist.EXAMPLES / f"digit_{digit}.png")
    labels = mnist.predict_photo(picture)[:3]
    assert all(max(label, key=label.get) == str(digit) for label in labels), labels
    digit_image = mnist.preprocess_photo(picture)
    assert (digit_image > 0.1).mean() < 0.3  # the digit, not the shadowed paper
    with pytest.raises(BadInput, match="No digit found"):
        mnist.preprocess_photo(np.full((300, 400, 3), 200, np.uint8) + np.arange(400, dtype=np.uint8)[None, :, None] // 8)
