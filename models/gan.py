"""The GANs of the seeds: the bootcamp MLP GAN with a Maxout discriminator, DCGAN on
MNIST, a conditional DCGAN (ask for a digit) and a DCGAN for 64x64 faces.

Generators take z ~ N(0, I) of shape (N, latent_dim) (the seeds trained on uniform noise
but sampled from a normal one; here both are normal) and return images in [-1, 1]:
(N, 1, 28, 28) for digits, (N, 3, 64, 64) for faces. Discriminators return logits, so
the loss is BCE-with-logits and never takes the log of zero (the seeds' other bug).
`MODELS` names the four; `load_generator` and `generate` are how the tab and the
evaluation sample from a trained one.
"""
import math
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from core import checkpoints


class Maxout(nn.Module):
    """A linear layer with k pieces per unit; each unit outputs the max of its pieces."""

    def __init__(self, in_features: int, out_features: int, k: int = 5):
        super().__init__()
        self.k = k
        self.linear = nn.Linear(in_features, out_features * k)

    def forward(self, x):
        y = self.linear(x)  # (N, out * k)
        return y.view(y.shape[0], -1, self.k).max(dim=2).values  # (N, out)


class MLPGenerator(nn.Module, PyTorchModelHubMixin):
    """The bootcamp generator: 100-128-256-784. Tanh instead of the seed's sigmoid so that
    every generator here speaks [-1, 1]."""

    def __init__(self, latent_dim: int = 100, hidden=(128, 256)):
        super().__init__()
        self.latent_dim = latent_dim
        h1, h2 = hidden
        self.net = nn.Sequential(nn.Linear(latent_dim, h1), nn.ReLU(inplace=True),
                                 nn.Linear(h1, h2), nn.ReLU(inplace=True),
                                 nn.Linear(h2, 28 * 28), nn.Tanh())

    def forward(self, z, labels=None):
        return self.net(z).view(-1, 1, 28, 28)


class MaxoutDiscriminator(nn.Module, PyTorchModelHubMixin):
    """The bootcamp discriminator: two Maxout layers (k=5) 784-256-128, then one linear unit."""

    def __init__(self, hidden=(256, 128), k: int = 5, dropout: float = 0.3):
        super().__init__()
        h1, h2 = hidden
        self.net = nn.Sequential(nn.Flatten(), Maxout(28 * 28, h1, k), nn.Dropout(dropout),
                                 Maxout(h1, h2, k), nn.Dropout(dropout), nn.Linear(h2, 1))

    def forward(self, x, labels=None):
        return self.net(x).squeeze(1)


class DCGenerator28(nn.Module, PyTorchModelHubMixin):
    """DCGAN generator for 28x28 digits: z -> 7x7 -> 14x14 -> 28x28 with transposed convs
    and batch norm. With num_classes > 0 it is conditional: a learned label embedding is
    concatenated to z.

    With clusters > 0 it is self-conditioned (Liu et al., "Diverse Image Generation via
    Self-Conditioned GANs", 2020): the training images were grouped by k-means on their
    pixels (no labels), and the generator draws one of those clusters itself from z, so it
    stays an unconditional z -> image map. z[:, 0] picks the cluster through the normal CDF
    (uniform on (0, 1)) and the clusters' cumulative shares, so clusters come out as often as
    they occur in the data. A continuous z cannot fall between two of them: the reason an
    unconditional GAN draws hybrids of two digits."""

    def __init__(self, latent_dim: int = 100, width: int = 64, num_classes: int = 0, clusters: int = 0):
        super().__init__()
        self.latent_dim, self.num_classes, self.clusters = latent_dim, num_classes, clusters
        labels = num_classes or clusters
        self.embed = nn.Embedding(labels, 50) if labels else None
        if clusters:  # cumulative share of each cluster, set by the train script
            self.register_buffer("cluster_cdf", torch.arange(1, clusters + 1) / clusters)
        in_dim = latent_dim + (50 if labels else 0)
        self.project = nn.Sequential(nn.Linear(in_dim, 4 * width * 7 * 7, bias=False),
                                     nn.BatchNorm1d(4 * width * 7 * 7), nn.ReLU(inplace=True))
        self.net = nn.Sequential(
            nn.ConvTranspose2d(4 * width, 2 * width, 4, 2, 1, bias=False),  # (N, 2w, 14, 14)
            nn.BatchNorm2d(2 * width), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1, bias=False),  # (N, w, 28, 28)
            nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, 1, 3, 1, 1), nn.Tanh())
        self.width = width

    def cluster_of(self, z):
        """The cluster a self-conditioned generator draws for each z: (N,) long."""
        u = 0.5 * (1 + torch.erf(z[:, 0] / math.sqrt(2)))  # uniform on (0, 1)
        return torch.searchsorted(self.cluster_cdf, u.contiguous()).clamp(max=self.clusters - 1)

    def forward(self, z, labels=None):
        if self.clusters:
            labels = self.cluster_of(z)
        return self.decode(z, self.embed(labels) if self.embed is not None else None)

    def decode(self, z, label_embedding=None):
        """Images from z and, for a conditional model, a label embedding (N, 50): a latent
        walk blends two clusters' embeddings instead of jumping from one to the next."""
        if label_embedding is not None:
            z = torch.cat([z, label_embedding], dim=1)
        x = self.project(z).view(-1, 4 * self.width, 7, 7)
        return self.net(x)


class DCDiscriminator28(nn.Module, PyTorchModelHubMixin):
    """DCGAN discriminator for 28x28: strided convs with LeakyReLU and batch norm. With
    num_classes > 0 it is conditional (Mirza and Osindero's cGAN): the label enters as
    one-hot planes beside the image, so a well-drawn digit with the wrong label is fake."""

    def __init__(self, width: int = 64, num_classes: int = 0):
        super().__init__()
        self.num_classes = num_classes
        self.net = nn.Sequential(
            nn.Conv2d(1 + num_classes, width, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),  # (N, w, 14, 14)
            nn.Conv2d(width, 2 * width, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * width),
            nn.LeakyReLU(0.2, inplace=True),  # (N, 2w, 7, 7)
            nn.Conv2d(2 * width, 4 * width, 3, 2, 1, bias=False), nn.BatchNorm2d(4 * width),
            nn.LeakyReLU(0.2, inplace=True),  # (N, 4w, 4, 4)
            nn.Flatten(), nn.Linear(4 * width * 16, 1))

    def forward(self, x, labels=None):
        if self.num_classes:
            planes = F.one_hot(labels, self.num_classes).float()[:, :, None, None].expand(-1, -1, *x.shape[2:])
            x = torch.cat([x, planes], dim=1)  # (N, 1 + classes, 28, 28)
        return self.net(x).squeeze(1)


class DCGenerator64(nn.Module, PyTorchModelHubMixin):
    """The DCGAN generator of Radford et al. for 64x64 colour images: z -> 4x4 -> ... -> 64x64."""

    def __init__(self, latent_dim: int = 100, width: int = 64):
        super().__init__()
        self.latent_dim, self.num_classes = latent_dim, 0
        w = width
        self.net = nn.Sequential(
            nn.ConvTranspose2d(latent_dim, 8 * w, 4, 1, 0, bias=False), nn.BatchNorm2d(8 * w), nn.ReLU(True),  # 4x4
            nn.ConvTranspose2d(8 * w, 4 * w, 4, 2, 1, bias=False), nn.BatchNorm2d(4 * w), nn.ReLU(True),  # 8x8
            nn.ConvTranspose2d(4 * w, 2 * w, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * w), nn.ReLU(True),  # 16x16
            nn.ConvTranspose2d(2 * w, w, 4, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(True),  # 32x32
            nn.ConvTranspose2d(w, 3, 4, 2, 1), nn.Tanh())  # (N, 3, 64, 64)

    def forward(self, z, labels=None):
        return self.net(z.view(z.shape[0], -1, 1, 1))


class DCDiscriminator64(nn.Module, PyTorchModelHubMixin):
    """The DCGAN discriminator for 64x64 colour images."""

    def __init__(self, width: int = 64):
        super().__init__()
        w = width
        self.net = nn.Sequential(
            nn.Conv2d(3, w, 4, 2, 1), nn.LeakyReLU(0.2, True),  # 32x32
            nn.Conv2d(w, 2 * w, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * w), nn.LeakyReLU(0.2, True),  # 16x16
            nn.Conv2d(2 * w, 4 * w, 4, 2, 1, bias=False), nn.BatchNorm2d(4 * w), nn.LeakyReLU(0.2, True),  # 8x8
            nn.Conv2d(4 * w, 8 * w, 4, 2, 1, bias=False), nn.BatchNorm2d(8 * w), nn.LeakyReLU(0.2, True),  # 4x4
            nn.Conv2d(8 * w, 1, 4, 1, 0))  # (N, 1, 1, 1)

    def forward(self, x, labels=None):
        return self.net(x).flatten()


def init_dcgan_weights(module):
    """DCGAN's initialisation: conv weights N(0, 0.02), batch-norm scales N(1, 0.02)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class GAN(NamedTuple):
    generator: type
    discriminator: type
    generator_kwargs: dict  # the constructors' arguments
    discriminator_kwargs: dict
    kind: str  # "digits" or "faces"


MODELS = {
    "bootcamp": GAN(MLPGenerator, MaxoutDiscriminator, {}, {}, "digits"),
    # Self-conditioned on 50 k-means clusters of the training pixels (see DCGenerator28);
    # `python -m train.gan --model dcgan --clusters 0` trains the seeds' plain DCGAN.
    "dcgan": GAN(DCGenerator28, DCDiscriminator28, {"width": 32, "clusters": 50}, {"width": 32, "num_classes": 50},
                 "digits"),
    "cdcgan": GAN(DCGenerator28, DCDiscriminator28, {"width": 32, "num_classes": 10}, {"width": 32, "num_classes": 10},
                  "digits"),
    "faces": GAN(DCGenerator64, DCDiscriminator64, {"width": 32}, {"width": 32}, "faces"),
}


def checkpoint_name(model: str) -> str:
    return f"gan/{model}"


def train_command(model: str) -> str:
    return f"python -m train.gan --model {model}"


def is_conditional(model: str) -> bool:
    """Whether the generator takes the digit to draw (the cGAN)."""
    return MODELS[model].generator_kwargs.get("num_classes", 0) > 0


def load_generator(model: str, device="cpu", root=None):
    """The committed generator (its weights are the training's moving average), in eval mode."""
    return checkpoints.load(MODELS[model].generator, checkpoint_name(model), train_command(model), device, root=root)


# ---- sampling ------------------------------------------------------------------------------

def noise(n: int, latent_dim: int, seed: int) -> torch.Tensor:
    return torch.randn(n, latent_dim, generator=torch.Generator().manual_seed(seed))


def to_uint8(fake: torch.Tensor) -> np.ndarray:
    """Generator output in [-1, 1], (N, C, H, W) -> uint8 (N, H, W) or (N, H, W, 3)."""
    images = ((fake.clamp(-1, 1) + 1) * 127.5).round().byte().cpu()
    return images[:, 0].numpy() if images.shape[1] == 1 else images.permute(0, 2, 3, 1).numpy()


@torch.no_grad()
def generate(generator, z, labels=None, device="cpu", batch_size=1000) -> np.ndarray:
    """uint8 images (see to_uint8) of the latents z (N, latent_dim), and for a conditional
    generator the labels (N,), in batches."""
    generator.eval()
    out = []
    for i in range(0, len(z), batch_size):
        y = labels[i:i + batch_size].to(device) if labels is not None else None
        out.append(to_uint8(generator(z[i:i + batch_size].to(device), y)))
    return np.concatenate(out)
