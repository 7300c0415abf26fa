"""The three MNIST classifiers of the seeds and how to use them. Each network takes
(N, 1, 28, 28) images normalised with MNIST's mean and std and returns (N, 10) logits.

A drawing is turned into what MNIST digits look like before any model sees it
(preprocess_drawing): the ink is cropped, scaled to fit a 20x20 box (aspect ratio kept),
and pasted into 28x28 so that its centre of mass sits in the middle, as LeCun et al. made
MNIST.
"""
import functools

import numpy as np
import torch
from huggingface_hub import PyTorchModelHubMixin
from PIL import Image
from torch import nn

from core import checkpoints
from core.errors import BadInput
from core.pictures import read_picture

MEAN, STD = 0.1307, 0.3081  # of the MNIST training images, scaled to [0, 1]
INK_THRESHOLD = 0.1  # ink below this (of full black) counts as paper
MAX_SIDE = 1024  # larger drawings are shrunk to this before anything else


def conv_bn(c_in, c_out, **kwargs):
    return nn.Sequential(nn.Conv2d(c_in, c_out, bias=False, **kwargs),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class BootcampCNN(nn.Module, PyTorchModelHubMixin):
    """The bootcamp CNN: three 3x3 stride-2 convs (64/128/256) then one linear layer.
    Batch norm after each conv and dropout before the classifier are our additions."""

    def __init__(self, widths=(64, 128, 256), dropout: float = 0.3):
        super().__init__()
        c1, c2, c3 = widths
        self.features = nn.Sequential(
            conv_bn(1, c1, kernel_size=3, stride=2, padding=1),   # (N, c1, 14, 14)
            conv_bn(c1, c2, kernel_size=3, stride=2, padding=1),  # (N, c2, 7, 7)
            conv_bn(c2, c3, kernel_size=3, stride=2, padding=1),  # (N, c3, 4, 4)
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(c3 * 16, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


class LeNet(nn.Module, PyTorchModelHubMixin):
    """LeNet-style CNN of the seed: conv5x5(20) - pool - conv5x5(50) - pool - fc500 - fc10."""

    def __init__(self, dropout: float = 0.3):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 20, 5), nn.BatchNorm2d(20), nn.ReLU(inplace=True), nn.MaxPool2d(2),  # (N, 20, 12, 12)
            nn.Conv2d(20, 50, 5), nn.BatchNorm2d(50), nn.ReLU(inplace=True), nn.MaxPool2d(2),  # (N, 50, 4, 4)
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(50 * 16, 500), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(500, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


class MLP(nn.Module, PyTorchModelHubMixin):
    """The bootcamp MLP: 784-256-128-64-10 with ReLU (dropout is our addition)."""

    def __init__(self, hidden=(256, 128, 64), dropout: float = 0.1):
        super().__init__()
        layers, width = [nn.Flatten()], 28 * 28
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, 10))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


ARCHS = {"cnn": BootcampCNN, "lenet": LeNet, "mlp": MLP}


def checkpoint_name(arch: str) -> str:
    return f"mnist/{arch}"


def train_command(arch: str | None = None) -> str:
    """What trains checkpoint `arch` (all three without one)."""
    return "python -m train.mnist" + (f" --arch {arch}" if arch else "")


@functools.cache
def load_model(arch: str):
    return checkpoints.load(ARCHS[arch], checkpoint_name(arch), train_command(arch))


def normalize(images_uint8: torch.Tensor) -> torch.Tensor:
    """(N, 28, 28) uint8 -> (N, 1, 28, 28) float, normalised as in training."""
    return ((images_uint8.float() / 255.0 - MEAN) / STD).unsqueeze(1)


def predict(model: nn.Module, digit: np.ndarray) -> torch.Tensor:
    """The ten probabilities for one preprocessed (28, 28) digit in [0, 1]."""
    x = torch.from_numpy((digit - MEAN) / STD).view(1, 1, 28, 28)
    with torch.inference_mode():
        return torch.softmax(model(x), dim=1)[0]


# ---- drawings -> what MNIST digits look like ------------------------------------------------

def ink_image(image) -> np.ndarray:
    """Any accepted input -> (H, W) float32 ink in [0, 1] (1 = darkest stroke).

    Accepts a Sketchpad value (dict with "composite"), an image file path, a PIL image, or
    an array that is HxW, HxWx3 or HxWx4 (uint8, uint16, bool or float in [0, 1]),
    dark-on-light or light-on-dark. Read by core.pictures.read_picture: transparency over
    white, so the Sketchpad's black ink on a transparent canvas is dark on light."""
    if isinstance(image, dict):
        image = image.get("composite")
    if image is None:
        raise BadInput("The canvas is empty: pick the brush (left of the canvas) and draw a digit.")
    picture = read_picture(image, "drawing", max_side=MAX_SIDE)  # a photo-sized upload: the digit ends up 20 px tall anyway
    if min(picture.size) < 2:
        raise BadInput(f"Expected an image of at least 2x2 pixels; this one is {picture.width}x{picture.height}, "
                       "too small to hold a digit.")
    gray = np.asarray(picture, dtype=np.float32) / 255.0 @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    # Polarity from the border, where the paper is: light paper means dark ink.
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    paper = float(np.median(border))
    ink = paper - gray if paper >= 0.5 else gray - paper
    return np.clip(ink / max(max(paper, 1 - paper), 1e-6), 0.0, 1.0)


# MNIST's strokes are about 2.5 px wide on its 20-px digits. A large digit drawn with a thin
# brush fades to a faint trace when shrunk to 20 px: its strokes are redrawn at MNIST's width
# along their skeleton. (Strokes too thick for a small digit cannot be recovered so: the brush
# is thin enough for a digit a third of the canvas tall, core.ui.drawing_canvas.)
MNIST_STROKE_RATIO = 0.13
THIN_STROKE_RATIO = 0.06  # below this (stroke width / the digit's longer side) it is redrawn


def stroke_width(mask: np.ndarray) -> float:
    """A binary drawing's mean stroke width in pixels: its area over its skeleton's length."""
    from skimage.morphology import skeletonize

    return mask.sum() / max(skeletonize(mask).sum(), 1)


def even_strokes(ink: np.ndarray) -> np.ndarray:
    """The ink with its strokes redrawn at MNIST's width for its size, if they are far thinner."""
    from scipy.ndimage import binary_dilation
    from skimage.morphology import disk, skeletonize

    mask = ink >= 0.5
    side = max(ink.shape)
    if side < 20 or stroke_width(mask) >= THIN_STROKE_RATIO * side:
        return ink
    radius = max(1, round(MNIST_STROKE_RATIO * side / 2))
    return binary_dilation(skeletonize(mask), structure=disk(radius)).astype(np.float32)


def photo_ink(ink: np.ndarray) -> np.ndarray:
    """The ink of a photo of a digit on paper: uneven light evened out (ink is what is darker
    than the paper around it), Otsu's threshold, and specks far smaller than the digit dropped."""
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    paper = ndimage.grey_opening(ink, size=max(3, max(ink.shape) // 8))  # the paper's own level, strokes removed
    even = np.clip(ink - paper, 0, 1)
    if even.max() < INK_THRESHOLD:
        raise BadInput("No digit found in the photo: write it darker, or photograph it closer.")
    mask = even > threshold_otsu(even)
    labels, count = ndimage.label(mask)
    if count > 1:
        sizes = ndimage.sum(mask, labels, range(1, count + 1))
        mask = np.isin(labels, 1 + np.nonzero(sizes >= 0.1 * sizes.max())[0])
    return np.where(mask, even / even[mask].max(), 0).astype(np.float32)


def preprocess_photo(image) -> np.ndarray:
    """A photo of a handwritten digit -> the (28, 28) image a model sees (see photo_ink)."""
    return preprocess_drawing(image, photo=True)


def preprocess_drawing(image, photo: bool = False) -> np.ndarray:
    """A drawing -> the (28, 28) float32 image in [0, 1] a model sees (white ink on black).

    Raises BadInput for an empty canvas or an unusable image."""
    ink = ink_image(image)
    if photo:
        ink = photo_ink(ink)
    if ink.max() < INK_THRESHOLD:
        raise BadInput("The canvas is empty: pick the brush (left of the canvas) and draw a digit.")
    ink = ink / ink.max()  # a faint pencil stroke counts as much as black ink
    ink = np.where(ink >= INK_THRESHOLD, ink, 0.0).astype(np.float32)
    rows, cols = np.nonzero(ink)
    ink = even_strokes(ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1])
    h, w = ink.shape
    scale = 20.0 / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))  # PIL wants (width, height)
    small = np.asarray(Image.fromarray(ink).resize(size, Image.Resampling.LANCZOS)).clip(0, 1)
    if small.sum() == 0:
        raise BadInput("The drawing is too faint to read: draw with a thicker stroke.")
    # Paste so the centre of mass lands on the centre of the 28x28 image.
    ys, xs = np.indices(small.shape)
    cy, cx = (ys * small).sum() / small.sum(), (xs * small).sum() / small.sum()
    top = int(np.clip(round(14 - cy), 0, 28 - small.shape[0]))
    left = int(np.clip(round(14 - cx), 0, 28 - small.shape[1]))
    out = np.zeros((28, 28), dtype=np.float32)
    out[top:top + small.shape[0], left:left + small.shape[1]] = small
    return out
