"""VAEs: walk a 2-D latent space, see the manifold it learned, interpolate between test
images, reconstruct a drawing, and compare with a plain autoencoder's latent space."""
import functools

import gradio as gr
import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file

from core import checkpoints
from core.errors import BadInput
from core.results import Entry, Figure
from core.ui import drawing_canvas, user_errors
from models import vae
from models.mnist import ink_image, preprocess_drawing
from models.vae import MODELS, ConvVAE, checkpoint_name, to_input, to_uint8, train_command

TITLE = "VAEs"
LABELS = {"fashion_vae2d": "VAE, 2-D latent (Fashion-MNIST)",
          "fashion_ae2d": "Autoencoder, 2-D latent (Fashion-MNIST)",
          "mnist_vae16": "VAE, 16-D latent (MNIST)"}
MAX_ABS_Z = 10.0  # for a VAE (its prior is N(0, I)); an autoencoder's codes reach further


def models() -> list[str]:
    return list(MODELS)


def _check_model(model) -> str:
    if model not in MODELS:
        raise BadInput(f"Unknown model {model!r}; choose one of {models()}.")
    return model


@functools.cache
def load_model(model: str) -> ConvVAE:
    return vae.load_model(_check_model(model))


@functools.cache
def test_set(model: str) -> dict[str, torch.Tensor]:
    """Saved test-set embeddings (means), their labels and a few test images."""
    load_model(model)
    return load_file(str(checkpoints.find(checkpoint_name(model)) / "test_set.safetensors"))


def decode(model: str, z: list[float]) -> np.ndarray:
    """One latent point -> the (28, 28) uint8 image the decoder draws there."""
    net = load_model(model)
    if z is None or len(z) != net.latent_dim:
        raise BadInput(f"{LABELS[model]} has a {net.latent_dim}-D latent; got {0 if z is None else len(z)} numbers.")
    try:
        z = torch.tensor([float(v) for v in z]).view(1, -1)
    except (TypeError, ValueError) as e:
        raise BadInput(f"Latent coordinates must be numbers: {e}.") from e
    limit = MAX_ABS_Z if net.variational else max(MAX_ABS_Z, 3 * latent_extent(model))
    if not torch.isfinite(z).all() or z.abs().max() > limit:
        raise BadInput(f"Latent coordinates must be finite and within +-{limit:.3g}.")
    with torch.inference_mode():
        return to_uint8(net.decode(z))[0]


def prepare(model: str, image) -> np.ndarray:
    """A drawing or upload -> (28, 28) float in [0, 1] like the model's training images.
    Digits get MNIST's preprocessing; clothes are cropped and scaled to fill the frame."""
    if MODELS[_check_model(model)]["dataset"] == "MNIST":
        return preprocess_drawing(image)
    ink = ink_image(image)
    if ink.max() < 0.1:
        raise BadInput("The image is empty: draw or upload a piece of clothing.")
    rows, cols = np.nonzero(ink > 0.05)
    ink = ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    h, w = ink.shape
    scale = 28.0 / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = np.asarray(Image.fromarray(ink.astype(np.float32)).resize(size, Image.Resampling.LANCZOS)).clip(0, 1)
    out = np.zeros((28, 28), np.float32)
    top, left = (28 - small.shape[0]) // 2, (28 - small.shape[1]) // 2
    out[top:top + small.shape[0], left:left + small.shape[1]] = small
    return out


def encode(model: str, image) -> np.ndarray:
    """The latent mean of an image (drawing, upload or (28, 28) uint8 array)."""
    x = prepare(model, image)
    with torch.inference_mode():
        return load_model(model).encode(to_input(torch.from_numpy((x * 255).astype(np.uint8))[None]))[0][0].numpy()


def reconstruct(model: str, image) -> np.ndarray:
    """Encode an image to its latent mean and decode it: (28, 28) uint8."""
    return decode(model, encode(model, image).tolist())


def interpolate(model: str, index_a: int, index_b: int, steps: int = 10) -> np.ndarray:
    """Decodings along the straight line between two saved test images' latent means."""
    images = test_set(model)["images"]
    for i in (index_a, index_b):
        if i is None or not 0 <= int(i) < len(images):
            raise BadInput(f"Test image index must be 0..{len(images) - 1}, not {i!r}.")
    if not 2 <= int(steps) <= 32:
        raise BadInput(f"steps must be 2..32, not {steps!r}.")
    with torch.inference_mode():  # test images are already what the model was trained on
        za, zb = load_model(model).encode(to_input(images[[int(index_a), int(index_b)]]))[0].numpy()
    return np.stack([decode(model, ((1 - t) * za + t * zb).tolist()) for t in np.linspace(0, 1, int(steps))])


@functools.cache
def latent_extent(model: str) -> float:
    """How far the 2-D map reaches: +-3 for a VAE (its prior), the embeddings' range for an AE."""
    if MODELS[_check_model(model)]["variational"]:
        return 3.0
    return float(np.percentile(test_set(model)["embeddings"].abs().numpy(), 99))


def manifold(model: str, n: int = 15) -> Image.Image:
    """An n x n grid of decodings over the 2-D latent plane."""
    if load_model(model).latent_dim != 2:
        raise BadInput("The manifold picture needs a 2-D latent model.")
    r = latent_extent(model)
    values = np.linspace(-r, r, n)
    tiles = [[decode(model, [x, y]) for x in values] for y in values[::-1]]
    return Image.fromarray(np.block(tiles)).resize((28 * n * 2, 28 * n * 2), Image.Resampling.NEAREST)


def latent_map(model: str, point=None):
    """Scatter of the test set's latent means coloured by class, with an optional marker."""
    saved = test_set(model)
    emb, labels = saved["embeddings"].numpy(), saved["labels"].numpy()
    classes = checkpoints.load_metrics(checkpoint_name(model))["classes"]
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    scatter = ax.scatter(emb[:, 0], emb[:, 1], c=labels, cmap="tab10", s=3, alpha=0.6)
    if point is not None:
        ax.scatter([point[0]], [point[1]], marker="x", s=120, c="black")
    handles = [plt.Line2D([], [], marker="o", ls="", color=scatter.cmap(scatter.norm(k)), label=c)
               for k, c in enumerate(classes)]
    ax.legend(handles=handles, fontsize=7, loc="upper right", markerscale=0.8)
    ax.set_title(LABELS[model], fontsize=10)
    ax.set_xlabel("z1")
    ax.set_ylabel("z2")
    fig.tight_layout()
    return fig


def big(image: np.ndarray, size: int = 196) -> Image.Image:
    return Image.fromarray(image).resize((size, size), Image.Resampling.NEAREST)


def model_card(model: str) -> str:
    m = checkpoints.load_metrics(checkpoint_name(model))
    if not m:
        return f"No checkpoint yet: run `{train_command(model)}`."
    text = f"**{LABELS[model]}**: "
    if m["variational"]:
        text += (f"test ELBO **{m['test_elbo_nats']:.1f} nats/image** (reconstruction {m['test_reconstruction_nats']:.1f} "
                 f"+ KL {m['test_kl_nats']:.1f}; Bernoulli likelihood on 32x32 pixel intensities)")
    else:
        text += f"test reconstruction cross-entropy **{m['test_reconstruction_nats']:.1f} nats/image** (no KL, no ELBO)"
    return text + (f", {m['parameters']:,} parameters, trained {m['hyperparameters']['epochs']} epochs in "
                   f"{m['train_wall_time_s'] / 60:.1f} min.")


def show_point(model, z1, z2):
    return big(decode(model, [z1, z2])), latent_map(model, (z1, z2))


def show_interpolation(model, index_a, index_b, steps):
    images = interpolate(model, index_a, index_b, steps)
    strip = np.concatenate(list(images), axis=1)
    return Image.fromarray(strip).resize((strip.shape[1] * 3, strip.shape[0] * 3), Image.Resampling.NEAREST)


def show_reconstruction(model, image):
    return big((prepare(model, image) * 255).astype(np.uint8)), big(reconstruct(model, image))


# ---- what the Overview shows -----------------------------------------------------------------

OVERVIEW = Entry("VAEs", 3, train_command("all"),
                 [Figure("ELBO, Fashion-MNIST 2-D", checkpoint_name("fashion_vae2d"), "test_elbo_nats", "{:.1f} nats"),
                  Figure("MNIST 16-D", checkpoint_name("mnist_vae16"), "test_elbo_nats", "{:.1f} nats")],
                 ["no ELBO reported, and its KL term was not the standard one"],
                 "10,000 test images")


def thumbnail():
    """The Overview's picture of this experiment."""
    values = np.linspace(-2.5, 2.5, 10)  # the 2-D VAE's latent plane, decoded in one batch
    z = torch.tensor([[x, y] for y in values[::-1] for x in values], dtype=torch.float32)
    with torch.inference_mode():
        tiles = to_uint8(load_model("fashion_vae2d").decode(z))
    return Image.fromarray(np.vstack([np.hstack(tiles[r * 10:(r + 1) * 10]) for r in range(10)])).resize((280, 280))


def build():
    gr.Markdown("A VAE squeezes each image into a few numbers and learns to draw it back. With a 2-D "
                "latent you can see the whole space: every point decodes to an image, and the prior keeps "
                "it filled. The plain autoencoder beside it leaves gaps that decode to nonsense.")
    try:
        load_model("fashion_vae2d")
        ready = True
    except checkpoints.MissingCheckpoint as e:
        gr.Markdown(f"**{e}**")
        ready = False
    with gr.Row():
        model = gr.Radio([("VAE", "fashion_vae2d"), ("Autoencoder", "fashion_ae2d")], value="fashion_vae2d",
                         label="2-D model (Fashion-MNIST)")
    with gr.Row():
        with gr.Column():
            z1 = gr.Slider(-4, 4, 0, step=0.05, label="z1")
            z2 = gr.Slider(-4, 4, 0, step=0.05, label="z2")
            decoded = gr.Image(show_point("fashion_vae2d", 0, 0)[0] if ready else None, label="Decoded", type="pil",
                               height=220)
        with gr.Column():
            scatter = gr.Plot(latent_map("fashion_vae2d", (0, 0)) if ready else None, label="Test set in latent space")
        with gr.Column():
            grid_image = gr.Image(manifold("fashion_vae2d") if ready else None, label="Decodings across the plane",
                                  type="pil", height=420)
    card = gr.Markdown(model_card("fashion_vae2d"))
    with gr.Accordion("VAE vs autoencoder: the two latent spaces side by side", open=False):
        with gr.Row():
            gr.Plot(latent_map("fashion_vae2d") if ready else None, label="VAE")
            try:
                gr.Plot(latent_map("fashion_ae2d"), label="Autoencoder")
            except checkpoints.MissingCheckpoint as e:
                gr.Markdown(f"**{e}**")
    with gr.Accordion("Interpolate between two test images", open=False):
        interp_model = gr.Radio([(LABELS[m], m) for m in MODELS], value="fashion_vae2d", label="Model")
        with gr.Row():
            index_a = gr.Slider(0, 199, 0, step=1, label="First test image")
            index_b = gr.Slider(0, 199, 1, step=1, label="Second test image")
            steps = gr.Slider(2, 16, 10, step=1, label="Steps")
        interp_btn = gr.Button("Interpolate")
        strip = gr.Image(label="Interpolation", type="pil")
    with gr.Accordion("Reconstruct your own drawing", open=False):
        recon_model = gr.Radio([(LABELS[m], m) for m in MODELS], value="mnist_vae16", label="Model")
        with gr.Row():
            drawing = drawing_canvas("Draw a digit (or a piece of clothing)", elem_id="vae-sketchpad")
            seen = gr.Image(label="What the encoder sees", type="pil", height=220)
            recon = gr.Image(label="Reconstruction", type="pil", height=220)
        recon_btn = gr.Button("Reconstruct")

    # Decoding is a few milliseconds: the picture follows the slider while it is dragged.
    gr.on([z1.input, z2.input], user_errors(show_point), inputs=[model, z1, z2], outputs=[decoded, scatter],
          api_name="vae_decode_point", trigger_mode="always_last", show_progress="hidden")

    def switch(name):
        r = latent_extent(name)
        return (*show_point(name, 0, 0), manifold(name), model_card(name),
                gr.Slider(-round(r * 1.3, 1), round(r * 1.3, 1), 0), gr.Slider(-round(r * 1.3, 1), round(r * 1.3, 1), 0))
    model.change(user_errors(switch), inputs=model, outputs=[decoded, scatter, grid_image, card, z1, z2],
                 api_name="vae_switch")
    interp_btn.click(user_errors(show_interpolation), inputs=[interp_model, index_a, index_b, steps], outputs=strip,
                     api_name="vae_interpolate")
    recon_btn.click(user_errors(show_reconstruction), inputs=[recon_model, drawing], outputs=[seen, recon],
                    api_name="vae_reconstruct")
