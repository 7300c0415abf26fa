"""Transfer learning: the committed experiments' curves, live training of the three
strategies, and "bring your own classes" (a head on frozen features, fitted in a second)."""
import functools
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from core import checkpoints, data
from core.errors import BadInput
from core.pictures import open_picture, uint8_pixels
from core.plots import curves_image
from core.results import Entry, Figure
from core.ui import drawing_canvas, user_errors
from demos.mnist import preprocess_drawing
from models.cifar10 import normalize as normalize_rgb
from models.mnist import MEAN as MNIST_MEAN, STD as MNIST_STD
from models.transfer import BACKBONES, TransferNet, imagenet_available, imagenet_normalize
from train import transfer as training

TITLE = "Transfer learning"
BACKBONE_LABELS = {"cifar10_vgg": "photos: CIFAR-10 VGG features", "cifar10_resnet20": "photos: CIFAR-10 ResNet-20 features",
                   "digits04_cnn": "drawings: features of a CNN trained on digits 0-4",
                   "imagenet_resnet18": "photos: ImageNet ResNet-18 (torchvision's, found in torch's cache)"}
EXPERIMENTS = {"ants": ("Ants vs bees (CIFAR-10 ResNet-20 backbone)", "cifar10_resnet20"),
               "digits": ("Digits 5-9 (backbone trained on digits 0-4)", "digits04_cnn")}
MAX_CLASSES = 5


def available_backbones() -> list[str]:
    """The backbones this machine can offer: ours, and ImageNet's when torch's cache has it."""
    return [b for b in BACKBONES if b != "imagenet_resnet18" or imagenet_available()]


def photo_backbones() -> list[str]:
    return [b for b in available_backbones() if BACKBONES[b][4] != "gray"]


def check_backbone(name) -> str:
    if name not in available_backbones():
        extra = " (the ImageNet ResNet-18 is not in torch's cache here)" if name == "imagenet_resnet18" else ""
        raise BadInput(f"Unknown backbone {name!r}{extra}; choose one of {available_backbones()}.")
    return name


@functools.cache
def backbone(name: str) -> TransferNet:
    """A frozen backbone (the head is unused) for feature extraction."""
    return training.build(check_backbone(name), "frozen", 2).eval()


def to_pil(image, what: str = "image") -> Image.Image:
    """A path, PIL image or array (any size, colour or grayscale, uint8/bool/float) -> PIL."""
    try:
        if isinstance(image, dict):  # a Sketchpad value
            image = image.get("composite")
        if image is None:
            raise BadInput(f"{what} is empty.")
        if isinstance(image, (str, Path)):
            with open_picture(image, what) as f:
                f.draft("RGB", (256, 256))
                return f.convert("RGBA") if f.mode in ("P", "LA", "PA") else f.copy()
        if isinstance(image, Image.Image):
            return image
        array = uint8_pixels(image, what)
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[:, :, 0]
        if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)) or min(array.shape[:2]) < 4:
            raise BadInput(f"{what} has an unusable shape {array.shape}.")
        return Image.fromarray(array)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        if isinstance(e, BadInput):
            raise
        raise BadInput(f"Could not read {what} as an image ({e}).") from e


def image_tensor(image, kind: str, what: str = "image") -> torch.Tensor:
    """One picture -> the normalised (C, H, W) input of a backbone: 64x64 RGB for photos
    (the centre square, as the ants-vs-bees experiment sees them; 224x224 for ImageNet's),
    the MNIST-style 28x28 for drawings."""
    pil = to_pil(image, what)
    if kind == "gray":
        digit = preprocess_drawing(np.asarray(pil.convert("RGBA")))
        return torch.from_numpy((digit - MNIST_MEAN) / MNIST_STD).unsqueeze(0)
    if pil.mode in ("RGBA", "LA", "PA") or "transparency" in pil.info:
        pil = Image.alpha_composite(Image.new("RGBA", pil.size, "white"), pil.convert("RGBA"))
    size = 224 if kind == "imagenet" else 64
    square = data.square(pil.convert("RGB"), size + 8)
    x = torch.from_numpy(np.asarray(square).copy()).permute(2, 0, 1)[:, 4:4 + size, 4:4 + size].unsqueeze(0)
    return (imagenet_normalize(x) if kind == "imagenet" else normalize_rgb(x))[0]


@torch.no_grad()
def embed(images: list, backbone_name: str, what: str = "image") -> torch.Tensor:
    kind = BACKBONES[backbone_name][4]
    x = torch.stack([image_tensor(im, kind, f"{what} {i + 1}") for i, im in enumerate(images)])
    if kind != "gray":  # a mirrored copy of every photo: twice the examples for free
        x = torch.cat([x, x.flip(3)])
    return F.normalize(backbone(backbone_name).embed(x), dim=1)


def default_backbone() -> str:
    """The best photo backbone here: ImageNet's when cached, else the committed VGG, else ResNet-20."""
    if imagenet_available():
        return "imagenet_resnet18"
    return next((b for b in ("cifar10_vgg", "cifar10_resnet20") if checkpoints.find(BACKBONES[b][2])), "cifar10_resnet20")


@dataclass
class Head:
    """A linear classifier on a frozen backbone's (L2-normalised) features."""
    backbone: str
    classes: list
    weight: torch.Tensor
    bias: torch.Tensor


def fit_head(examples: dict, backbone: str | None = None, steps: int = 200) -> Head:
    """Fit a new head on frozen features: `examples` maps class names to lists of images
    (numpy arrays or PIL images or paths, any size, colour or grayscale). Needs at least
    two classes, each with at least one image."""
    backbone = check_backbone(backbone or default_backbone())
    examples = {str(name).strip(): list(images or []) for name, images in examples.items() if str(name).strip()}
    empty = [name for name, images in examples.items() if not images]
    if empty:
        raise BadInput(f"Class {empty[0]!r} has no images: add a few, or remove its name.")
    if len(examples) < 2:
        raise BadInput("Name at least two classes and give each a few images.")
    if len(examples) > MAX_CLASSES:
        raise BadInput(f"At most {MAX_CLASSES} classes.")
    feats, labels = [], []
    for label, (name, images) in enumerate(examples.items()):
        f = embed(images, backbone, f"image of {name!r}:")
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
    kind = BACKBONES[head.backbone][4]
    with torch.no_grad():
        f = F.normalize(backbone(head.backbone).embed(image_tensor(image, kind, "The test image").unsqueeze(0)), dim=1)
        probs = F.softmax((f @ head.weight.T + head.bias) * 10, dim=1)[0]
    return {name: float(p) for name, p in zip(head.classes, probs)}


# ---- the experiments -----------------------------------------------------------------------

def results_figures(experiment: str):
    """(markdown, curves figure or None, size-study figure) from the committed metrics."""
    import matplotlib.pyplot as plt

    metrics = checkpoints.load_metrics(f"transfer/{experiment}")
    if not metrics:
        return f"Not trained yet: run `python -m train.transfer --experiment {experiment}`.", None, None
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
    for strategy in training.STRATEGIES:
        ax.plot(range(len(sizes)), [table[s][strategy]["mean"] for s in sizes], marker="o", label=strategy)
    ax.set_xticks(range(len(sizes)), sizes)
    ax.set(xlabel="labelled examples per class", ylabel="held-out accuracy", title=EXPERIMENTS[experiment][0])
    ax.grid(alpha=0.3)
    ax.legend()
    size_fig.tight_layout()
    rows = "\n".join(f"| {s} | " + " | ".join(f"{table[s][k]['mean']:.1%}" for k in training.STRATEGIES) + " |"
                     for s in sizes)
    text = (f"**{EXPERIMENTS[experiment][0]}**, mean over {metrics['repeats']} random draws of the examples, "
            f"{metrics['steps']} training steps each. Reproduce: `{metrics['command']}`\n\n"
            "| examples per class | frozen | fine-tune | scratch |\n|---|---|---|---|\n" + rows)
    return text, curve_fig, size_fig


def live_train(experiment: str, strategy: str, per_class: int, epochs: int, backbone_name: str | None = None,
               should_stop=None):
    """Train one strategy now; yields the list of validation accuracies after each epoch. The
    backbone (for ants vs bees: any photo backbone available here) defaults to the committed run's."""
    if experiment not in EXPERIMENTS:
        raise BadInput(f"Unknown experiment {experiment!r}: choose one of {', '.join(EXPERIMENTS)}.")
    if strategy not in training.STRATEGIES:
        raise BadInput(f"The strategy must be one of {', '.join(training.STRATEGIES)}, not {strategy!r}.")
    per_class, epochs = int(per_class), int(epochs)
    if not 1 <= per_class <= 120 or not 1 <= epochs <= 30:
        raise BadInput("examples per class must be 1..120 and epochs 1..30")
    args = type("Args", (), {"data_dir": None, "limit": 0})()
    committed = checkpoints.load_metrics(f"transfer/{experiment}")
    if experiment == "digits" or not backbone_name:
        backbone_name = committed.get("backbone", EXPERIMENTS[experiment][1])
    elif BACKBONES.get(backbone_name, [None] * 5)[4] not in ("rgb", "imagenet"):
        raise BadInput(f"{backbone_name!r} is not a photo backbone; choose one of {photo_backbones()}.")
    check_backbone(backbone_name)
    try:
        if experiment == "ants":
            size = (224 if BACKBONES[backbone_name][4] == "imagenet" else committed.get("image_size", 64)) + 8
            train, val = data.hymenoptera("train", size), data.hymenoptera("val", size)
        else:
            train, val = training.digits_5_to_9("train", args), training.digits_5_to_9("test", args)
            keep = torch.randperm(len(val[1]), generator=torch.Generator().manual_seed(0))[:1000]
            val = (val[0][keep], val[1][keep])
    except Exception as e:
        raise BadInput(f"This needs the {experiment} data and could not get it ({e}).") from e
    picked = training.pick_per_class(train[1], per_class, seed=0)
    model = training.build(backbone_name, strategy, int(train[1].max()) + 1)
    accs = []
    for _, acc in training.fit(model, strategy, train[0][picked], train[1][picked], steps=0, seed=0,
                               batch_size=32, val=val, epochs=epochs, should_stop=should_stop):
        accs.append(acc)
        yield accs


# ---- the tab ------------------------------------------------------------------------------

def live_plot(accs, experiment, strategy):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(range(1, len(accs) + 1), accs, marker="o", label=strategy)
    ax.set(xlabel="epoch", ylabel="held-out accuracy", ylim=(0, 1), title=EXPERIMENTS[experiment][0])
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def run_live(experiment, strategy, per_class, epochs, backbone_name=None):
    yield None, "Starting..."
    for accs in live_train(experiment, strategy, per_class, epochs, backbone_name):
        yield live_plot(accs, experiment, strategy), f"Epoch {len(accs)}/{int(epochs)}: held-out accuracy {accs[-1]:.1%}"


def add_drawing(drawings, sketch, slot):
    drawings = dict(drawings or {})
    image = sketch.get("composite") if isinstance(sketch, dict) else sketch
    if image is None or np.asarray(image).size == 0 or (np.asarray(image).ndim == 3 and np.asarray(image)[..., -1].max() == 0):
        raise BadInput("The canvas is empty: draw something first.")
    if str(slot) not in {str(k) for k in range(1, MAX_CLASSES + 1)}:
        raise BadInput(f"Pick the class (1 to {MAX_CLASSES}) the drawing is an example of.")
    to_pil(image, "The drawing")  # refuses what no backbone could read (a 1x1 image), now rather than at Train
    drawings.setdefault(str(slot), []).append(np.asarray(image))
    return drawings, counts_text(drawings)


def counts_text(drawings):
    return "Drawings added: " + (", ".join(f"class {k}: {len(v)}" for k, v in sorted(drawings.items())) or "none")


def train_head(backbone_name, drawings, *names_and_files):
    names, files = names_and_files[:MAX_CLASSES], names_and_files[MAX_CLASSES:]
    examples = {}
    for slot, (name, uploads) in enumerate(zip(names, files), start=1):
        images = list(uploads or []) + list((drawings or {}).get(str(slot), []))
        if name and name.strip():
            examples[name.strip()] = images
        elif images:
            raise BadInput(f"Class {slot} has images but no name.")
    head = fit_head(examples, backbone_name)
    return head, f"Head trained on {', '.join(f'{n} ({len(v)})' for n, v in examples.items())}. Now classify a new image."


def classify_new(head, image):
    return None if image is None else predict(head, image)


# ---- what the Overview shows -----------------------------------------------------------------

OVERVIEW = Entry("Transfer learning", 5, "python -m train.transfer --experiment digits",
                 [Figure("digits 5-9 from 0-4 features, 10 labels a class", "transfer/digits",
                         "examples_per_class.10.frozen.mean", "{:.1%}"),
                  Figure("scratch", "transfer/digits", "examples_per_class.10.scratch.mean", "{:.1%}"),
                  Figure("ants vs bees fine-tuned", "transfer/ants", "examples_per_class.all.finetune.mean", "{:.1%}"),
                  Figure("scratch", "transfer/ants", "examples_per_class.all.scratch.mean", "{:.1%}")],
                 [Figure("ants vs bees, ImageNet ResNet-18 frozen", "transfer/ants",
                         "seed_reference.pretrained_imagenet_resnet18_frozen", "{}"),
                  Figure("scratch", "transfer/ants", "seed_reference.scratch", "{}")])


def thumbnail():
    """The Overview's picture of this experiment."""
    sizes = ["1", "5", "10", "50"]
    table = checkpoints.load_metrics("transfer/digits")["examples_per_class"]
    lines = {strategy: (list(range(len(sizes))), [table[s][strategy]["mean"] for s in sizes])
             for strategy in ("frozen", "finetune", "scratch")}
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
            experiment = gr.Radio([(v[0], k) for k, v in EXPERIMENTS.items()], value="ants", label="Experiment")
            strategy = gr.Radio(list(training.STRATEGIES), value="frozen", label="Strategy")
            per_class = gr.Slider(1, 120, value=10, step=1, label="Examples per class")
            epochs = gr.Slider(1, 30, value=10, step=1, label="Epochs")
            live_backbone = gr.Radio([(BACKBONE_LABELS[b].removeprefix("photos: "), b) for b in photo_backbones()],
                                     value=EXPERIMENTS["ants"][1], label="Backbone (ants vs bees)")
        with gr.Row():
            train_btn = gr.Button("Train", variant="primary")
            stop_btn = gr.Button("Stop")
        live_status = gr.Markdown()
        live_curve = gr.Plot()

    with gr.Accordion("Bring your own classes", open=True):
        gr.Markdown("Name 2 to 5 classes, give each a few images (upload, or draw and add), train a head on "
                    "frozen features in about a second, then classify a new image.")
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
                test_image = gr.Image(type="filepath", label="New image to classify", height=220)
                result = gr.Label(label="Prediction")
        drawings, head = gr.State({}), gr.State(None)

    live = train_btn.click(user_errors(run_live), [experiment, strategy, per_class, epochs, live_backbone],
                           [live_curve, live_status],
                           api_name="transfer_train", concurrency_limit=1, concurrency_id="transfer_train")
    stop_btn.click(None, cancels=[live], api_name="transfer_stop")
    add_btn.click(user_errors(add_drawing), [drawings, sketch, slot], [drawings, drawn], api_name="transfer_add_drawing")
    fit_btn.click(user_errors(train_head), [backbone_name, drawings, *names, *uploads], [head, fit_status],
                  api_name="transfer_fit_head")
    test_image.change(user_errors(classify_new), [head, test_image], result, api_name="transfer_predict")
