"""Overview: every experiment on one page, our measured result beside the seed's, a
thumbnail, and a button that opens its tab. Made for the first slide of a talk.

Our numbers are read from the checkpoints' metrics.json when the app starts, never typed
in; the seeds' numbers are what their issues state (the CIFAR-10 course's and the transfer
seed's are stored in the metrics too, and are read from there).
"""
import functools
import importlib.util
from dataclasses import dataclass

import gradio as gr
import matplotlib
import numpy as np
from PIL import Image

from core import checkpoints

matplotlib.use("Agg")  # this tab may be built first: no display needed for its thumbnails
import matplotlib.pyplot as plt  # noqa: E402

TITLE = "Overview"


@dataclass(frozen=True)
class Figure:
    """One number of a checkpoint's metrics.json: `key` is a dotted path into it."""
    label: str
    checkpoint: str
    key: str
    fmt: str = "{:.2%}"


@dataclass(frozen=True)
class Experiment:
    tab: str  # its tab's id, the name of its module in demos/
    title: str
    issue: int
    command: str  # what trains its checkpoints
    ours: list[Figure]
    seed: list[str | Figure]  # the seed's result: the issue's words, or numbers from the metrics
    where: str = ""  # what our numbers were measured on


EXPERIMENTS = [
    Experiment("fizzbuzz", "FizzBuzz", 2, "python -m train.fizzbuzz",
               [Figure("right on 1..100", "fizzbuzz", "test_correct", "{}/100")],
               ["97/99 right (wrong on 68 and 84), 10-100-4 network"],
               "numbers it never saw"),
    Experiment("mnist", "Draw a digit (MNIST)", 2, "python -m train.mnist",
               [Figure("CNN", "mnist/cnn", "test_accuracy"), Figure("LeNet-style", "mnist/lenet", "test_accuracy"),
                Figure("MLP", "mnist/mlp", "test_accuracy")],
               ["no test accuracy stated (targets: CNN 99.3%, LeNet 99.2%, MLP 98.2%)"],
               "10,000 test digits"),
    Experiment("gan", "GANs", 3, "python -m train.gan --model cdcgan",
               [Figure("conditional DCGAN draws the asked-for digit", "gan/cdcgan", "requested_digit_accuracy", "{:.1%}"),
                Figure("DCGAN samples a classifier is sure of", "gan/dcgan", "confident_share", "{:.1%}"),
                Figure("MLP GAN", "gan/bootcamp", "confident_share", "{:.1%}")],
               ["no sample quality measured (targets: asked-for digit 95%, DCGAN 90% sure)"],
               "10,000 samples judged by the project's LeNet"),
    Experiment("vae", "VAEs", 3, "python -m train.vae --model all",
               [Figure("ELBO, Fashion-MNIST 2-D", "vae/fashion_vae2d", "test_elbo_nats", "{:.1f} nats"),
                Figure("MNIST 16-D", "vae/mnist_vae16", "test_elbo_nats", "{:.1f} nats")],
               ["no ELBO reported, and its KL term was not the standard one"],
               "10,000 test images"),
    Experiment("cifar10", "CIFAR-10 model zoo", 4, "python -m train.cifar10 --arch all",
               [Figure("VGG (airbench)", "cifar10/vgg_airbench", "test_accuracy"),
                Figure("ResNet-20", "cifar10/resnet20", "test_accuracy"),
                Figure("CNN", "cifar10/cnn", "test_accuracy"), Figure("MLP", "cifar10/mlp", "test_accuracy")],
               [Figure("VGG", "cifar10/vgg", "seed_accuracy", "{:.1%}"), Figure("CNN", "cifar10/cnn", "seed_accuracy", "{:.1%}"),
                Figure("MLP", "cifar10/mlp", "seed_accuracy", "{:.1%}"), "on its first 2,000 test images"],
               "10,000 test images"),
    Experiment("transfer", "Transfer learning", 5, "python -m train.transfer --experiment digits",
               [Figure("digits 5-9 from 0-4 features, 10 labels a class", "transfer/digits",
                       "examples_per_class.10.frozen.mean", "{:.1%}"),
                Figure("scratch", "transfer/digits", "examples_per_class.10.scratch.mean", "{:.1%}"),
                Figure("ants vs bees fine-tuned", "transfer/ants", "examples_per_class.all.finetune.mean", "{:.1%}"),
                Figure("scratch", "transfer/ants", "examples_per_class.all.scratch.mean", "{:.1%}")],
               [Figure("ants vs bees, ImageNet ResNet-18 frozen", "transfer/ants",
                       "seed_reference.pretrained_imagenet_resnet18_frozen", "{}"),
                Figure("scratch", "transfer/ants", "seed_reference.scratch", "{}")]),
    Experiment("text_classification", "Chinese headlines", 9, "python -m train.text_classification --model textcnn",
               [Figure("TextCNN", "text_classification/textcnn", "test_accuracy"),
                Figure("BiLSTM", "text_classification/bilstm", "test_accuracy")],
               ["TextCNN 95.2%, TextRNN 93.2% on news articles, with test batches leaking into training; "
                "a public TextCNN on all 180,000 headlines: 91.2%"],
               "10,000 test headlines"),
    Experiment("speech", "Spoken digits (LAS)", 8, "python -m train.speech",
               [Figure("word error rate", "speech", "test_wer_beam", "{:.1%}"),
                Figure("character error rate", "speech", "test_cer_beam", "{:.1%}")],
               ["character edit distance computed, never reported (target: WER 8%)"],
               "a speaker held out of training"),
    Experiment("translation", "Translation (Transformer)", 7, "python -m train.translation",
               [Figure("sacreBLEU, beam 4", "translation", "test_bleu_beam4", "{:.2f}"),
                Figure("greedy", "translation", "test_bleu_greedy", "{:.2f}"),
                Figure("chrF", "translation", "test_chrf_beam4", "{:.2f}")],
               ["validation loss 1.6106, no BLEU (target: BLEU 35)"],
               "1,000 test sentences"),
    Experiment("style_transfer", "Neural style transfer", 6, "python -m train.style_transfer --style multi",
               [Figure("feed-forward (one network, six paintings): style loss", "style_transfer/multi", "style_loss",
                       "{:.3f}"),
                Figure("ms per 512x512 photo", "style_transfer/multi", "ms_per_512px_image", "{:.0f}")],
               ["no numbers; it calls its own result mediocre"]),
    Experiment("detection", "Face-mask detection", 10, "python -m train.detection",
               [Figure("mAP (IoU 0.5)", "detection", "test_map50", "{:.3f}")],
               ["training loss 0.0307 only, no mAP (target: mAP 0.60 at IoU 0.5)"]),
    Experiment("faces", "Face verification", 11, "python -m train.faces --center-loss 0.01",
               [Figure("verification accuracy with center loss", "faces/center", "test_accuracy", "{:.1%}"),
                Figure("without", "faces/plain", "test_accuracy", "{:.1%}"),
                Figure("ROC AUC", "faces/center", "test_auc", "{:.3f}")],
               ["verification accuracy 71.5% on its own split"],
               "LFW's 1,000 pairsDevTest pairs, people never trained on"),
]


def lookup(metrics: dict, key: str):
    """metrics["a"]["b"] for key "a.b"; None when any part is missing."""
    value = metrics
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _read(figures, metrics_of) -> tuple[list[str], dict]:
    """Formatted "label **number**" parts and the raw numbers, for the figures found."""
    parts, numbers = [], {}
    for fig in figures:
        if isinstance(fig, str):
            parts.append(fig)
            continue
        value = lookup(metrics_of(fig.checkpoint), fig.key)
        if value is not None:
            parts.append(f"{fig.label} **{fig.fmt.format(value)}**")
            numbers[f"{fig.checkpoint}:{fig.key}"] = value
    return parts, numbers


def results(root=None) -> list[dict]:
    """Every experiment with our headline numbers (read from the checkpoints' metrics.json
    under `root`, default checkpoints/) and the seed's. Keys: tab, title, issue, built
    (its demos module exists), trained, ours (markdown), seed (markdown), numbers
    ({"<checkpoint>:<key>": value} as read), command (what trains it)."""
    metrics_of = functools.cache(lambda name: checkpoints.load_metrics(name, root))
    rows = []
    for exp in EXPERIMENTS:
        ours, numbers = _read(exp.ours, metrics_of)
        seed, seed_numbers = _read(exp.seed, metrics_of)
        rows.append({
            "tab": exp.tab, "title": exp.title, "issue": exp.issue,
            "built": importlib.util.find_spec(f"demos.{exp.tab}") is not None,
            "trained": bool(numbers),
            "ours": ", ".join(ours) + (f" ({exp.where})" if ours and exp.where else ""),
            "seed": ", ".join(seed) if seed else "-",
            "numbers": numbers, "seed_numbers": seed_numbers, "command": exp.command,
        })
    return rows


def status(row: dict) -> str:
    """Our result, or why there is none yet."""
    if row["trained"]:
        return row["ours"]
    if not row["built"]:
        return f"Not built yet (issue {row['issue']})."
    return f"Not trained yet. Train it with `{row['command']}`."


# ---- thumbnails, made from what the project's own runs wrote ------------------------------

def _figure_image(fig) -> Image.Image:
    fig.tight_layout()
    fig.canvas.draw()
    image = Image.fromarray(np.asarray(fig.canvas.buffer_rgba())).convert("RGB")
    plt.close(fig)
    return image


def curves_image(lines: dict[str, tuple[list, list]], xlabel: str, ylabel: str, percent: bool = False,
                 xticks: list[str] | None = None) -> Image.Image:
    """A small plot with large type (it is read from the back of a room)."""
    fig, ax = plt.subplots(figsize=(4.5, 3), dpi=80)
    for label, (x, y) in lines.items():
        ax.plot(x, [v * 100 for v in y] if percent else y, label=label, linewidth=2.5)
    ax.set_xlabel(xlabel, fontsize=13)
    ax.set_ylabel(ylabel + (" (%)" if percent else ""), fontsize=13)
    ax.tick_params(labelsize=11)
    if xticks:
        ax.set_xticks(range(len(xticks)), xticks)
    ax.grid(alpha=0.3)
    if len(lines) > 1:
        ax.legend(fontsize=10)
    return _figure_image(fig)


def placeholder(text: str) -> Image.Image:
    fig, ax = plt.subplots(figsize=(4.5, 3), dpi=80)
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=16, color="0.4", wrap=True)
    ax.set_axis_off()
    return _figure_image(fig)


def _history(name: str, key: str) -> tuple[list, list]:
    history = checkpoints.load_metrics(name).get("history") or []
    rows = [h for h in history if h.get(key) is not None]
    return [h["epoch"] for h in rows], [h[key] for h in rows]


def _thumb_fizzbuzz():
    return curves_image({"train": _history("fizzbuzz", "train_accuracy"),
                         "validation": _history("fizzbuzz", "val_accuracy")}, "epoch", "accuracy", percent=True)


def _thumb_mnist():
    from demos.mnist import EXAMPLES, preprocess_drawing

    # The project's own example drawings, as the models see them (28x28, centred by mass).
    tiles = [preprocess_drawing(np.asarray(Image.open(path))) for path in sorted(EXAMPLES.glob("digit_*.png"))]
    picture = np.vstack([np.hstack(tiles[i:i + 5]) for i in range(0, len(tiles), 5)])
    image = Image.fromarray((picture * 255).astype(np.uint8))
    return image.resize((image.width * 3, image.height * 3), Image.Resampling.NEAREST)


def _thumb_gan():
    from demos import gan

    frames, _ = gan.timelapse("cdcgan")  # the conditional generator's samples after its last epoch
    return gan.grid(frames[-1][:40], columns=8, scale=2, pad=1).convert("RGB")


def _thumb_vae():
    import torch

    from demos import vae

    values = np.linspace(-2.5, 2.5, 10)  # the 2-D VAE's latent plane, decoded in one batch
    z = torch.tensor([[x, y] for y in values[::-1] for x in values], dtype=torch.float32)
    with torch.inference_mode():
        tiles = vae.to_uint8(vae.load_model("fashion_vae2d").decode(z))
    return Image.fromarray(np.vstack([np.hstack(tiles[r * 10:(r + 1) * 10]) for r in range(10)])).resize((280, 280))


def _thumb_cifar10():
    lines = {label: _history(f"cifar10/{arch}", "test_accuracy")
             for arch, label in (("vgg_airbench", "VGG (airbench)"), ("resnet20", "ResNet-20"), ("cnn", "CNN"), ("mlp", "MLP"),
                                 ("softmax", "softmax"))}
    return curves_image({k: v for k, v in lines.items() if v[0]}, "epoch", "test accuracy", percent=True)


def _thumb_transfer():
    sizes = ["1", "5", "10", "50"]
    table = checkpoints.load_metrics("transfer/digits")["examples_per_class"]
    lines = {strategy: (list(range(len(sizes))), [table[s][strategy]["mean"] for s in sizes])
             for strategy in ("frozen", "finetune", "scratch")}
    return curves_image(lines, "labelled examples per class", "digits 5-9 accuracy", percent=True, xticks=sizes)


def _thumb_text_classification():
    # The committed models train on train + validation, so their curves are training accuracy.
    return curves_image({"TextCNN": _history("text_classification/textcnn", "train_accuracy"),
                         "BiLSTM": _history("text_classification/bilstm", "train_accuracy")},
                        "epoch", "training accuracy", percent=True)


def _thumb_speech():
    return curves_image({"WER": _history("speech", "val_wer"), "CER": _history("speech", "val_cer")},
                        "epoch", "validation error rate", percent=True)


def _thumb_translation():
    return curves_image({"greedy": _history("translation", "val_bleu")}, "epoch", "validation BLEU")


def _thumb_style_transfer():
    from demos import style_transfer

    painting = style_transfer.showcase_painting(style_transfer.fast_paintings())
    return style_transfer.stylize(style_transfer.CONTENT_EXAMPLES[0], painting, size=280, method="fast")


def _thumb_detection():
    return curves_image({"validation": _history("detection", "val_map50")}, "epoch", "mAP (IoU 0.5)")


def _thumb_faces():
    return curves_image({"center loss": _history("faces/center", "test_auc"),
                         "cross-entropy only": _history("faces/plain", "test_auc")}, "epoch", "pair ROC AUC")


THUMBNAILS = {"fizzbuzz": _thumb_fizzbuzz, "mnist": _thumb_mnist, "gan": _thumb_gan, "vae": _thumb_vae,
              "cifar10": _thumb_cifar10, "transfer": _thumb_transfer,
              "text_classification": _thumb_text_classification, "speech": _thumb_speech,
              "translation": _thumb_translation, "style_transfer": _thumb_style_transfer,
              "detection": _thumb_detection, "faces": _thumb_faces}


def thumbnail(row: dict) -> Image.Image:
    """A picture of the experiment: its model's output or its training curve."""
    if not row["built"]:
        return placeholder("not built yet")
    if not row["trained"]:
        return placeholder("not trained yet")
    make = THUMBNAILS.get(row["tab"])
    try:
        return make() if make else placeholder(row["title"])
    except Exception:  # a thumbnail must never take the overview down
        return placeholder(row["title"])


# ---- the tab ------------------------------------------------------------------------------

def card(row: dict) -> str:
    return (f"### {row['title']}\n"
            f"**Ours:** {status(row)}  \n"
            f"**The seed:** {row['seed']}")


def build():
    """Lay out the cards; returns (button, tab id) pairs for app.py to wire to its tabs."""
    gr.Markdown("Every experiment of the playground: what our model measured (read from its checkpoint's "
                "metrics when the app started) beside what the seed it comes from reported. Open a tab to "
                "try it live.")
    links = []
    rows = results()
    for start in range(0, len(rows), 3):
        with gr.Row():
            for row in rows[start:start + 3]:
                with gr.Column(min_width=280):
                    gr.Image(thumbnail(row), show_label=False, interactive=False, height=200, buttons=[],
                             elem_id=f"overview-thumb-{row['tab']}")
                    gr.Markdown(card(row), elem_id=f"overview-card-{row['tab']}")
                    if row["built"]:
                        links.append((gr.Button(f"Open {row['title']}", size="sm",
                                                elem_id=f"overview-open-{row['tab']}"), row["tab"]))
    return links
