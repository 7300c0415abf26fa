"""Transfer learning: the committed experiments' curves, live training of the three
strategies, and "bring your own classes" (a head on frozen features, fitted in a second)."""
import time
from dataclasses import dataclass

import gradio as gr
import numpy as np
import torch
import torch.nn.functional as F

from core import checkpoints, labs
from core.errors import BadInput
from core.pictures import read_picture
from core.plots import curves_image
from core.results import Entry, Figure
from core.ui import drawing_canvas, user_errors
from models.transfer import (BACKBONES, EXPERIMENTS, STRATEGIES, available_backbones, backbone_inputs,
                             check_backbone, checkpoint_name, embed, imagenet_available, train_command)
from train.transfer import lab_train

TITLE = "Transfer learning"
BACKBONE_LABELS = {"cifar10_vgg": "photos: CIFAR-10 VGG features", "cifar10_resnet20": "photos: CIFAR-10 ResNet-20 features",
                   "digits04_cnn": "drawings: features of a CNN trained on digits 0-4",
                   "imagenet_resnet18": "photos: ImageNet ResNet-18 (torchvision's, found in torch's cache)"}
MAX_CLASSES = 5
# Uploads and drawings together. A session keeps a drawing only as the small inputs the
# backbones take (models.transfer.backbone_inputs, 27 KB here; 330 KB with ImageNet's), so its
# drawings stay under MAX_CLASSES * MAX_IMAGES_PER_CLASS of those: 2.7 MB (33 MB).
MAX_IMAGES_PER_CLASS = 20


def photo_backbones() -> list[str]:
    return [b for b in available_backbones() if BACKBONES[b].input != "gray"]


def default_backbone() -> str:
    """The best photo backbone here: ImageNet's when cached, else the committed VGG, else ResNet-20."""
    if imagenet_available():
        return "imagenet_resnet18"
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
    if "val_accuracy_per_epoch" in metrics:
        curve_fig, ax = plt.subplots(figsize=(5, 3.4))
        for strategy, accs in metrics["val_accuracy_per_epoch"].items():
            ax.plot(range(1, len(accs) + 1), accs, marker=".", label=strategy)
        ax.set(xlabel="epoch", ylabel="validation accuracy", ylim=(0.4, 1.0), title="Ants vs bees, all 245 images")
        ax.grid(alpha=0.3)
        ax.legend()
        curve_fig.tight_layout()
    table = metrics["examples_per_class"]
    size_fig, ax = plt.subplots(figsize=(5, 3.4))
    sizes = list(table)
    for strategy in STRATEGIES:
        ax.plot(range(len(sizes)), [table[s][strategy]["mean"] for s in sizes], marker="o", label=strategy)
    ax.set_xticks(range(len(sizes)), sizes)
    ax.set(xlabel="labelled examples per class", ylabel="held-out accuracy", title=EXPERIMENTS[experiment].title)
    ax.grid(alpha=0.3)
    ax.legend()
    size_fig.tight_layout()
    rows = "\n".join(f"| {s} | " + " | ".join(f"{table[s][k]['mean']:.1%}" for k in STRATEGIES) + " |"
                     for s in sizes)
    text = (f"**{EXPERIMENTS[experiment].title}**, mean over {metrics['repeats']} random draws of the examples, "
            f"{metrics['steps']} training steps each. Reproduce: `{metrics['command']}`\n\n"
            "| examples per class | frozen | fine-tune | scratch |\n|---|---|---|---|\n" + rows)
    return text, curve_fig, size_fig


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
    committed = checkpoints.load_metrics(checkpoint_name(experiment))
    if experiment == "digits" or not backbone_name:
        backbone_name = committed.get("backbone", EXPERIMENTS[experiment].backbone)
    elif backbone_name not in BACKBONES or BACKBONES[backbone_name].input not in ("rgb", "imagenet"):
        raise BadInput(f"{backbone_name!r} is not a photo backbone; choose one of {photo_backbones()}.")
    check_backbone(backbone_name)
    size = 224 if BACKBONES[backbone_name].input == "imagenet" else committed.get("image_size", 64)
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
    for training_now in LAB.watch(run, training):
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

def add_drawing(drawings, sketch, slot):
    """Adds the canvas to a class; the session keeps only its small backbone inputs."""
    drawings = dict(drawings or {})
    image = sketch.get("composite") if isinstance(sketch, dict) else sketch
    if image is None or np.asarray(image).size == 0 or (np.asarray(image).ndim == 3 and np.asarray(image)[..., -1].max() == 0):
        raise BadInput("The canvas is empty: draw something first.")
    if str(slot) not in {str(k) for k in range(1, MAX_CLASSES + 1)}:
        raise BadInput(f"Pick the class (1 to {MAX_CLASSES}) the drawing is an example of.")
    if len(drawings.get(str(slot), [])) >= MAX_IMAGES_PER_CLASS:
        raise BadInput(f"Class {slot} already has {MAX_IMAGES_PER_CLASS} drawings, the most a class can have: "
                       "train the head with them (a few are enough).")
    inputs = backbone_inputs(image, "drawing")  # also refuses what no backbone could read (a 1x1 image), now rather than at Train
    drawings[str(slot)] = drawings.get(str(slot), []) + [inputs]
    return drawings, counts_text(drawings)


def counts_text(drawings):
    return "Drawings added: " + (", ".join(f"class {k}: {len(v)}" for k, v in sorted(drawings.items())) or "none")


def train_head(backbone_name, drawings, *names_and_files):
    names, files = names_and_files[:MAX_CLASSES], names_and_files[MAX_CLASSES:]
    examples = {}
    for slot, (name, uploads) in enumerate(zip(names, files), start=1):
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


def classify_new(head, image):
    return None if image is None else predict(head, image)


# ---- what the Overview shows -----------------------------------------------------------------

OVERVIEW = Entry("Transfer learning", 5, train_command("digits"),
                 [Figure("digits 5-9 from 0-4 features, 10 labels a class", checkpoint_name("digits"),
                         "examples_per_class.10.frozen.mean", "{:.1%}"),
                  Figure("scratch", checkpoint_name("digits"), "examples_per_class.10.scratch.mean", "{:.1%}"),
                  Figure("ants vs bees fine-tuned", checkpoint_name("ants"), "examples_per_class.all.finetune.mean", "{:.1%}"),
                  Figure("scratch", checkpoint_name("ants"), "examples_per_class.all.scratch.mean", "{:.1%}")],
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
    imagenet = ("torchvision's ImageNet ResNet-18 was found in torch's cache and is offered too." if imagenet_available()
                else "torchvision's ImageNet ResNet-18 (the seed's backbone) is offered wherever torch's cache holds it; "
                     "not on this machine.")
    gr.Markdown("The pretrained networks are the project's own (no ImageNet weights are downloaded): a CIFAR-10 "
                "ResNet-20 for photos, and a CNN trained only on digits 0-4 for digits 5-9; " + imagenet + " "
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
                                     value=EXPERIMENTS["ants"].backbone, label="Backbone (ants vs bees)")
        with gr.Row():
            train_btn = gr.Button("Train", variant="primary")
            stop_btn = gr.Button("Stop")
        live_status = gr.Markdown()
        live_curve = gr.Plot()

    with gr.Accordion("Bring your own classes", open=True):
        gr.Markdown(f"Name 2 to {MAX_CLASSES} classes, give each a few images (upload, or draw and add; at most "
                    f"{MAX_IMAGES_PER_CLASS} a class), train a head on frozen features in about a second, then "
                    "classify a new image.")
        backbone_name = gr.Radio([(BACKBONE_LABELS[b], b) for b in available_backbones()], value=default_backbone(),
                                 label="Features")
        names, uploads = [], []
        with gr.Row():
            for slot in range(1, MAX_CLASSES + 1):
                with gr.Column(min_width=160):
                    names.append(gr.Textbox(value=["cats", "dogs", "", "", ""][slot - 1], label=f"Class {slot} name"))
                    uploads.append(gr.File(file_count="multiple", file_types=["image"], type="filepath",
                                           label=f"Class {slot} images"))
        with gr.Row():
            with gr.Column():
                sketch = drawing_canvas("Or draw an example", elem_id="transfer-sketchpad")
                with gr.Row():
                    slot = gr.Dropdown([str(k) for k in range(1, MAX_CLASSES + 1)], value="1",
                                       label="Add it to class")  # text, as the API documents it
                    add_btn = gr.Button("Add drawing")
                drawn = gr.Markdown(counts_text({}))
            with gr.Column():
                fit_btn = gr.Button("Train head", variant="primary")
                fit_status = gr.Markdown()
                test_image = gr.Image(type="filepath", image_mode=None, label="New image to classify", height=220)
                result = gr.Label(label="Prediction")
        drawings, head = gr.State({}), gr.State(None)

    live = train_btn.click(user_errors(run_live), [experiment, strategy, per_class, epochs, live_backbone],
                           [live_curve, live_status],
                           api_name="transfer_train", concurrency_limit=1, concurrency_id="transfer_train")
    stop_btn.click(stop_live, outputs=live_status, cancels=[live], api_name="transfer_stop", concurrency_limit=None,
                   queue=False)
    add_btn.click(user_errors(add_drawing), [drawings, sketch, slot], [drawings, drawn], api_name="transfer_add_drawing")
    fit_btn.click(user_errors(train_head), [backbone_name, drawings, *names, *uploads], [head, fit_status],
                  api_name="transfer_fit_head")
    test_image.change(user_errors(classify_new), [head, test_image], result, api_name="transfer_predict")
