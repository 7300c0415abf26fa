"""GANs: sample a grid, walk between two latents, push samples along latent directions,
and watch a generator learn (the same noise decoded after every training epoch); and the
semi-supervised GAN, a digit classifier that learned from 100 labels."""
import functools

import gradio as gr
import numpy as np
import torch
from PIL import Image
from safetensors.numpy import load_file

from core import checkpoints
from core.errors import BadInput
from core.results import Entry, Figure
from core.plots import plt
from core.ui import drawing_canvas, output_file, user_errors
from models import gan, sgan
from models.gan import MODELS, checkpoint_name, generate, noise, to_uint8, train_command
from models.mnist import preprocess_drawing

TITLE = "GANs"
LABELS = {"bootcamp": "Bootcamp MLP GAN (Maxout D)", "dcgan": "DCGAN (digits, self-conditioned on pixel clusters)",
          "cdcgan": "Conditional DCGAN (ask for a digit)", "faces": "DCGAN (64x64 faces, LFW)"}
MAX_SAMPLES = 256
MAX_SEED = 2 ** 31 - 1
GRID_SCALE, GRID_PAD = 3, 2
DIRECTIONS = {"digits": ["stroke thickness", "slant", "width"],
              "faces": ["brightness", "light from the left", "contrast"]}


def models() -> list[str]:
    return list(MODELS)


def _check_model(model) -> str:
    if model not in MODELS:
        raise BadInput(f"Unknown model {model!r}; choose one of {models()}.")
    return model


@functools.cache
def load_generator(model: str):
    return gan.load_generator(_check_model(model))


def is_conditional(model: str) -> bool:
    return gan.is_conditional(_check_model(model))


def _check_seed(seed) -> int:
    if seed is None or float(seed) != int(seed) or not 0 <= int(seed) <= MAX_SEED:
        raise BadInput(f"The seed must be a whole number from 0 to {MAX_SEED}, not {seed!r}.")
    return int(seed)


def _labels(model: str, n: int, digit) -> torch.Tensor | None:
    if not is_conditional(model):
        if digit is not None:
            raise BadInput(f"{LABELS[model]} is not conditional: only 'cdcgan' takes a digit.")
        return None
    if digit is None:
        return torch.arange(n) % 10
    if float(digit) != int(digit) or not 0 <= int(digit) <= 9:
        raise BadInput(f"The digit must be 0..9, not {digit!r}.")
    return torch.full((n,), int(digit))


def latents(model: str, seed: int, n: int) -> torch.Tensor:
    """The first n latent vectors of a seed. A seed always draws the same MAX_SAMPLES
    vectors (torch.randn's values depend on how many are drawn), so sample i of seed s
    is the same z whatever n."""
    return noise(MAX_SAMPLES, load_generator(model).latent_dim, _check_seed(seed))[:n]


def sample(model: str, seed: int, n: int = 64, digit: int | None = None) -> np.ndarray:
    """n images from a seed: (n, 28, 28) uint8 digits or (n, 64, 64, 3) uint8 faces.
    The same seed always gives the same images."""
    if n is None or float(n) != int(n) or not 1 <= int(n) <= MAX_SAMPLES:
        raise BadInput(f"n must be 1..{MAX_SAMPLES}, not {n!r}.")
    n = int(n)
    generator = load_generator(model)
    return generate(generator, latents(model, seed, n), _labels(model, n, digit))


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation: stays where Gaussian latents live (a straight line between
    two samples passes through too-short vectors the generator rarely saw)."""
    omega = torch.arccos(torch.clamp(torch.dot(a / a.norm(), b / b.norm()), -1.0, 1.0))
    if omega.abs() < 1e-6:
        return (1 - t) * a + t * b
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)


def walk(model: str, start: tuple[int, int], end: tuple[int, int], steps: int = 10,
         digit: int | None = None) -> np.ndarray:
    """Images along the spherical path from sample start=(seed, index) to end=(seed, index)."""
    if not 2 <= int(steps) <= 64:
        raise BadInput(f"steps must be 2..64, not {steps!r}.")
    (seed_a, i), (seed_b, j) = start, end
    if not (0 <= int(i) < 64 and 0 <= int(j) < 64):
        raise BadInput("Sample indices must be 0..63 (a place in the 8x8 grid).")
    za, zb = latents(model, seed_a, 64)[int(i)], latents(model, seed_b, 64)[int(j)]
    ts = np.linspace(0, 1, int(steps))
    z = torch.stack([slerp(za, zb, t) for t in ts])
    generator = load_generator(model)
    if getattr(generator, "clusters", 0):
        # A self-conditioned generator picks its cluster from z, so a path through z would hop
        # from cluster to cluster; blend the two end clusters' embeddings along the path instead.
        with torch.no_grad():
            ea, eb = generator.embed(generator.cluster_of(torch.stack([za, zb])))
            blend = torch.stack([(1 - float(t)) * ea + float(t) * eb for t in ts])
            return to_uint8(generator.eval().decode(z, blend))
    return generate(generator, z, _labels(model, len(z), digit))


# ---- latent directions ------------------------------------------------------------------

def _properties(images: np.ndarray) -> dict[str, np.ndarray]:
    """Simple measurable properties of generated images, per image."""
    x = images.astype(np.float32) / 255.0
    if x.ndim == 4:  # faces
        gray = x.mean(axis=3)
        half = gray.shape[2] // 2
        return {"brightness": gray.mean(axis=(1, 2)),
                "light from the left": gray[:, :, :half].mean(axis=(1, 2)) - gray[:, :, half:].mean(axis=(1, 2)),
                "contrast": gray.std(axis=(1, 2))}
    ys, xs = np.indices(x.shape[1:])
    mass = x.sum(axis=(1, 2)) + 1e-6
    cx = (x * xs).sum(axis=(1, 2)) / mass
    cy = (x * ys).sum(axis=(1, 2)) / mass
    dx, dy = xs[None] - cx[:, None, None], ys[None] - cy[:, None, None]
    slant = (x * dx * dy).sum(axis=(1, 2)) / (x * dy * dy).sum(axis=(1, 2)).clip(1e-6)
    width = np.sqrt((x * dx * dx).sum(axis=(1, 2)) / mass)
    return {"stroke thickness": mass, "slant": -slant, "width": width}


@functools.cache
def directions(model: str) -> dict[str, torch.Tensor]:
    """Unit latent directions along which a property of the images grows, found by linear
    regression of the property on z over 2,000 samples."""
    z = latents(model, 4242, 2000)
    labels = _labels(model, 2000, None)
    props = _properties(generate(load_generator(model), z, labels))
    zn = z.numpy().astype(np.float64)
    out = {}
    for name, values in props.items():
        coef, *_ = np.linalg.lstsq(zn - zn.mean(0), (values - values.mean()) / (values.std() + 1e-9), rcond=None)
        if getattr(load_generator(model), "clusters", 0):
            coef[0] = 0.0  # z[0] picks a self-conditioned generator's cluster: keep it
        out[name] = torch.from_numpy(coef / np.linalg.norm(coef)).float()
    return out


def edit(model: str, seed: int, index: int, amounts: dict[str, float], digit: int | None = None) -> np.ndarray:
    """Sample (seed, index) moved along the named latent directions by the given amounts
    (in units of the latent's standard deviation, -3..3)."""
    found = directions(model)
    z = latents(model, seed, 64)[int(index)].clone()
    for name, amount in amounts.items():
        if name not in found:
            raise BadInput(f"Unknown direction {name!r}; choose from {list(found)}.")
        if not -5 <= float(amount) <= 5:
            raise BadInput(f"Move at most 5 along a direction, not {amount}.")
        z += float(amount) * found[name]
    return generate(load_generator(model), z[None], _labels(model, 1, digit))[0]


# ---- training timelapse -------------------------------------------------------------------

@functools.cache
def timelapse(model: str) -> tuple[np.ndarray, list[int]]:
    """The fixed 64 latents decoded after every training epoch: (frames, epochs)."""
    path = checkpoints.find(checkpoint_name(_check_model(model)))
    if path is None:
        raise checkpoints.MissingCheckpoint(checkpoint_name(model), train_command(model))
    saved = load_file(str(path / "timelapse.safetensors"))
    return saved["frames"], saved["epochs"].tolist()


# ---- pictures -----------------------------------------------------------------------------

def grid(images: np.ndarray, columns: int = 8, scale: int = GRID_SCALE, pad: int = GRID_PAD) -> Image.Image:
    """(n, H, W) or (n, H, W, 3) uint8 -> one picture, `columns` images a row."""
    n, h, w = images.shape[:3]
    rows = -(-n // columns)
    channels = images.shape[3:] or ()
    canvas = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, *channels), 255, np.uint8)
    for k, img in enumerate(images):
        r, c = divmod(k, columns)
        canvas[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = img
    picture = Image.fromarray(canvas)
    return picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)


def animation(images: np.ndarray, scale: int = 4, ms_per_frame: int = 120, bounce: bool = True) -> str:
    """A looping GIF of the images, as a temporary file path for gr.Image."""
    frames = [Image.fromarray(img).resize((img.shape[1] * scale, img.shape[0] * scale), Image.Resampling.NEAREST)
              for img in images]
    if bounce:
        frames += frames[-2:0:-1]
    path = output_file(".gif", prefix="walk_")
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=ms_per_frame, loop=0)
    return path


# ---- the semi-supervised GAN: a classifier from 100 labels ---------------------------------

@functools.cache
def load_sgan():
    return sgan.load()


@functools.cache
def load_sgan_baseline():
    return sgan.load_baseline()


def sgan_classify(image) -> tuple[dict[str, float], dict[str, float]]:
    """A drawing (a Sketchpad value or a uint8 image, as the MNIST tab takes) classified by the
    semi-supervised GAN and by the same classifier trained on its 100 labels alone:
    ({"0".."9": probability}, {...}). Raises BadInput for an empty canvas."""
    digit = torch.from_numpy(preprocess_drawing(image)).mul(255).round().byte()[None]  # as MNIST stores digits
    return tuple({str(d): float(p) for d, p in enumerate(sgan.predict(model, digit)[0])}
                 for model in (load_sgan(), load_sgan_baseline()))


def sgan_samples(seed) -> Image.Image:
    """64 digits from the semi-supervised GAN's generator (it is trained to help the
    classifier, not to draw well: feature matching)."""
    return grid(sgan.sample(load_sgan(), 64, _check_seed(seed)).numpy())


def sgan_curve():
    """Test accuracy against the number of labelled digits, with and without the GAN."""
    m = checkpoints.load_metrics(sgan.checkpoint_name())
    if "sweep" not in m:
        raise checkpoints.MissingCheckpoint(f"{sgan.checkpoint_name()} (its curve)", sgan.train_command() + " --sweep")
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for method, label in (("sgan", "semi-supervised GAN (+ 59,000 unlabelled)"), ("supervised", "labels alone")):
        rows = sorted((r["labels"], r["test_accuracy"]) for r in m["sweep"]
                      if r["method"] == method and r["labels"] in sgan.LABEL_COUNTS)
        ax.plot([r[0] for r in rows], [100 * r[1] for r in rows], "o-", label=label, linewidth=2.5)
    every = [r for r in m["sweep"] if r["labels"] not in sgan.LABEL_COUNTS]
    if every:
        ax.axhline(100 * every[0]["test_accuracy"], color="0.5", linestyle="--",
                   label=f"all {every[0]['labels']:,} labels")
    ax.set_xscale("log")
    ax.set_xticks(sgan.LABEL_COUNTS, [str(n) for n in sgan.LABEL_COUNTS])
    ax.set_xlabel("labelled digits (as many of each)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=10)
    fig.tight_layout()
    return fig


def sgan_card() -> str:
    m = checkpoints.load_metrics(sgan.checkpoint_name())
    if not m:
        return f"No checkpoint yet: run `{sgan.train_command()} --sweep`."
    return (f"Trained on **{m['labels']} labelled digits** (10 of each) and {m['unlabelled']:,} unlabelled ones: "
            f"**{m['test_accuracy']:.1%}** on the 10,000 test digits. The same classifier on the {m['labels']} labels "
            f"alone: {m['supervised_only']['test_accuracy']:.1%}. The discriminator is the classifier: it learns "
            f"ten classes of real digits plus \"made up by the generator\", so every unlabelled digit and every "
            f"fake teaches it what digits look like (Salimans et al. 2016). Epoch kept on "
            f"{m['val_images']:,} held-out training digits ({m['epoch_kept']} of {m['hyperparameters']['epochs']}); "
            f"{m['train_wall_time_s'] / 60:.0f} min of training here.")


def show_sgan(image):
    """The tab's action for a drawing: both classifiers' answers, or the reason there are none."""
    try:
        semi, alone = sgan_classify(image)
    except BadInput as e:
        return None, None, str(e)
    return semi, alone, ""


# ---- the tab ----------------------------------------------------------------------------

def model_card(model: str) -> str:
    m = checkpoints.load_metrics(checkpoint_name(model))
    if not m:
        return f"No checkpoint yet: run `{train_command(model)}`."
    text = (f"**{LABELS[model]}**: generator {m['generator_parameters']:,} parameters, trained "
            f"{m['hyperparameters']['epochs']} epochs on {m['train_images']:,} images in "
            f"{m['train_wall_time_s'] / 60:.0f} min ({m['device']}). ")
    if "confident_share" in m:
        shares = m["digit_shares"]
        text += (f"On {m['samples']:,} samples, judged by the project's LeNet-style MNIST classifier: "
                 f"**{m['confident_share']:.1%}** labelled with confidence >= 0.9 (real test digits: "
                 f"{m['real_mnist_reference']['confident_share']:.1%}); digits appear "
                 f"{min(shares):.1%}-{max(shares):.1%} of the time each; Frechet distance on its features "
                 f"**{m['frechet_distance_lenet']:.1f}** (half the test set against the other half: "
                 f"{m['real_mnist_reference']['frechet_distance_lenet_test_half_vs_half']:.1f}; not Inception FID).")
        if "requested_digit_accuracy" in m:
            text += f" The requested digit comes out **{m['requested_digit_accuracy']:.1%}** of the time."
    if "frechet_distance_cifar10_vgg" in m:
        text += (f"Frechet distance between {m['samples']:,} samples and the LFW faces, in the features of the "
                 f"project's CIFAR-10 VGG (not Inception FID): **{m['frechet_distance_cifar10_vgg']:.1f}** (half of "
                 f"LFW against the other half: {m['real_lfw_reference']['frechet_distance_cifar10_vgg_half_vs_half']:.1f}). ")
    return text


def show_samples(model, seed, digit):
    digit = None if not is_conditional(model) or digit in (None, "any") else int(digit)
    images = sample(model, seed, 64, digit)
    return grid(images), model_card(model)


def show_walk(model, seed_a, index_a, seed_b, index_b, steps, digit):
    digit = None if not is_conditional(model) or digit in (None, "any") else int(digit)
    images = walk(model, (seed_a, index_a), (seed_b, index_b), steps, digit)
    return grid(images, columns=len(images), scale=2), animation(images)


def show_edit(model, seed, index, digit, *amounts):
    digit = None if not is_conditional(model) or digit in (None, "any") else int(digit)
    image = edit(model, seed, index, dict(zip(DIRECTIONS[MODELS[model].kind], amounts)), digit)
    return Image.fromarray(image).resize((224, 224), Image.Resampling.NEAREST)


def show_timelapse(model, epoch_index):
    frames, epochs = timelapse(model)
    k = int(np.clip(epoch_index, 0, len(frames) - 1))
    return grid(frames[k]), f"After epoch {epochs[k]} of {epochs[-1]}"


def timelapse_animation(model):
    frames, _ = timelapse(model)
    return animation(np.stack([np.asarray(grid(f, scale=1)) for f in frames]), scale=2, ms_per_frame=400, bounce=False)


# ---- what the Overview shows -----------------------------------------------------------------

OVERVIEW = Entry("GANs", 3, train_command("cdcgan"),
                 [Figure("conditional DCGAN draws the asked-for digit", checkpoint_name("cdcgan"),
                         "requested_digit_accuracy", "{:.1%}"),
                  Figure("DCGAN samples a classifier is sure of", checkpoint_name("dcgan"), "confident_share",
                         "{:.1%}"),
                  Figure("MLP GAN", checkpoint_name("bootcamp"), "confident_share", "{:.1%}"),
                  Figure("semi-supervised GAN: test digits right from 100 labels", sgan.checkpoint_name(),
                         "test_accuracy", "{:.1%}")],
                 ["no sample quality measured (targets: asked-for digit 95%, DCGAN 90% sure; semi-supervised GAN "
                  ">= 95% from 100 labels)"],
                 "10,000 samples judged by the project's LeNet")


def thumbnail():
    """The Overview's picture of this experiment."""
    frames, _ = timelapse("cdcgan")  # the conditional generator's samples after its last epoch
    return grid(frames[-1][:40], columns=8, scale=2, pad=1).convert("RGB")


def build():
    gr.Markdown("Sample from four GANs trained here, walk between two samples, push one along a "
                "latent direction, and watch a generator learn.")
    with gr.Row():
        model = gr.Dropdown([(LABELS[m], m) for m in MODELS], value="dcgan", label="Model")
        seed = gr.Number(0, label="Seed", precision=0, minimum=0, maximum=MAX_SEED)
        digit = gr.Dropdown(["any", *map(str, range(10))], value="any", label="Digit (conditional model only)")
        go = gr.Button("Sample 8x8", variant="primary")
    try:
        first_grid, first_card = show_samples("dcgan", 0, "any")
    except checkpoints.MissingCheckpoint as e:
        first_grid, first_card = None, f"**{e}**"
    with gr.Row():
        samples = gr.Image(first_grid, label="64 samples (click one to make it the end of the walk)",
                           type="pil", height=480, interactive=False)
        card = gr.Markdown(first_card)
    with gr.Accordion("Latent walk: spherical interpolation between two samples", open=True):
        with gr.Row():
            seed_a = gr.Number(0, label="Start: seed", precision=0)
            index_a = gr.Slider(0, 63, 0, step=1, label="Start: sample (0-63)")
            seed_b = gr.Number(1, label="End: seed", precision=0)
            index_b = gr.Slider(0, 63, 0, step=1, label="End: sample (0-63)")
            steps = gr.Slider(2, 24, 10, step=1, label="Steps")
        walk_btn = gr.Button("Walk")
        with gr.Row():
            strip = gr.Image(label="The walk", type="pil")
            gif = gr.Image(label="As an animation", type="filepath", height=160)
    with gr.Accordion("Latent directions: move one sample along what the generator learned", open=False):
        gr.Markdown("Directions found by regressing a measured property of 2,000 samples on their latents.")
        with gr.Row():
            edit_seed = gr.Number(0, label="Seed", precision=0)
            edit_index = gr.Slider(0, 63, 0, step=1, label="Sample (0-63)")
        sliders = [gr.Slider(-3, 3, 0, step=0.25, label=name) for name in DIRECTIONS["digits"]]
        edited = gr.Image(label="Edited sample", type="pil", height=240)
    with gr.Accordion("Training timelapse: the same 64 latents after each epoch", open=False):
        try:
            last = len(timelapse("dcgan")[1]) - 1
            first_frame, first_note = show_timelapse("dcgan", last)
        except checkpoints.MissingCheckpoint:
            last, first_frame, first_note = 0, None, ""
        epoch = gr.Slider(0, max(last, 1), last, step=1, label="Epoch (index)")
        frame = gr.Image(first_frame, label="Samples", type="pil", height=400)
        frame_note = gr.Markdown(first_note)
        anim_btn = gr.Button("Play as animation")
        anim = gr.Image(label="Timelapse", type="filepath", height=400)

    with gr.Accordion("Semi-supervised GAN: a digit classifier from 100 labels", open=True):
        gr.Markdown("Its discriminator is a classifier that learned from 100 labelled digits, 59,000 unlabelled "
                    "ones and its generator's fakes. Draw a digit: it answers beside the same network trained on "
                    "the 100 labels alone.")
        sgan_card_text = sgan_card()
        with gr.Row():
            with gr.Column(scale=2):
                sgan_sketch = drawing_canvas("Your digit", elem_id="gan-sgan-sketchpad")
                sgan_status = gr.Markdown(elem_id="gan-sgan-status")
            with gr.Column(scale=2):
                sgan_semi = gr.Label(num_top_classes=3, label="Semi-supervised GAN (100 labels + unlabelled)",
                                     elem_id="gan-sgan-semi")
                sgan_alone = gr.Label(num_top_classes=3, label="The 100 labels alone", elem_id="gan-sgan-alone")
        with gr.Row():
            try:
                curve = sgan_curve()
            except checkpoints.MissingCheckpoint as e:
                curve, sgan_card_text = None, f"**{e}**"
            gr.Plot(curve, label="Test accuracy against labelled digits")
            with gr.Column():
                gr.Markdown(sgan_card_text)
                with gr.Row():
                    sgan_seed = gr.Number(0, label="Seed", precision=0, minimum=0, maximum=MAX_SEED)
                    sgan_go = gr.Button("Sample its generator")
                sgan_grid = gr.Image(label="Its generator's digits (trained to teach the classifier, not to draw)",
                                     type="pil", height=320, interactive=False)

    sample_inputs = [model, seed, digit]
    gr.on([go.click, model.change, digit.change, seed.submit], user_errors(show_samples), inputs=sample_inputs,
          outputs=[samples, card], api_name="gan_sample")
    walk_inputs = [model, seed_a, index_a, seed_b, index_b, steps, digit]
    walk_btn.click(user_errors(show_walk), inputs=walk_inputs, outputs=[strip, gif], api_name="gan_walk")

    def pick(evt: gr.SelectData, model_name, current_seed, b_seed, b_index):
        # A click on the grid makes that sample the walk's end; the old end becomes the start.
        size = 64 if MODELS[model_name].kind == "faces" else 28
        tile = (size + GRID_PAD) * GRID_SCALE
        col, row = evt.index[0] // tile, evt.index[1] // tile
        return b_seed, b_index, current_seed, int(np.clip(row * 8 + col, 0, 63))
    # A click on the picture carries where it landed: no meaning through the API.
    samples.select(pick, inputs=[model, seed, seed_b, index_b], outputs=[seed_a, index_a, seed_b, index_b],
                   api_name="gan_pick", api_visibility="private")

    def relabel(model_name):
        frames = len(timelapse(model_name)[1]) if checkpoints.find(checkpoint_name(_check_model(model_name))) else 1
        return ([gr.Slider(label=name, value=0) for name in DIRECTIONS[MODELS[model_name].kind]]
                + [gr.Slider(maximum=frames - 1, value=frames - 1)])
    # One generator pass is milliseconds: the sample follows a slider while it is dragged.
    gr.on([s.input for s in sliders] + [edit_index.input, edit_seed.submit], user_errors(show_edit),
          inputs=[model, edit_seed, edit_index, digit, *sliders], outputs=edited, api_name="gan_edit",
          trigger_mode="always_last", show_progress="hidden")
    model.change(user_errors(relabel), inputs=model, outputs=[*sliders, epoch], api_name="gan_relabel").then(
        user_errors(show_timelapse), inputs=[model, epoch], outputs=[frame, frame_note], api_name="gan_timelapse_reset")
    epoch.input(user_errors(show_timelapse), inputs=[model, epoch], outputs=[frame, frame_note],
                api_name="gan_timelapse", trigger_mode="always_last", show_progress="hidden")
    anim_btn.click(user_errors(timelapse_animation), inputs=model, outputs=anim, api_name="gan_timelapse_animation")
    gr.on([sgan_sketch.change], user_errors(show_sgan), inputs=sgan_sketch, outputs=[sgan_semi, sgan_alone, sgan_status],
          api_name="gan_sgan_classify", trigger_mode="always_last", show_progress="hidden")
    gr.on([sgan_go.click, sgan_seed.submit], user_errors(sgan_samples), inputs=sgan_seed, outputs=sgan_grid,
          api_name="gan_sgan_sample")
