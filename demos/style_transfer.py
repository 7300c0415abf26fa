"""Neural style transfer: a photo in a painting's style, by Gatys et al.'s optimisation
(streamed step by step) or by a feed-forward network trained here per painting."""
import functools
import tempfile
import time
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd
import skimage
import torch
from PIL import Image, ImageDraw

from core import checkpoints
from core.errors import BadInput
from core.gpu import on_gpu
from core.pictures import open_picture, read_picture
from core.results import Entry, Figure
from core.training import pick_device
from core.ui import user_errors
from models.style_transfer import (FEATURE_NETWORKS, MULTI, PAINTINGS, FeatureNetworkUnavailable, MultiStyleNet,
                                   available_feature_networks, best_feature_network, checkpoint_name,
                                   load_feature_network, load_network, style_images_dir, stylise, stylize_steps,
                                   to_pil, to_tensor, train_command)

TITLE = "Style transfer"
SKIMAGE_DATA = Path(skimage.__file__).parent / "data"
# Pictures that ship inside scikit-image (a dependency) and two the project draws itself.
CONTENT_EXAMPLES = [SKIMAGE_DATA / n for n in ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg",
                                                "motorcycle_left.png")]
STYLE_EXAMPLES = [SKIMAGE_DATA / n for n in ("ihc.png", "hubble_deep_field.jpg", "gravel.png")]
MADE_EXAMPLES = Path(tempfile.gettempdir()) / "dlp_style_transfer_examples"
HUGE = 2048  # a longer side above this gets a note that the picture was scaled down
SIZES = {"optimize": (64, 768), "fast": (64, 1024)}  # output's longer side, per method
MAX_STEPS = 1000
PREVIEW_EVERY_S = 0.7  # the tab shows a new picture at most this often


# ---- inputs ---------------------------------------------------------------------------------

def load_picture(image, what: str, size: int) -> tuple[Image.Image, list[str]]:
    """Any picture core.pictures.read_picture reads -> RGB with its longer side `size`, and
    notes on what was changed: transparency over white, grayscale to colour, huge images
    shrunk."""
    notes = []
    picture = read_picture(image, what, min_side=8, max_side=size, notes=notes)
    if not any("grayscale" in note for note in notes) and _is_gray(picture):
        notes.append(f"the {what} is grayscale: used as gray RGB")
    if max(picture.size) != size:  # smaller pictures are scaled up to the size asked for
        scale = size / max(picture.size)
        picture = picture.resize((max(1, round(picture.width * scale)), max(1, round(picture.height * scale))),
                                 Image.Resampling.LANCZOS)
    original = _original_size(image)
    if max(original) > HUGE:
        notes.append(f"the {what} is large ({original[0]}x{original[1]}): "
                     f"scaled down to {picture.width}x{picture.height}")
    return picture, notes


def _original_size(image) -> tuple[int, int]:
    """The size of the picture as uploaded (a file's from its header: read_picture has
    already decoded it smaller)."""
    if isinstance(image, (str, Path)):
        with open_picture(image) as probe:
            return probe.size
    if isinstance(image, dict):
        image = image.get("composite")
    if isinstance(image, Image.Image):
        return image.size
    array = np.asarray(image)
    return array.shape[1], array.shape[0]


def _is_gray(image: Image.Image) -> bool:
    """An RGB picture whose three channels are (almost) the same."""
    small = np.asarray(image.resize((32, 32))).astype(int)
    return bool(np.abs(small[..., 0] - small[..., 1]).max() <= 2 and np.abs(small[..., 1] - small[..., 2]).max() <= 2)


def _check_number(value, name: str, lo, hi, integer: bool = False):
    if value is None or not np.isfinite(float(value)) or not lo <= float(value) <= hi:
        raise BadInput(f"{name} must be {lo}..{hi}, not {value!r}.")
    return int(value) if integer else float(value)


# ---- the two methods ------------------------------------------------------------------------

def has_multi() -> bool:
    """Whether the one network for all six paintings (train_command(MULTI)) is trained."""
    return checkpoints.find(checkpoint_name(MULTI)) is not None


def fast_paintings() -> list[str]:
    """Paintings that have a trained feed-forward network (committed or on the Hub)."""
    if has_multi():
        return list(PAINTINGS)
    return [p for p in PAINTINGS if checkpoints.find(checkpoint_name(p)) is not None]


@functools.cache
def load_fast(painting: str, device: str = "cpu", network: str = "auto"):
    """(network, its checkpoint name) for a painting: the multi-style network when it is
    trained (network="auto" or "multi"), else the painting's own (network="single")."""
    if painting not in PAINTINGS:
        raise BadInput(f"Unknown painting {painting!r}; the feed-forward networks are for {list(PAINTINGS)}.")
    if network not in ("auto", "multi", "single"):
        raise BadInput(f"The feed-forward network is 'auto', 'multi' or 'single', not {network!r}.")
    style = MULTI if network == "multi" or (network == "auto" and has_multi()) else painting
    return load_network(style, device), checkpoint_name(style)


def feature_network(name: str = "auto", device="cpu"):
    if name not in ("auto", *FEATURE_NETWORKS):
        raise BadInput(f"Unknown feature network {name!r}; choose 'auto' or one of {list(FEATURE_NETWORKS)}.")
    try:
        return load_feature_network(name, device)
    except FeatureNetworkUnavailable as e:
        raise BadInput(str(e)) from e


def stylize_stream(content, style, steps: int = 60, size: int = 256, method: str = "optimize",
                   feature_net: str = "auto", style_weight: float = 10.0, content_weight: float = 1.0,
                   optimizer: str = "adam", init: str = "content", style_layers=None, content_layers=None,
                   lr: float = 0.02, fast_network: str = "auto"):
    """The generator behind stylize(): yields (picture, info) after every optimisation step
    (once for method="fast"). info holds "step", "steps", "losses" (for "optimize"),
    "feature_network", "notes" (what was done to the inputs) and "content" (the photo as
    it was used, for before/after).

    content: a picture (path, PIL image or array). style: a picture for "optimize"; for
    "fast" the name of a painting with a trained network (see fast_paintings()), through the
    multi-style network when it is trained (fast_network="single": the painting's own)."""
    if method not in SIZES:
        raise BadInput(f"method must be 'optimize' or 'fast', not {method!r}.")
    size = _check_number(size, "The output size", *SIZES[method], integer=True)
    device = pick_device("auto")
    if method == "fast":
        if not isinstance(style, str) or style not in PAINTINGS:
            raise BadInput("The feed-forward method has one trained network per painting: choose one of "
                           f"{list(PAINTINGS)} (upload your own painting with the optimisation method).")
        net, name = load_fast(style, str(device), fast_network)
        photo, notes = load_picture(content, "content photo", size)
        start = time.perf_counter()
        with torch.inference_mode():
            out = stylise(net, to_tensor(photo).to(device), PAINTINGS.index(style)).clamp(0, 1)
        info = {"step": 1, "steps": 1, "feature_network": checkpoints.load_metrics(name).get("feature_network", "?"),
                "fast_network": "multi" if isinstance(net, MultiStyleNet) else "single", "notes": notes,
                "content": photo, "seconds": time.perf_counter() - start}
        yield to_pil(out), info
        return

    steps = _check_number(steps, "Steps", 1, MAX_STEPS, integer=True)
    style_weight = _check_number(style_weight, "The style weight", 0, 1e6)
    content_weight = _check_number(content_weight, "The content weight", 0, 1e6)
    if optimizer not in ("adam", "lbfgs"):
        raise BadInput(f"optimizer must be 'adam' or 'lbfgs', not {optimizer!r}.")
    if init not in ("content", "noise"):
        raise BadInput(f"Start from 'content' or 'noise', not {init!r}.")
    photo, notes = load_picture(content, "content photo", size)
    painting, style_notes = load_picture(style, "style image", size)
    extractor = feature_network(feature_net, device)
    layers = FEATURE_NETWORKS[extractor.name].layers
    for chosen, kind in ((style_layers, "style"), (content_layers, "content")):
        if chosen is not None and (not chosen or set(chosen) - set(layers)):
            raise BadInput(f"Pick at least one {kind} layer of {extractor.name}: {list(layers)}.")
    info = {"steps": steps, "feature_network": extractor.name, "notes": notes + style_notes, "content": photo,
            "losses": []}
    start = time.perf_counter()
    for image, step, losses in stylize_steps(extractor, to_tensor(photo).to(device),
                                             to_tensor(painting).to(device), steps=steps,
                                             style_weight=style_weight, content_weight=content_weight,
                                             optimizer=optimizer, lr=lr, init=init, style_layers=style_layers or None,
                                             content_layers=content_layers or None):
        info["losses"].append({"step": step, **losses})
        yield to_pil(image), dict(info, step=step, seconds=time.perf_counter() - start)


def stylize(content, style, steps: int = 60, size: int = 256, method: str = "optimize", **options) -> Image.Image:
    """A photo in a painting's style. method="optimize": Gatys et al., `steps` steps on
    the picture itself, style is any picture; method="fast": one pass through the network
    trained for painting `style` (a name, see fast_paintings()). size is the output's
    longer side. options: see stylize_stream()."""
    picture = None
    for picture, _ in stylize_stream(content, style, steps=steps, size=size, method=method, **options):
        pass
    return picture


# ---- examples the project makes itself ------------------------------------------------------

def made_examples() -> list[Path]:
    """Two style images drawn here (deterministically): stained glass and brush strokes."""
    MADE_EXAMPLES.mkdir(parents=True, exist_ok=True)
    paths = [MADE_EXAMPLES / "stained_glass.png", MADE_EXAMPLES / "brush_strokes.png"]
    if not paths[0].exists():
        stained_glass().save(paths[0])
    if not paths[1].exists():
        brush_strokes().save(paths[1])
    return paths


def stained_glass(size: int = 384, cells: int = 90, seed: int = 0) -> Image.Image:
    """Voronoi cells in saturated colours with dark lead lines between them."""
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    points = rng.uniform(0, size, (cells, 2))
    colours = rng.choice(np.array([[200, 30, 40], [30, 80, 190], [240, 190, 40], [40, 150, 70], [120, 40, 150],
                                   [230, 120, 30], [60, 170, 200]]), cells)
    ys, xs = np.mgrid[0:size, 0:size]
    dist, idx = cKDTree(points).query(np.stack([xs.ravel(), ys.ravel()], 1), k=2)
    picture = colours[idx[:, 0]].reshape(size, size, 3).astype(float)
    picture *= (0.75 + 0.25 * rng.uniform(size=(size, size, 1)))  # uneven glass
    lead = (dist[:, 1] - dist[:, 0]).reshape(size, size) < 3.0
    picture[lead] = 25
    return Image.fromarray(picture.clip(0, 255).astype(np.uint8))


def brush_strokes(size: int = 384, strokes: int = 1500, seed: int = 0) -> Image.Image:
    """Short thick curved strokes in a warm and cool palette, like impasto."""
    rng = np.random.default_rng(seed)
    palette = [(243, 201, 105), (236, 140, 64), (39, 76, 119), (96, 150, 186), (163, 206, 241), (26, 42, 64)]
    picture = Image.new("RGB", (size, size), palette[2])
    draw = ImageDraw.Draw(picture)
    for _ in range(strokes):
        x, y = rng.uniform(0, size, 2)
        angle = np.sin(x / 40) + np.cos(y / 50)  # a flow field, as in swirling skies
        points = []
        for _ in range(6):
            points.append((x, y))
            x, y = x + 6 * np.cos(angle), y + 6 * np.sin(angle)
            angle += rng.normal(0, 0.15)
        draw.line(points, fill=palette[rng.integers(len(palette))], width=int(rng.integers(4, 9)), joint="curve")
    return picture


def mirror_examples() -> tuple[list[Path], list[Path]]:
    """The data directory's photos and paintings, offered only when it is configured (they
    are not the project's to ship)."""
    folder = style_images_dir(download=False)
    if folder is None:
        return [], []
    return sorted((folder / "photos").glob("*.jpg")), sorted((folder / "paintings").glob("*.jpg"))


# ---- the tab ----------------------------------------------------------------------------------

def loss_table(losses: list[dict], style_weight: float, content_weight: float) -> pd.DataFrame:
    """Long-format rows (step, term, value) of the weighted losses, for gr.LinePlot."""
    rows = []
    for h in losses:
        rows += [(h["step"], f"style x {style_weight:g}", style_weight * h["style"]),
                 (h["step"], f"content x {content_weight:g}", content_weight * h["content"]),
                 (h["step"], "total", h["total"])]
    return pd.DataFrame(rows, columns=["step", "term", "loss"])


def describe(info: dict, method: str) -> str:
    network = FEATURE_NETWORKS.get(info["feature_network"])
    label = network.label if network else info["feature_network"]
    if method == "fast":
        which = ("the network for all six paintings" if info.get("fast_network") == "multi"
                 else "this painting's own network")
        text = f"Feed-forward, {which}: {info['seconds'] * 1000:.0f} ms. It was trained with {label}."
    else:
        last = info["losses"][-1]
        text = (f"Step {info['step']}/{info['steps']} ({info['seconds']:.1f} s), feature network: **{label}**. "
                f"Style loss {last['style']:.3f}, content loss {last['content']:.3f}.")
    if info["notes"]:
        text += " Note: " + "; ".join(info["notes"]) + "."
    return text


def save_result(picture: Image.Image) -> str:
    path = tempfile.NamedTemporaryFile(prefix="stylised_", suffix=".png", delete=False).name
    picture.save(path)
    return path


@on_gpu(duration=120)
def run_tab(content, style, method, painting, feature_net, style_weight, content_weight, steps, size, optimizer,
            init, style_layers, content_layers, progress=gr.Progress()):
    """The Stylise button: streams (result, before/after, loss curves, status, download)."""
    style_input = painting if method == "fast" else style
    if method == "fast" and not painting:
        raise BadInput(f"No feed-forward networks are trained yet: run `{train_command()}`.")
    shown = 0.0
    for picture, info in stylize_stream(content, style_input, steps=steps, size=size, method=method,
                                        feature_net=feature_net, style_weight=style_weight,
                                        content_weight=content_weight, optimizer=optimizer, init=init,
                                        style_layers=style_layers, content_layers=content_layers):
        progress((info["step"], info["steps"]), desc="Stylising", unit="steps")
        done = info["step"] == info["steps"]
        if done or time.perf_counter() - shown >= PREVIEW_EVERY_S:
            shown = time.perf_counter()
            curves = loss_table(info["losses"], float(style_weight), float(content_weight)) if method != "fast" else None
            yield (picture, (info["content"], picture), curves, describe(info, method),
                   save_result(picture) if done else None)


def run_example(content, style, method, painting):
    """A finished example: what Stylise gives at the tab's starting settings, as (result,
    before/after, status). Cached when the app runs with --cache-examples."""
    for picture, info in stylize_stream(content, painting if method == "fast" else style, method=method):
        pass
    return picture, (info["content"], picture), describe(info, method)


def showcase_painting(trained: list[str]) -> str | None:
    """The feed-forward network shown first (examples, the Overview): The Scream when trained."""
    return "munch_the_scream" if "munch_the_scream" in trained else (trained[0] if trained else None)


def finished_examples(trained: list[str]) -> tuple[list[list], list[str]]:
    """Rows (content, style, method, painting) and their labels: one feed-forward network (The
    Scream when trained) and two optimisations with the style images the project draws. The
    quick row comes first: it is the one tools that try "the first example" will run."""
    rows, labels = [], []
    painting = showcase_painting(trained)
    if painting and CONTENT_EXAMPLES[2].exists():
        rows.append([str(CONTENT_EXAMPLES[2]), None, "fast", painting])
        labels.append(f"{CONTENT_EXAMPLES[2].stem.capitalize()} as "
                      f"{painting.split('_', 1)[1].replace('_', ' ').title()} (feed-forward)")
    for photo, style, name in zip(CONTENT_EXAMPLES[:2], made_examples(), ("stained glass", "brush strokes")):
        if photo.exists():
            rows.append([str(photo), str(style), "optimize", painting])
            labels.append(f"{photo.stem.capitalize()} in {name} (optimisation, 60 steps)")
    return rows, labels


def layer_choices(feature_net: str):
    """The style and content layer pickers for a feature network, its defaults ticked."""
    name = best_feature_network() if feature_net == "auto" else feature_net
    if name not in FEATURE_NETWORKS:
        raise BadInput(f"Unknown feature network {feature_net!r}.")
    network = FEATURE_NETWORKS[name]
    return (gr.CheckboxGroup(choices=list(network.layers), value=network.style_layers,
                             label="Style layers (Gram matrices)"),
            gr.CheckboxGroup(choices=list(network.layers), value=network.content_layers, label="Content layers"))


# ---- what the Overview shows -----------------------------------------------------------------

OVERVIEW = Entry("Neural style transfer", 6, train_command(MULTI),
                 [Figure("feed-forward (one network, six paintings): style loss", checkpoint_name(MULTI), "style_loss",
                         "{:.3f}"),
                  Figure("ms per 512x512 photo", checkpoint_name(MULTI), "ms_per_512px_image", "{:.0f}")],
                 ["no numbers; it calls its own result mediocre"])


def thumbnail():
    """The Overview's picture of this experiment."""
    painting = showcase_painting(fast_paintings())
    return stylize(CONTENT_EXAMPLES[0], painting, size=280, method="fast")


def build():
    best = best_feature_network()
    available = available_feature_networks()
    trained = fast_paintings()
    gr.Markdown(
        "Put a photo in a painting's style. **Optimisation** (Gatys et al.) changes the photo's pixels until a "
        "network's features match the photo's content and the painting's textures (their Gram matrices); it "
        "streams every step. **Feed-forward** (Johnson et al.) is one pass through a small network trained here "
        "for one painting. "
        f"Feature network in use: **{FEATURE_NETWORKS[best].label}**"
        + ("" if best == "imagenet_vgg19" else " (torchvision's ImageNet VGG-19 is not in the torch cache here)")
        + ". Even a random network transfers colour and some texture, so judge the pictures, not only the loss.")
    with gr.Row():
        with gr.Column():
            content = gr.Image(type="filepath", image_mode=None, label="Content photo", height=300, elem_id="style-content")
            gr.Examples([[str(p)] for p in CONTENT_EXAMPLES if p.exists()], inputs=[content],
                        label="Photos (from scikit-image)")
        with gr.Column():
            style = gr.Image(type="filepath", image_mode=None, label="Style image (optimisation)", height=300, elem_id="style-style")
            gr.Examples([[str(p)] for p in made_examples() + [p for p in STYLE_EXAMPLES if p.exists()]],
                        inputs=[style], label="Styles (drawn by this project; from scikit-image)")
    photos, paintings = mirror_examples()
    if photos:
        with gr.Accordion("The data directory's photos and paintings", open=False):
            gr.Examples([[str(p)] for p in photos], inputs=[content], label="Photos")
            gr.Examples([[str(p)] for p in paintings], inputs=[style], label="Paintings")
    with gr.Row():
        method = gr.Radio([("Optimisation (Gatys et al.)", "optimize"), ("Feed-forward (Johnson et al.)", "fast")],
                          value="optimize", label="Method")
        painting = gr.Dropdown(trained, value=trained[0] if trained else None,
                               label="Painting (feed-forward: one trained network each)",
                               info=None if trained else f"None trained yet: {train_command()}")
        size = gr.Slider(64, 768, 256, step=32, label="Output size (longer side, px)")
        steps = gr.Slider(1, 500, 60, step=1, label="Steps (optimisation)")
    with gr.Accordion("Optimisation settings", open=False):
        with gr.Row():
            feature_net = gr.Dropdown([(f"auto: {FEATURE_NETWORKS[best].label}", "auto")]
                                      + [(FEATURE_NETWORKS[n].label, n) for n in available],
                                      value="auto", label="Feature network")
            optimizer = gr.Radio([("Adam", "adam"), ("L-BFGS", "lbfgs")], value="adam", label="Optimiser")
            init = gr.Radio([("the photo", "content"), ("noise", "noise")], value="content", label="Start from")
        with gr.Row():
            style_weight = gr.Number(10.0, label="Style weight", minimum=0)
            content_weight = gr.Number(1.0, label="Content weight", minimum=0)
        style_layers, content_layers = layer_choices("auto")  # created here, so laid out here
    with gr.Row():
        go = gr.Button("Stylise", variant="primary")
        stop = gr.Button("Stop", variant="stop")
    status = gr.Markdown(elem_id="style-status")
    with gr.Row():
        result = gr.Image(label="Result", type="pil", interactive=False, height=420, format="png")
        compare = gr.ImageSlider(label="Before / after", type="pil", height=420)
    with gr.Row():
        curves = gr.LinePlot(x="step", y="loss", color="term", label="Losses (weighted)", height=260)
        download = gr.DownloadButton("Download the result (PNG)")

    rows, labels = finished_examples(trained)
    if rows:
        gr.Examples(rows, inputs=[content, style, method, painting], outputs=[result, compare, status],
                    fn=user_errors(run_example), run_on_click=True, example_labels=labels,
                    label="Finished examples (instant when the app runs with --cache-examples)",
                    api_name="style_transfer_example")

    run = go.click(user_errors(run_tab),
                   inputs=[content, style, method, painting, feature_net, style_weight, content_weight, steps, size,
                           optimizer, init, style_layers, content_layers],
                   outputs=[result, compare, curves, status, download], api_name="style_transfer_stylize",
                   concurrency_limit=1, concurrency_id="style_transfer", show_progress_on=[status])
    stop.click(None, cancels=[run], api_name="style_transfer_stop")
    feature_net.change(user_errors(layer_choices), inputs=feature_net, outputs=[style_layers, content_layers],
                       api_name="style_transfer_layers")
