"""The semi-supervised GAN of Salimans et al. 2016 ("Improved techniques for training GANs",
section 5) for MNIST: the discriminator is a classifier with K = 10 classes whose
"real or fake" is read from its own logits, so unlabelled digits and the generator's fakes
teach it features the few labelled digits alone cannot.

With logits l_1..l_K for the real classes and the fake class's logit fixed at 0,
p(real | x) = Z / (Z + 1) where Z = sum_k exp(l_k). The discriminator minimises
    cross-entropy on the labelled digits
    - log D(x) on unlabelled digits:   softplus(lse) - lse    (lse = logsumexp_k l_k)
    - log(1 - D(G(z))) on fakes:       softplus(lse)
and the generator matches the mean of the discriminator's last hidden layer on real and
fake batches (feature matching), which is what makes the classifier good rather than the
samples sharp.

Both networks are the paper's MNIST ones: a generator 100-500-500-784 with softplus and
batch norm, and a discriminator 784-1000-500-250-250-250-10 with weight norm and Gaussian
noise on its input (std 0.3) and on every hidden layer (std 0.5) while it trains.
Pixels are in [0, 1].
"""
from pathlib import Path

import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from torch import nn
from safetensors.torch import load_file, save_file
from torch.nn.utils.parametrizations import weight_norm

from core import checkpoints

LABEL_COUNTS = (20, 50, 100, 1000)  # labelled digits in the curve of accuracy against labels
LATENT_DIM = 100
SWEEP = "sweep"  # the checkpoint's sub-folder with the curve's other classifiers (--sweep)


def checkpoint_name() -> str:
    return "gan/sgan"


def train_command() -> str:
    return "python -m train.gan --model sgan"


class GaussianNoise(nn.Module):
    """Adds N(0, std^2) noise while training; nothing at evaluation."""

    def __init__(self, std: float):
        super().__init__()
        self.std = std

    def forward(self, x):
        return x + self.std * torch.randn_like(x) if self.training and self.std else x


class Classifier(nn.Module):
    """The discriminator: returns (logits over the 10 digits, last hidden features)."""

    def __init__(self, hidden=(1000, 500, 250, 250, 250), input_noise: float = 0.3, hidden_noise: float = 0.5):
        super().__init__()
        layers, width = [GaussianNoise(input_noise)], 28 * 28
        for h in hidden:
            layers += [weight_norm(nn.Linear(width, h)), nn.ReLU(), GaussianNoise(hidden_noise)]
            width = h
        self.features = nn.Sequential(*layers)
        self.out = weight_norm(nn.Linear(width, 10))

    def forward(self, x):  # x: (N, 1, 28, 28) or (N, 784) in [0, 1]
        h = self.features(x.flatten(1))  # (N, 250)
        return self.out(h), h


class Generator(nn.Module):
    def __init__(self, latent_dim: int = LATENT_DIM, hidden=(500, 500)):
        super().__init__()
        layers, width = [], latent_dim
        for h in hidden:
            layers += [nn.Linear(width, h, bias=False), nn.BatchNorm1d(h), nn.Softplus()]
            width = h
        layers += [weight_norm(nn.Linear(width, 28 * 28)), nn.Sigmoid()]
        self.net = nn.Sequential(*layers)
        self.latent_dim = latent_dim

    def forward(self, z):  # (N, latent_dim) -> (N, 1, 28, 28) in [0, 1]
        return self.net(z).view(-1, 1, 28, 28)


class SemiSupervisedGAN(nn.Module, PyTorchModelHubMixin):
    """The generator and the discriminator-classifier, saved together."""

    def __init__(self, latent_dim: int = LATENT_DIM, hidden=(1000, 500, 250, 250, 250)):
        super().__init__()
        self.generator = Generator(latent_dim)
        self.classifier = Classifier(tuple(hidden))

    def forward(self, x):
        """Class logits (N, 10) of digits in [0, 1]."""
        return self.classifier(x)[0]


def discriminator_loss(logits_labelled, labels, logits_unlabelled, logits_fake) -> tuple[torch.Tensor, torch.Tensor]:
    """(supervised, unsupervised) losses of the discriminator, as in the module docstring."""
    supervised = F.cross_entropy(logits_labelled, labels)
    lse_real, lse_fake = logits_unlabelled.logsumexp(1), logits_fake.logsumexp(1)
    unsupervised = (F.softplus(lse_real) - lse_real).mean() + F.softplus(lse_fake).mean()
    return supervised, unsupervised


def feature_matching_loss(features_real: torch.Tensor, features_fake: torch.Tensor) -> torch.Tensor:
    """Squared distance between the batch means of the discriminator's features."""
    return (features_real.mean(0) - features_fake.mean(0)).pow(2).mean()


def to_input(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 digits (N, 28, 28) or (N, 1, 28, 28) -> float (N, 1, 28, 28) in [0, 1]."""
    return images_uint8.float().div(255).view(-1, 1, 28, 28)


@torch.no_grad()
def predict(model: SemiSupervisedGAN, images_uint8: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
    """Class probabilities (N, 10) of uint8 digits."""
    model.eval()
    device = next(model.parameters()).device
    out = [model(to_input(images_uint8[i:i + batch_size]).to(device)).softmax(1).cpu()
           for i in range(0, len(images_uint8), batch_size)]
    return torch.cat(out)


@torch.no_grad()
def sample(model: SemiSupervisedGAN, n: int, seed: int) -> torch.Tensor:
    """uint8 digits (n, 28, 28) from the generator, for latents drawn with this seed."""
    model.eval()
    z = torch.randn(n, model.generator.latent_dim, generator=torch.Generator().manual_seed(seed))
    return model.generator(z).mul(255).round().byte()[:, 0]


def load(device="cpu", root=None) -> SemiSupervisedGAN:
    return checkpoints.load(SemiSupervisedGAN, checkpoint_name(), train_command(), device, root=root)


def save_classifier(model: SemiSupervisedGAN, path: Path) -> None:
    """Only the classifier, in float16 (a point of the curve: 3 MB)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.half().contiguous() for k, v in model.classifier.state_dict().items()}, str(path))


def load_classifier(path: Path) -> SemiSupervisedGAN:
    """A classifier saved by save_classifier (its generator stays untrained)."""
    model = SemiSupervisedGAN()
    model.classifier.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()})
    return model.eval()


def load_baseline(labels: int = 100, root=None) -> SemiSupervisedGAN:
    """The same classifier trained on the labelled digits alone (from the committed sweep)."""
    path = checkpoints.find(checkpoint_name(), root)
    if path is None or not (path / SWEEP / f"supervised_{labels}.safetensors").exists():
        raise checkpoints.MissingCheckpoint(f"{checkpoint_name()}/{SWEEP}", train_command() + " --sweep")
    return load_classifier(path / SWEEP / f"supervised_{labels}.safetensors")
