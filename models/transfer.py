"""Transfer learning: a trained network's convolutional features and a new linear head,
and how to use them: building a model for a strategy, checkpoint names, feature extraction.

Backbones are the project's own networks (nothing here can download ImageNet weights):
the CIFAR-10 VGG and ResNet-20 for colour photos, and the bootcamp MNIST CNN, trained on
digits 0-4 only, for digits 5-9. Each backbone name maps to the checkpoint its weights come
from. On a machine whose torch cache already holds torchvision's ImageNet ResNet-18 (the
seed's backbone), that is offered too; nothing depends on it.
"""
import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from core import checkpoints, data
from core.errors import BadInput
from core.pictures import read_picture
from models import cifar10
from models.cifar10 import VGG, ResNet
from models.mnist import MEAN as MNIST_MEAN, STD as MNIST_STD, BootcampCNN, preprocess_drawing

STRATEGIES = ("frozen", "finetune", "scratch")  # only a new head learns; everything learns; from random weights


class ImageNetResNet18(nn.Module):
    """torchvision's ResNet-18 up to its last stage (the classifier dropped), as `features`."""

    def __init__(self):
        super().__init__()
        from torchvision.models import resnet18

        net = resnet18()
        self.features = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3,
                                      net.layer4)


IMAGENET_URL = "https://download.pytorch.org/models/resnet18-f37072fd.pth"  # torchvision's IMAGENET1K_V1
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_STAGES = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]  # their places in `features`


def imagenet_weights_file() -> Path:
    """Where torchvision keeps the ResNet-18 weights it downloads ($TORCH_HOME/hub/checkpoints)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / IMAGENET_URL.rsplit("/", 1)[-1]


def imagenet_available() -> bool:
    return imagenet_weights_file().exists()


def imagenet_resnet18_state() -> dict:
    """The cached ImageNet weights as a state_dict of ImageNetResNet18 (tensors only: no unpickling)."""
    state = torch.load(imagenet_weights_file(), map_location="cpu", weights_only=True)
    return {f"features.{_STAGES.index(k.split('.', 1)[0])}.{k.split('.', 1)[1]}": v for k, v in state.items()
            if not k.startswith("fc.")}


def imagenet_normalize(x_uint8: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN, device=x_uint8.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x_uint8.device).view(1, 3, 1, 1)
    return (x_uint8.float() / 255 - mean) / std


def normalize(kind: str, x_uint8: torch.Tensor) -> torch.Tensor:
    """Photos (N, 3, H, W) uint8 -> normalised as their backbone was trained (ImageNet or CIFAR-10)."""
    return imagenet_normalize(x_uint8) if kind == "imagenet" else cifar10.normalize(x_uint8)


# ---- backbones, experiments, checkpoints ------------------------------------------------------

def checkpoint_name(experiment: str, backbone: str | None = None) -> str:
    """transfer/digits, transfer/ants, or transfer/ants_imagenet (ants vs bees on ImageNet
    features); "digits04_cnn" is the digit backbone the digits experiment pretrains."""
    imagenet = backbone is not None and BACKBONES[backbone].input == "imagenet"
    return f"transfer/{experiment}" + ("_imagenet" if imagenet else "")


def train_command(experiment: str = "all", backbone: str | None = None) -> str:
    return f"python -m train.transfer --experiment {experiment}" + (f" --ants-backbone {backbone}" if backbone else "")


@dataclass(frozen=True)
class Backbone:
    """A network whose features are reused. Its feature map is pooled as its own classifier
    pools it: "avg" (ResNet), "max" (VGG) or "flatten" (the digit CNN: where a stroke is
    matters). Inputs: "rgb" 64x64 photos normalised as CIFAR-10, "gray" 28x28 MNIST digits,
    "imagenet" 224x224 photos normalised as ImageNet."""
    model: type
    kwargs: dict
    checkpoint: str | None  # None: torch's cache holds the weights (imagenet_resnet18_state)
    command: str | None  # what trains that checkpoint
    feature_size: int
    input: str
    pooling: str


BACKBONES = {
    "cifar10_vgg": Backbone(VGG, {}, cifar10.checkpoint_name("vgg"), cifar10.train_command("vgg"), 256, "rgb", "max"),
    "cifar10_resnet20": Backbone(ResNet, {"depth": 20}, cifar10.checkpoint_name("resnet20"),
                                 cifar10.train_command("resnet20"), 64, "rgb", "avg"),
    "digits04_cnn": Backbone(BootcampCNN, {}, checkpoint_name("digits04_cnn"), train_command("digits"), 256 * 4 * 4,
                             "gray", "flatten"),
    "imagenet_resnet18": Backbone(ImageNetResNet18, {}, None, None, 512, "imagenet", "avg"),
}
INPUT_SIZE = {"rgb": 64, "gray": 28, "imagenet": 224}


@dataclass(frozen=True)
class Experiment:
    title: str
    backbone: str  # whose features the committed run reuses


EXPERIMENTS = {"ants": Experiment("Ants vs bees (CIFAR-10 ResNet-20 backbone)", "cifar10_resnet20"),
               "digits": Experiment("Digits 5-9 (backbone trained on digits 0-4)", "digits04_cnn")}


class TransferNet(nn.Module, PyTorchModelHubMixin):
    """backbone.features -> pooled or flattened -> Linear(feature size, num_classes)."""

    def __init__(self, backbone: str = "cifar10_resnet20", num_classes: int = 2):
        super().__init__()
        spec = BACKBONES[backbone]
        self.backbone_name = backbone
        self.features = spec.model(**spec.kwargs).features
        self.head = nn.Linear(spec.feature_size, num_classes)

    def embed(self, x):
        h = self.features(x)  # (N, C, H, W)
        pool = BACKBONES[self.backbone_name].pooling
        return h.flatten(1) if pool == "flatten" else h.amax(dim=(2, 3)) if pool == "max" else h.mean(dim=(2, 3))

    def forward(self, x):
        return self.head(self.embed(x))

    def load_backbone(self, state_dict: dict) -> None:
        """Copy the features of a trained backbone (its full state_dict)."""
        self.features.load_state_dict({k[len("features."):]: v for k, v in state_dict.items() if k.startswith("features.")})

    def freeze_backbone(self) -> None:
        """Only the head learns: no gradients into the features, and their batch-norm
        statistics stay those of the pretraining data (see train())."""
        self.features.requires_grad_(False)
        self.frozen = True

    def train(self, mode: bool = True):
        super().train(mode)
        if getattr(self, "frozen", False):
            self.features.eval()
        return self


def count_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@torch.no_grad()
def same_parameters(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


# ---- a model for a strategy ---------------------------------------------------------------------

class MissingImageNet(RuntimeError):
    def __init__(self):
        super().__init__(f"torchvision's ImageNet ResNet-18 is not in torch's cache ({imagenet_weights_file()}). "
                         "On a machine with internet, fetch it once: python -c \"import torchvision; "
                         "torchvision.models.resnet18(weights='IMAGENET1K_V1')\"")


def build(backbone: str, strategy: str, num_classes: int, root=None, device="cpu") -> TransferNet:
    """A TransferNet for a strategy: pretrained features (frozen for "frozen") or, for
    "scratch", random ones; the head is always new."""
    model = TransferNet(backbone, num_classes)
    spec = BACKBONES[backbone]
    if strategy != "scratch" and spec.checkpoint is None:
        if not imagenet_available():
            raise MissingImageNet()
        model.load_backbone(imagenet_resnet18_state())
    elif strategy != "scratch":
        model.load_backbone(checkpoints.load(spec.model, spec.checkpoint, spec.command, root=root).state_dict())
    if strategy == "frozen":
        model.freeze_backbone()
    return model.to(device)


def load_model(experiment: str, backbone: str | None = None, device="cpu", root=None) -> TransferNet:
    """An experiment's committed model (see checkpoint_name), in eval mode."""
    return checkpoints.load(TransferNet, checkpoint_name(experiment, backbone), train_command(experiment, backbone),
                            device, root)


# ---- feature extraction -------------------------------------------------------------------------

def available_backbones() -> list[str]:
    """The backbones this machine can offer: ours, and ImageNet's when torch's cache has it."""
    return [b for b in BACKBONES if BACKBONES[b].checkpoint is not None or imagenet_available()]


def check_backbone(name) -> str:
    if name not in available_backbones():
        extra = " (the ImageNet ResNet-18 is not in torch's cache here)" if name == "imagenet_resnet18" else ""
        raise BadInput(f"Unknown backbone {name!r}{extra}; choose one of {available_backbones()}.")
    return name


@functools.cache
def backbone(name: str) -> TransferNet:
    """A frozen backbone (the head is unused) for feature extraction."""
    return build(check_backbone(name), "frozen", 2).eval()


def image_tensor(image, kind: str, what: str = "image") -> torch.Tensor:
    """One picture (read by core.pictures) -> the normalised (C, H, W) input of a backbone:
    for photos the centre square at 64x64 (224x224 for ImageNet's), as the ants-vs-bees
    experiment sees them; for drawings the MNIST-style 28x28 digit. A dict from
    backbone_inputs() gives its tensor for that kind."""
    if isinstance(image, dict) and kind in image and torch.is_tensor(image[kind]):
        return image[kind].float()
    picture = read_picture(image, what, min_side=4, draft=256)
    if kind == "gray":
        digit = preprocess_drawing(picture)
        return torch.from_numpy((digit - MNIST_MEAN) / MNIST_STD).unsqueeze(0)
    size = INPUT_SIZE[kind]
    square = data.square(picture, size + 8)  # stored 8 pixels larger and centre-cropped, as in training
    x = torch.from_numpy(np.asarray(square).copy()).permute(2, 0, 1)[:, 4:4 + size, 4:4 + size].unsqueeze(0)
    return normalize(kind, x)[0]


def backbone_inputs(image, what: str = "image") -> dict[str, torch.Tensor]:
    """A picture as every backbone available here takes it ({input kind: half-precision
    tensor}, 27 KB without ImageNet's): what a session keeps of a drawing instead of the
    picture, which may be megabytes."""
    picture = read_picture(image, what, min_side=4, draft=256)
    return {kind: image_tensor(picture, kind, what).half()
            for kind in sorted({BACKBONES[b].input for b in available_backbones()})}


@torch.no_grad()
def embed(images: list, backbone_name: str, what: str | list[str] = "image", mirror: bool = False) -> torch.Tensor:
    """L2-normalised features (N, feature size) of pictures under a frozen backbone. `what`
    names the pictures in messages (one name for all, or a list). With `mirror`, photos
    also give their mirror images' features (after all the originals)."""
    kind = BACKBONES[backbone_name].input
    names = what if isinstance(what, list) else [what] * len(images)
    x = torch.stack([image_tensor(image, kind, name) for image, name in zip(images, names)])
    if mirror and kind != "gray":
        x = torch.cat([x, x.flip(3)])
    return F.normalize(backbone(backbone_name).embed(x), dim=1)
