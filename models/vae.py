"""Convolutional VAE (and the same network as a plain autoencoder) on 32x32 images, as
in the seed: Fashion-MNIST or MNIST padded from 28x28 to 32x32 (`to_input`; `to_uint8`
crops the decoder's pictures back). `MODELS` names the three trained ones."""
import numpy as np
import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from core import checkpoints

MODELS = {
    "fashion_vae2d": dict(dataset="FashionMNIST", latent_dim=2, variational=True),
    "fashion_ae2d": dict(dataset="FashionMNIST", latent_dim=2, variational=False),
    "mnist_vae16": dict(dataset="MNIST", latent_dim=16, variational=True),
}


class ConvVAE(nn.Module, PyTorchModelHubMixin):
    """Encoder: three stride-2 convs 32x32 -> 4x4, then the latent's mean and log-variance.
    Decoder: the mirror image, returning Bernoulli logits per pixel.
    With variational=False it is a deterministic autoencoder: z is the mean, no KL."""

    def __init__(self, latent_dim: int = 2, width: int = 32, variational: bool = True):
        super().__init__()
        self.latent_dim, self.variational = latent_dim, variational
        w = width
        self.encoder = nn.Sequential(
            nn.Conv2d(1, w, 3, 2, 1), nn.BatchNorm2d(w), nn.LeakyReLU(0.2, True),  # (N, w, 16, 16)
            nn.Conv2d(w, 2 * w, 3, 2, 1), nn.BatchNorm2d(2 * w), nn.LeakyReLU(0.2, True),  # (N, 2w, 8, 8)
            nn.Conv2d(2 * w, 4 * w, 3, 2, 1), nn.BatchNorm2d(4 * w), nn.LeakyReLU(0.2, True),  # (N, 4w, 4, 4)
            nn.Flatten())
        self.to_mean = nn.Linear(4 * w * 16, latent_dim)
        self.to_logvar = nn.Linear(4 * w * 16, latent_dim) if variational else None
        self.from_latent = nn.Linear(latent_dim, 4 * w * 16)
        self.decoder = nn.Sequential(
            nn.BatchNorm2d(4 * w), nn.LeakyReLU(0.2, True),
            nn.ConvTranspose2d(4 * w, 2 * w, 4, 2, 1), nn.BatchNorm2d(2 * w), nn.LeakyReLU(0.2, True),  # 8x8
            nn.ConvTranspose2d(2 * w, w, 4, 2, 1), nn.BatchNorm2d(w), nn.LeakyReLU(0.2, True),  # 16x16
            nn.ConvTranspose2d(w, 1, 4, 2, 1))  # (N, 1, 32, 32) logits
        self.width = width

    def encode(self, x):
        """x in [0, 1], (N, 1, 32, 32) -> (mean, logvar), each (N, latent_dim); logvar is
        None for the autoencoder."""
        h = self.encoder(x)
        return self.to_mean(h), (self.to_logvar(h) if self.variational else None)

    def decode(self, z):
        """z (N, latent_dim) -> Bernoulli logits (N, 1, 32, 32)."""
        return self.decoder(self.from_latent(z).view(-1, 4 * self.width, 4, 4))

    def forward(self, x):
        mean, logvar = self.encode(x)
        if self.variational and self.training:
            z = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar)  # reparameterisation
        else:
            z = mean
        return self.decode(z), mean, logvar


def kl_divergence(mean, logvar):
    """KL(N(mean, exp(logvar)) || N(0, I)) per image, in nats: the standard closed form
    (the seed's was not)."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)


def checkpoint_name(model: str) -> str:
    return f"vae/{model}"


def train_command(model: str = "all") -> str:
    return f"python -m train.vae --model {model}"


def load_model(model: str, device="cpu", root=None) -> ConvVAE:
    return checkpoints.load(ConvVAE, checkpoint_name(model), train_command(model), device, root=root)


def to_input(images_uint8: torch.Tensor) -> torch.Tensor:
    """(N, 28, 28) uint8 -> (N, 1, 32, 32) in [0, 1], zero-padded by 2 like the seed."""
    return F.pad(images_uint8.float().div(255).unsqueeze(1), (2, 2, 2, 2))


def to_uint8(logits: torch.Tensor) -> np.ndarray:
    """Decoder logits (N, 1, 32, 32) -> (N, 28, 28) uint8 pixel means, padding cropped."""
    return (torch.sigmoid(logits)[:, 0, 2:30, 2:30] * 255).round().byte().numpy()
