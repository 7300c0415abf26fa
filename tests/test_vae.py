import numpy as np
import pytest
import torch

from core.errors import BadInput
from demos.examples.draw_digits import draw_digit
from models.vae import ConvVAE, checkpoint_name, kl_divergence, to_input, to_uint8, train_command
from conftest import run_cli


def test_kl_is_zero_at_the_prior_and_matches_monte_carlo():
    assert kl_divergence(torch.zeros(3, 4), torch.zeros(3, 4)).abs().max() < 1e-7
    mean, logvar = torch.tensor([[0.5, -1.0]]), torch.tensor([[-0.5, 0.3]])
    std = torch.exp(0.5 * logvar)
    z = mean + std * torch.randn(200000, 2, generator=torch.Generator().manual_seed(0))
    log_q = torch.distributions.Normal(mean, std).log_prob(z).sum(1)
    log_p = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(1)
    assert kl_divergence(mean, logvar).item() == pytest.approx((log_q - log_p).mean().item(), abs=0.01)


def test_checkpoints_are_named_one_way():
    assert checkpoint_name("mnist_vae16") == "vae/mnist_vae16"
    assert train_command("fashion_ae2d") == "python -m train.vae --model fashion_ae2d"
    assert train_command() == "python -m train.vae --model all"


def test_images_are_padded_in_and_cropped_out():
    digits = torch.randint(0, 256, (2, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    x = to_input(digits)
    assert x.shape == (2, 1, 32, 32) and x[:, :, :2].abs().max() == 0 and x.max() <= 1
    logits = torch.logit(x.clamp(1e-6, 1 - 1e-6))  # the decoder's logits of exactly those pixels
    np.testing.assert_array_equal(to_uint8(logits), digits.numpy())


@pytest.mark.parametrize("variational", [True, False])
def test_shapes(variational):
    model = ConvVAE(latent_dim=3, variational=variational).eval()
    logits, mean, logvar = model(torch.rand(4, 1, 32, 32))
    assert logits.shape == (4, 1, 32, 32) and mean.shape == (4, 3)
    assert (logvar is None) == (not variational)
    assert model.decode(torch.zeros(2, 3)).shape == (2, 1, 32, 32)


@pytest.mark.slow  # about 15 s: two processes, and --eval reads all 10,000 test images
def test_vae_train_then_eval_smoke(tmp_path):
    trained = run_cli("train.vae", "--model", "fashion_ae2d", "--epochs", "1", "--limit", "256",
                      "--checkpoint-dir", str(tmp_path))["fashion_ae2d"]
    assert trained["test_reconstruction_nats"] > 0 and "test_elbo_nats" not in trained
    assert (tmp_path / "vae" / "fashion_ae2d" / "test_set.safetensors").exists()
    evaluated = run_cli("train.vae", "--model", "fashion_ae2d", "--eval", "--checkpoint-dir", str(tmp_path))
    assert evaluated["fashion_ae2d"]["test_reconstruction_nats"] > 0


def test_decode_and_reconstruct():
    from demos import vae
    image = vae.decode("fashion_vae2d", [0.5, -1.0])
    assert image.shape == (28, 28) and image.dtype == np.uint8
    assert np.array_equal(image, vae.decode("fashion_vae2d", [0.5, -1.0]))
    assert vae.decode("mnist_vae16", [0.0] * 16).shape == (28, 28)
    seven = np.asarray(draw_digit(7))
    recon = vae.reconstruct("mnist_vae16", seven)
    assert recon.shape == (28, 28)
    # The reconstruction looks like the input: closer to it than to the reconstruction of a 0.
    seen = vae.prepare("mnist_vae16", seven) * 255
    other = vae.reconstruct("mnist_vae16", np.asarray(draw_digit(0)))
    assert np.abs(recon - seen).mean() < np.abs(other - seen).mean()


@pytest.mark.parametrize("z, message", [([0.0], "2-D latent"), ([0.0, 1e9], "within"), ([0.0, float("nan")], "finite")])
def test_bad_latents_are_clear_messages(z, message):
    from demos import vae
    with pytest.raises(BadInput, match=message):
        vae.decode("fashion_vae2d", z)


def test_empty_drawing_is_a_clear_message():
    from demos import vae
    with pytest.raises(BadInput, match="empty"):
        vae.reconstruct("fashion_vae2d", np.zeros((280, 280, 4), np.uint8))


def test_interpolation_starts_and_ends_at_the_test_images_codes():
    from demos import vae
    strip = vae.interpolate("fashion_vae2d", 0, 1, steps=5)
    assert strip.shape == (5, 28, 28)


@pytest.mark.slow
def test_committed_vaes_re_evaluate_to_their_metrics():
    from core import checkpoints
    result = run_cli("train.vae", "--eval")
    for model, numbers in result.items():
        stored = checkpoints.load_metrics(checkpoint_name(model))
        assert numbers["test_reconstruction_nats"] == pytest.approx(stored["test_reconstruction_nats"], rel=1e-4)
        if stored["variational"]:
            assert numbers["test_elbo_nats"] < 0 and numbers["test_kl_nats"] > 0
