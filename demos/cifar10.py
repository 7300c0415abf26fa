"""CIFAR-10 model zoo: every model's guess on your picture, a leaderboard, model cards
(curves, confusion matrix, confident mistakes, what the first conv layer sees), the
course's study, and a training lab that trains a small CNN live."""
import functools
import json
import time
from pathlib import Path

import gradio as gr
import numpy as np
import skimage
import torch
from PIL import Image

from core import checkpoints, labs
from core.errors import BadInput
from core.plots import confusion_figure, curves, curves_image
from core.results import Entry, Figure
from core.ui import clear_refused_uploads, user_errors
from models.cifar10 import (ARCHITECTURES, INITIALIZERS, OPTIMIZERS, STUDY, checkpoint_name, class_names, normalize,
                            predict, preprocess_image, train_command)
from models import feature_maps
from models.cifar10 import load_model as load_committed
from train.cifar10_study import lab_train

TITLE = "CIFAR-10 model zoo"
LABELS = {
    "logistic": "Logistic regression (airplane vs automobile)", "softmax": "Softmax regression", "mlp": "MLP",
    "cnn": "3-layer CNN", "vgg": "VGG (airbench-style)", "vgg_airbench": "VGG, airbench94's whitening and recipe",
    "resnet": "ResNet-14 (wide)", "inception": "Small Inception",
    "mobilenet": "MobileNet (0.5x)", "plain20": "PlainNet-20 (no shortcuts)", "resnet20": "ResNet-20",
    "se_resnet20": "SE-ResNet-20", "densenet_bc": "DenseNet-BC-40",
    "efficientnet": "EfficientNet-Lite0 (ImageNet-pretrained)",
}
SKIMAGE_DATA = Path(skimage.__file__).parent / "data"
# Pictures that ship inside scikit-image (a dependency), none of them from CIFAR-10.
EXAMPLES = [SKIMAGE_DATA / name for name in ("chelsea.png", "rocket.jpg", "horse.png", "motorcycle_left.png", "coffee.png")]


def models() -> list[str]:
    """Every architecture of the zoo ("logistic" only tells airplanes from automobiles); an
    ImageNet-pretrained one only once it is trained (its training is a script of its own)."""
    return [a for a in ARCHITECTURES if not ARCHITECTURES[a].pretrained or checkpoints.find(checkpoint_name(a))]


def trained_models() -> list[str]:
    return [m for m in models() if checkpoints.load_metrics(checkpoint_name(m))]


def best_model() -> str:
    """The ten-class model with the best committed test accuracy."""
    scored = [(checkpoints.load_metrics(checkpoint_name(m)).get("test_accuracy", 0), m)
              for m in models() if m != "logistic"]
    accuracy, name = max(scored)
    if not accuracy:
        raise checkpoints.MissingCheckpoint("cifar10", train_command("vgg"))
    return name


@functools.cache
def load_model(name: str):
    if name not in ARCHITECTURES:
        raise BadInput(f"Unknown model {name!r}; choose one of {models()}.")
    return load_committed(name)


def classify_tensor(x: torch.Tensor, model: str) -> dict[str, float]:
    probs = predict(load_model(model), x.unsqueeze(0), torch.device("cpu"))[0]
    return {name: float(p) for name, p in zip(class_names(model), probs)}


def classify(image, model: str) -> dict[str, float]:
    """Class probabilities keyed by class name, from one model, for any picture."""
    return classify_tensor(preprocess_image(image), model)


def leaderboard() -> list[list]:
    """Rows of model, parameters, test accuracy, training time, the seed's number; the most
    accurate first (the untrained last)."""
    rows = []
    accuracy = {name: checkpoints.load_metrics(checkpoint_name(name)).get("test_accuracy", -1) for name in models()}
    for name in sorted(models(), key=lambda n: -accuracy[n]):
        m = checkpoints.load_metrics(checkpoint_name(name))
        seed = ARCHITECTURES[name].seed_accuracy
        rows.append([LABELS[name], f"{m['parameters']:,}" if m else "-",
                     f"{m['test_accuracy']:.2%}" if m else "not trained yet",
                     f"{m['train_wall_time_s'] / 60:.1f} min" if m else "-",
                     f"{seed:.1%}" if seed else "-"])
    return rows


def accuracy_against_time_figure():
    """Every trained ten-class model's test accuracy after each epoch against its training
    time so far, with the issue's 88% and 92% lines: how close each got, and at what cost."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.6))
    colours = plt.get_cmap("tab20").colors
    for i, name in enumerate(models()):
        history = checkpoints.load_metrics(checkpoint_name(name)).get("history")
        if name == "logistic" or not history:
            continue
        # a model trained with held-out validation images has its curve on them, not on the test split
        curve = "test_accuracy" if "test_accuracy" in history[0] else "val_accuracy"
        ax.plot([h["wall_time_s"] / 60 for h in history], [h[curve] for h in history], marker=".",
                color=colours[2 * (i % 10) + i // 10], linestyle="-" if i < 10 else "--",
                label=LABELS[name] + ("" if curve == "test_accuracy" else " (validation)"))
    for target in (0.88, 0.92):
        ax.axhline(target, color="gray", linestyle="--", linewidth=1)
    ax.set_ylim(0.3, 0.95)
    ax.set_xlabel("training time (minutes, 2 CPU cores)")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the curves, never on them
    fig.tight_layout()
    return fig


def classify_all(image):
    """The tab's action: each trained model's top 3, the 32x32 picture they saw, a message."""
    try:
        x = preprocess_image(image)
    except BadInput as e:
        # one update per card: Gradio consumes an update dict, so a shared one cleared only the first card
        return [gr.update(value=None) for _ in models()] + [None, str(e)]
    out = []
    for name in models():
        try:
            out.append(classify_tensor(x, name))
        except checkpoints.MissingCheckpoint:
            out.append(gr.update(value=None, label=f"{LABELS[name]}: not trained yet"))
    seen = Image.fromarray(x.permute(1, 2, 0).numpy()).resize((128, 128), Image.Resampling.NEAREST)
    return out + [seen, ""]


# ---- model cards ------------------------------------------------------------------------

def mistakes_gallery(model: str) -> list:
    path = checkpoints.find(checkpoint_name(model))
    metrics = checkpoints.load_metrics(checkpoint_name(model))
    if path is None or not (path / "mistakes.safetensors").exists():
        return []
    from safetensors.numpy import load_file

    images = load_file(str(path / "mistakes.safetensors"))["images"]
    names = class_names(model)
    return [(Image.fromarray(img.transpose(1, 2, 0)).resize((96, 96), Image.Resampling.NEAREST),
             f"{names[m['label']]} called {names[m['predicted']]} ({m['confidence']:.0%})")
            for img, m in zip(images, metrics["confident_mistakes"])]


def model_card(model: str):
    """Markdown summary, training curves, confusion matrix and confident mistakes."""
    if model not in ARCHITECTURES:
        raise BadInput(f"Unknown model {model!r}; choose one of {models()}.")
    metrics = checkpoints.load_metrics(checkpoint_name(model))
    if not metrics:
        return f"No checkpoint yet: run `{train_command(model)}`.", None, None, []
    seed = ARCHITECTURES[model].seed_accuracy
    text = (f"**{LABELS[model]}**: test accuracy **{metrics['test_accuracy']:.2%}** on {metrics['test_images']:,} "
            f"test images ({metrics['data']}), {metrics['parameters']:,} parameters, trained in "
            f"{metrics['train_wall_time_s'] / 60:.1f} min ({metrics['hyperparameters']['epochs']} epochs on "
            f"{metrics['device']})" + (f"; the course reported {seed:.1%} on its first 2,000 test images" if seed else "")
            + (f"; it starts from the {metrics['pretrained']}" if metrics.get("pretrained") else "")
            + f". Reproduce: `{metrics['command']}`")
    curve = "test" if "test_accuracy" in metrics["history"][0] else "val"  # the held-out images' curve, if it has one
    fig = curves(metrics["history"], {"loss": ["train_loss", f"{curve}_loss"],
                                      "accuracy": ["train_accuracy", f"{curve}_accuracy"]}, LABELS[model])
    return text, fig, confusion_figure(metrics["confusion_matrix"], class_names(model)), mistakes_gallery(model)


def inside(image, model: str) -> list[tuple[Image.Image, str]]:
    """Inside one model for a picture, as (picture, caption) pairs: the 32x32 picture it reads,
    every layer's output (feature_maps.layers_of picks them) and where it looked for the class
    it chose."""
    x = preprocess_image(image)
    net = load_model(model)
    batch = normalize(x.unsqueeze(0))
    layers = feature_maps.layers_of(net)
    outputs, scores = feature_maps.layer_outputs(net, batch, layers)
    said = class_names(model)[int(scores.argmax())]
    pixels = x.permute(1, 2, 0).numpy()
    shown = [(Image.fromarray(pixels).resize((160, 160), Image.Resampling.NEAREST), "the input: 32x32 pixels")]
    shown += [(Image.fromarray(picture), caption) for picture, caption in feature_maps.captioned(layers, outputs)]
    convs = [layer for layer in layers if isinstance(layer.module, torch.nn.Conv2d)]
    heat = feature_maps.grad_cam(net, batch, feature_maps.shown_module(net, convs[-1]) if convs else None,
                                 int(scores.argmax()))
    if heat.shape != pixels.shape[:2]:  # the ImageNet network reads the picture upsampled
        heat = np.asarray(Image.fromarray(heat).resize(pixels.shape[1::-1], Image.Resampling.BILINEAR))
    looked = f"where {convs[-1].name} looked" if convs else "the pixels that counted most"
    shown.append((Image.fromarray(feature_maps.overlay(pixels, heat)),
                  f"{looked} for the {said} it says ({'Grad-CAM' if convs else 'gradient x input'})"))
    return shown


# ---- the course's study and the training lab ------------------------------------------------

def study_rows() -> list[list]:
    if not STUDY.exists():
        return [[f"not run yet: {train_command('study')}", "", "", ""]]
    return [[r["variant"], f"{r['test_accuracy']:.2%}", f"{r['seed_accuracy']:.2%}" if r.get("seed_accuracy") else "-",
             f"{r['train_wall_time_s']:.0f} s"] for r in json.loads(STUDY.read_text())["runs"]]


def lab_plot(history, title="Training lab", batches=()):
    """The lab's curves: each batch's training loss and accuracy (faint, with a running mean)
    as they come, and the test loss and accuracy after each epoch."""
    import matplotlib.pyplot as plt

    if not batches:
        return curves(history, {"loss": ["train_loss", "test_loss"], "accuracy": ["train_accuracy", "test_accuracy"]},
                      title)
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.2))
    x = np.array([b["epoch"] for b in batches])
    for ax, key in zip(axes, ("loss", "accuracy")):
        values = np.array([b[f"train_{key}"] for b in batches])
        mean = [values[max(0, i - 9):i + 1].mean() for i in range(len(values))]  # of the last ten batches
        ax.plot(x, values, color="tab:blue", alpha=0.25, linewidth=0.8)
        ax.plot(x, mean, color="tab:blue", label=f"train {key} (batches)")
        if history:
            ax.plot([h["epoch"] for h in history], [h[f"test_{key}"] for h in history], "o-", color="tab:orange",
                    label=f"test {key} (each epoch)")
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


# ---- the training lab: one run at a time, stopped within a batch --------------------------------
# The lab trains in a thread of its own, one training at a time, stopped within a batch by
# Stop or by the client leaving (core/labs.py says why).
PLOT_EVERY_S = 1.0  # the lab's curves are redrawn at most this often (a few batches each time)
LAB = labs.Lab(limit_s=30 * 60, busy="The lab is busy: one training at a time on this server. Try again in a minute.")


def lab_status(run: labs.Run, note: str = "") -> str:
    finished = len(run.history)
    accuracy = f"test accuracy {run.history[-1]['test_accuracy']:.1%}" if finished else ""
    seconds = time.monotonic() - run.started
    if not run.done.is_set():
        if run.paused and not run.stop.is_set() and not run.holding:
            return "Pausing after the current batch..."
        if run.paused and not run.stop.is_set():
            where = f"after batch {len(run.batches)} (epoch {run.batches[-1]['epoch']:.2f})" if run.batches else "before the first batch"
            return f"Paused {where}. Step trains one more batch; Resume goes on."
        if run.stop.is_set():
            return (f"Stopping (after the current batch): {finished} epoch(s) finished"
                    + (f", {accuracy}" if accuracy else ""))
        return (f"Epoch {finished + 1}/{run.epochs} training, {seconds:.0f} s in"
                + (f"; epoch {finished}: {accuracy}" if accuracy else "") + note)
    if finished == run.epochs:
        return f"Epoch {finished}/{run.epochs}: {accuracy} after {run.history[-1]['wall_time_s']:.0f} s{note}"
    why = f" (a run may take at most {run.limit_s // 60:.0f} minutes on this shared server)" if run.timed_out() else ""
    if not finished:
        return f"Stopped during epoch 1{why}: no epoch finished."
    return f"Stopped after epoch {finished} of {run.epochs}{why}: {accuracy}."


def run_lab(activation, initializer, optimizer, augment, batch_norm, frozen_stages, epochs, train_images,
            request: gr.Request = None):
    """The lab button: streams the curves after every epoch and the status four times a second; Stop
    (or leaving the page) ends the training within a batch."""
    if initializer not in INITIALIZERS:
        raise BadInput(f"The initializer must be one of {', '.join(INITIALIZERS)}, not {initializer!r}.")
    note = " (frozen stages come from the committed 3-layer CNN: ReLU and batch norm)" if frozen_stages else ""
    yield gr.skip(), f"Loading data and starting{note}..."
    run = LAB.new_run(getattr(request, "session_hash", None), epochs)

    def follow(epoch, loss, accuracy):
        run.batches.append({"epoch": epoch, "train_loss": loss, "train_accuracy": accuracy})

    training = lab_train(activation, initializer, optimizer, augment, batch_norm, frozen_stages, epochs, train_images,
                         should_stop=run.should_stop, on_batch=follow)
    shown, drawn_at = (0, 0), 0.0
    for training_now in LAB.watch(run, training, request):
        status = lab_status(run, note) if training_now else "Waiting for the training before yours to end..."
        now = (len(run.history), len(run.batches))
        # the curves move every few batches: redrawn when there is something new, at most every PLOT_EVERY_S
        fresh = now != shown and (now[0] > shown[0] or time.monotonic() - drawn_at >= PLOT_EVERY_S)
        yield (lab_plot(run.history, batches=list(run.batches)) if fresh else gr.skip()), status
        if fresh:
            shown, drawn_at = now, time.monotonic()
    batches = list(run.batches)
    yield (lab_plot(run.history, batches=batches) if run.history or batches else None), lab_status(run, note)


def pause_lab(action: str, request: gr.Request = None) -> str:
    """The Pause, Step and Resume buttons: this session's training waits between two batches,
    trains one more batch, or goes on; the answer is the status at once."""
    run = LAB.runs.get(getattr(request, "session_hash", None))
    if run is None or run.done.is_set():
        return "No training of yours is running: Train starts one."
    if action not in ("pause", "step", "resume"):
        raise BadInput(f"The lab's action is pause, step or resume, not {action!r}.")
    getattr(run, action)()
    return lab_status(run) if action != "step" else f"Training one more batch (batch {len(run.batches) + 1})..."


def stop_lab(request: gr.Request = None) -> str:
    """The Stop button (besides cancelling the lab's event): stops this session's training
    within a batch and says so at once."""
    run = LAB.stop(getattr(request, "session_hash", None))
    if run is None:
        return "No training of yours is running " + ("(another one is)." if labs.LOCK.locked() else "(the lab is free).")
    return lab_status(run)


def show_model(model):
    return model_card(model)


# ---- what the Overview shows -----------------------------------------------------------------

OVERVIEW = Entry("CIFAR-10 model zoo", 4, train_command(),
                 [Figure("VGG (airbench)", checkpoint_name("vgg_airbench"), "test_accuracy"),
                  Figure("ResNet-20", checkpoint_name("resnet20"), "test_accuracy"),
                  Figure("CNN", checkpoint_name("cnn"), "test_accuracy"), Figure("MLP", checkpoint_name("mlp"), "test_accuracy")],
                 [Figure("VGG", checkpoint_name("vgg"), "seed_accuracy", "{:.1%}"),
                  Figure("CNN", checkpoint_name("cnn"), "seed_accuracy", "{:.1%}"),
                  Figure("MLP", checkpoint_name("mlp"), "seed_accuracy", "{:.1%}"), "on its first 2,000 test images"],
                 "10,000 test images")


def thumbnail():
    """The Overview's picture of this experiment."""
    lines = {}
    for arch, label in (("vgg_airbench", "VGG (airbench)"), ("resnet20", "ResNet-20"), ("cnn", "CNN"), ("mlp", "MLP"),
                        ("softmax", "softmax")):
        epochs, accuracy = checkpoints.history(checkpoint_name(arch), "test_accuracy")
        if not epochs:  # retrained with held-out images: its curve is on those
            (epochs, accuracy), label = checkpoints.history(checkpoint_name(arch), "val_accuracy"), label + " (validation)"
        if epochs:
            lines[label] = epochs, accuracy
    return curves_image(lines, "epoch", "accuracy", percent=True)


def build():
    gr.Markdown("Upload any picture (or pick one of scikit-image's): every model of the zoo gives its top 3 of "
                "the ten CIFAR-10 classes. They see only the centre square shrunk to 32x32 (shown below the "
                "upload), which is why a cat photo can become a dog. Leaderboard, model cards, the course's "
                "study and a live training lab are below."
                + (" **For a photo of your own, trust the ImageNet-pretrained EfficientNet-Lite0 first**: its features "
                   "were learned from 1.3 million ImageNet photos, not from CIFAR-10's thumbnails alone (on the "
                   "example cat, horse and motorcycle it is right with 87-95% confidence, where the best model "
                   "trained from scratch says 64-95%)." if "efficientnet" in models() else ""))
    with gr.Row():
        with gr.Column(scale=1):
            picture = gr.Image(type="filepath", image_mode=None, label="Your picture", height=260, elem_id="cifar10-image")
            classify_btn = gr.Button("Classify", variant="primary")
            status = gr.Markdown(elem_id="cifar10-status")
            seen = gr.Image(label="What the models see (32x32)", interactive=False, height=140, buttons=[])
        with gr.Column(scale=3):
            outputs = []
            names = models()
            for row in range(0, len(names), 4):
                with gr.Row():
                    outputs += [gr.Label(num_top_classes=3, label=LABELS[n], elem_id=f"cifar10-label-{n}")
                                for n in names[row:row + 4]]
    gr.Examples([[str(p)] for p in EXAMPLES if p.exists()], inputs=[picture], outputs=[*outputs, seen, status],
                fn=classify_all, run_on_click=True, label="Examples (from scikit-image)",
                api_name="cifar10_example")
    gr.Dataframe(leaderboard(), headers=["model", "parameters", "test accuracy", "training time", "course's number"],
                 label="Leaderboard, most accurate first (all 10,000 test images; the course measured on its first 2,000)",
                 interactive=False, max_height=2000, elem_id="cifar10-leaderboard")
    with gr.Accordion("Test accuracy against training time (dashed: the 88% and 92% targets)", open=False):
        gr.Plot(accuracy_against_time_figure(), show_label=False)

    with gr.Accordion("Model cards: curves, confusion matrix, confident mistakes, feature maps", open=False):
        trained = trained_models()
        chosen = gr.Dropdown([(LABELS[n], n) for n in names], value=trained[-1] if trained else names[0], label="Model")
        text, fig, confusion, wrong = model_card(chosen.value)
        card = gr.Markdown(text)
        with gr.Row():
            plot = gr.Plot(fig, label="Training curves")
            confusion_plot = gr.Plot(confusion, label="Confusion matrix (test set)")
        gallery = gr.Gallery(wrong, label="Test images it gets most confidently wrong", columns=8, height=300)
        maps_btn = gr.Button("Look inside it: every layer's output for your picture")
        maps = gr.Gallery(label="Layer by layer (bright is strong)", columns=4, height="auto", object_fit="contain",
                          elem_id="cifar10-inside")

    with gr.Accordion("The course's study: activation, initializer, optimizer, augmentation, depth", open=False):
        gr.Dataframe(study_rows(), headers=["variant", "test accuracy", "course's number", "training time"],
                     interactive=False)

    with gr.Accordion("Training lab: train a small CNN now and watch the curves", open=False):
        gr.Markdown("Trains the course's 3-layer CNN on a random subset of CIFAR-10 training images and tests "
                    "it on 2,000 test images after every epoch. One run at a time on this server (up to "
                    f"{LAB.limit_s // 60:.0f} minutes). The training curves move every few batches; Pause holds it "
                    "between two batches, Step trains one more, Resume goes on, and Stop ends it after the current batch.")
        with gr.Row():
            activation = gr.Dropdown(["relu", "sigmoid", "tanh"], value="relu", label="Activation")
            initializer = gr.Dropdown(list(INITIALIZERS), value="he", label="Initializer")
            optimizer = gr.Dropdown(list(OPTIMIZERS), value="adam", label="Optimizer")
            frozen = gr.Slider(0, 3, value=0, step=1, label="Frozen conv stages (restored from the committed CNN)")
        with gr.Row():
            augment = gr.Checkbox(True, label="Augmentation (crop + flip)")
            batch_norm = gr.Checkbox(True, label="Batch norm")
            epochs = gr.Slider(1, 20, value=5, step=1, label="Epochs")
            train_images = gr.Slider(500, 50000, value=10000, step=500, label="Training images")
        with gr.Row():
            train_btn = gr.Button("Train", variant="primary")
            pause_btn = gr.Button("Pause")
            step_btn = gr.Button("Step one batch")
            resume_btn = gr.Button("Resume")
            stop_btn = gr.Button("Stop")
        lab_status = gr.Markdown(elem_id="cifar10-lab-status")
        lab_curves = gr.Plot(label="Curves")

    # The tab reads the upload itself (preprocess=False): a refused picture is said once in the
    # status and leaves the box, instead of a red "Error" on all 13 cards (core.ui).
    clear_refused_uploads(picture, "picture", api_name="cifar10_check_upload")
    gr.on([picture.input, classify_btn.click], user_errors(classify_all), inputs=picture,
          outputs=[*outputs, seen, status], api_name="cifar10_classify", trigger_mode="always_last", preprocess=False)
    chosen.change(user_errors(show_model), inputs=chosen, outputs=[card, plot, confusion_plot, gallery],
                  api_name="cifar10_model_card")
    maps_btn.click(user_errors(inside), inputs=[picture, chosen], outputs=maps, api_name="cifar10_inside")
    picture.clear(lambda: [], outputs=maps, api_name="cifar10_clear_inside", api_visibility="private")
    lab_event = train_btn.click(user_errors(run_lab), inputs=[activation, initializer, optimizer, augment, batch_norm,
                                                              frozen, epochs, train_images],
                                outputs=[lab_curves, lab_status], api_name="cifar10_lab_train",
                                concurrency_limit=1, concurrency_id="cifar10_lab")
    for button, action in ((pause_btn, "pause"), (step_btn, "step"), (resume_btn, "resume")):
        button.click(user_errors(functools.partial(pause_lab, action)), outputs=lab_status,
                     api_name=f"cifar10_lab_{action}", concurrency_limit=None, queue=False)
    stop_btn.click(stop_lab, outputs=lab_status, cancels=[lab_event], api_name="cifar10_lab_stop",
                   concurrency_limit=None, queue=False)
