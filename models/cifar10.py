"""The CIFAR-10 model zoo: the course's eight architectures (logistic and softmax
regression, an MLP, a small CNN, VGG, ResNet, Inception and MobileNet styles) and the
second seed's PlainNet-20 / ResNet-20 / SE-ResNet-20 / DenseNet-BC, sized for a 2-core CPU,
and how to use them: checkpoint names, loading, preprocessing a picture, predicting.

Every model takes normalised images (N, 3, 32, 32) (see `normalize`) and returns logits:
(N, 10), or (N,) for the binary logistic regression (airplane vs automobile).
"""
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from PIL import Image
from torch import nn

from core import checkpoints
from core.data import CIFAR10_CLASSES
from core.pictures import read_picture
from models.efficientnet import EfficientNetLite0

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


def normalize(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, 32, 32) -> float, per-channel standardised with the training set's statistics."""
    mean = torch.tensor(MEAN, device=images_uint8.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=images_uint8.device).view(1, 3, 1, 1)
    return (images_uint8.float() / 255 - mean) / std


ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "gelu": nn.GELU}


def init_weights(model: nn.Module, scheme: str) -> None:
    """The course's initializer study: he, xavier, normal (std 0.01) or truncated_normal (std 0.05)."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            if scheme == "he":
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            elif scheme == "xavier":
                nn.init.xavier_uniform_(m.weight)
            elif scheme == "normal":
                nn.init.normal_(m.weight, 0.0, 0.01)
            elif scheme == "truncated_normal":
                nn.init.trunc_normal_(m.weight, 0.0, 0.05, -0.1, 0.1)
            else:
                raise ValueError(f"unknown initializer {scheme!r}")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def conv_bn(cin: int, cout: int, stride: int = 1, groups: int = 1, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout))


# ---- the course: linear models and an MLP ---------------------------------------------

class LogisticRegression(nn.Module, PyTorchModelHubMixin):
    """One linear unit on the 3,072 pixels: airplane (0) vs automobile (1)."""

    def __init__(self, in_features: int = 3 * 32 * 32):
        super().__init__()
        self.linear = nn.Linear(in_features, 1)

    def forward(self, x):
        return self.linear(x.flatten(1)).squeeze(1)


class SoftmaxRegression(nn.Module, PyTorchModelHubMixin):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.linear = nn.Linear(3 * 32 * 32, num_classes)

    def forward(self, x):
        return self.linear(x.flatten(1))


class MLP(nn.Module, PyTorchModelHubMixin):
    """Fully connected layers with batch norm and dropout (the course used 100-100-50 and no
    normalisation; wider layers are cheap here and worth ten points)."""

    def __init__(self, hidden=(1024, 512, 256), dropout: float = 0.2, num_classes: int = 10):
        super().__init__()
        layers, width = [nn.Flatten()], 3 * 32 * 32
        for h in hidden:
            layers += [nn.Linear(width, h, bias=False), nn.BatchNorm1d(h), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = h
        self.net = nn.Sequential(*layers, nn.Linear(width, num_classes))

    def forward(self, x):
        return self.net(x)


# ---- the course: CNNs ------------------------------------------------------------------

class SimpleCNN(nn.Module, PyTorchModelHubMixin):
    """The course's small CNN: three stages of 3x3 convs, each followed by 2x2 max-pooling,
    then a hidden dense layer. The knobs are the course's study: activation, batch norm
    on/off, convs per stage ("a deeper net"), initializer (see init_weights)."""

    def __init__(self, widths=(32, 64, 128), convs_per_stage: int = 1, activation: str = "relu",
                 batch_norm: bool = True, hidden: int = 256, dropout: float = 0.2, num_classes: int = 10):
        super().__init__()
        act = ACTIVATIONS[activation]
        layers, cin = [], 3
        for width in widths:
            for _ in range(convs_per_stage):
                layers += [nn.Conv2d(cin, width, 3, padding=1, bias=not batch_norm)]
                layers += [nn.BatchNorm2d(width)] if batch_norm else []
                layers += [act()]
                cin = width
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)  # (N, widths[-1], 4, 4)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(cin * 16, hidden), act(), nn.Dropout(dropout),
                                        nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


class VGG(nn.Module, PyTorchModelHubMixin):
    """A small VGG: stages of two 3x3 conv-BN-GELU layers, max-pooling after each stage's
    first conv (as in Keller Jordan's airbench, the fastest known CIFAR-10 trainer), then
    global max-pooling and a linear layer scaled down so the logits start small.

    With `whiten=True` the rest of airbench94's network too: the stem is a fixed 2x2 conv
    whose filters whiten the training images' patches (`init_whitening`), the other convs
    start as identities on their first channels (an implicit residual), and batch norm only
    learns a shift (its scale is fixed at 1, its running statistics follow fast)."""

    def __init__(self, widths=(64, 256, 256), stem: int = 32, num_classes: int = 10, whiten: bool = False):
        super().__init__()
        if whiten:  # 12 whitening directions of 2x2x3 patches, each with its negative (GELU keeps both signs)
            layers, cin = [nn.Conv2d(3, 24, 2, bias=True), nn.GELU()], 24
        else:
            layers, cin = [nn.Conv2d(3, stem, 3, padding=1, bias=False), nn.BatchNorm2d(stem), nn.GELU()], stem
        norm = (lambda c: nn.BatchNorm2d(c, eps=1e-12, momentum=0.4)) if whiten else nn.BatchNorm2d
        for width in widths:
            layers += [nn.Conv2d(cin, width, 3, padding=1, bias=False), nn.MaxPool2d(2), norm(width), nn.GELU(),
                       nn.Conv2d(width, width, 3, padding=1, bias=False), norm(width), nn.GELU()]
            cin = width
        self.features = nn.Sequential(*layers)  # (N, widths[-1], 4, 4)
        self.head = nn.Linear(cin, num_classes, bias=False)
        self.scale = 1 / 9  # airbench's temperature on the logits
        self.whiten = whiten
        if whiten:
            self.features[0].weight.requires_grad_(False)
            nn.init.zeros_(self.features[0].bias)
            for m in self.features[2:].modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.dirac_(m.weight.data[:m.in_channels])
                elif isinstance(m, nn.BatchNorm2d):
                    m.weight.requires_grad_(False)

    @torch.no_grad()
    def init_whitening(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the whitening stem from normalised training images (N, 3, 32, 32): the
        eigenvectors of the 2x2 patches' covariance, each scaled by 1/sqrt(eigenvalue)."""
        conv = self.features[0]
        patches = images.float().unfold(2, 2, 1).unfold(3, 2, 1).transpose(1, 3).reshape(-1, 12)
        eigenvalues, eigenvectors = torch.linalg.eigh(patches.T @ patches / len(patches))
        filters = (eigenvectors.T / (eigenvalues[:, None] + eps).sqrt()).flip(0).reshape(12, 3, 2, 2)
        conv.weight.copy_(torch.cat([filters, -filters]))

    def forward(self, x):
        x = self.features(x).amax(dim=(2, 3))
        return self.head(x) * self.scale


class InceptionModule(nn.Module):
    """The two-branch module of the small Inception used for CIFAR by Zhang et al. (2017):
    a 1x1 and a 3x3 conv side by side, concatenated."""

    def __init__(self, cin: int, c1: int, c3: int):
        super().__init__()
        self.branch1 = nn.Sequential(conv_bn(cin, c1, kernel=1), nn.ReLU(inplace=True))
        self.branch3 = nn.Sequential(conv_bn(cin, c3), nn.ReLU(inplace=True))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch3(x)], dim=1)


class Downsample(nn.Module):
    """Inception's reduction: a stride-2 3x3 conv beside a 3x3 max-pool, concatenated."""

    def __init__(self, cin: int, c3: int):
        super().__init__()
        self.conv = nn.Sequential(conv_bn(cin, c3, stride=2), nn.ReLU(inplace=True))
        self.pool = nn.MaxPool2d(3, 2, 1)

    def forward(self, x):
        return torch.cat([self.conv(x), self.pool(x)], dim=1)


class Inception(nn.Module, PyTorchModelHubMixin):
    """Small Inception (Zhang et al. 2017, appendix), channels scaled by `width`."""

    def __init__(self, width: float = 0.5, num_classes: int = 10):
        super().__init__()

        def c(n):
            return max(8, int(n * width))

        self.net = nn.Sequential(
            conv_bn(3, c(96)), nn.ReLU(inplace=True),  # (N, 96w, 32, 32)
            InceptionModule(c(96), c(32), c(32)), InceptionModule(c(64), c(32), c(48)),
            Downsample(c(32) + c(48), c(80)),  # (N, ., 16, 16)
            InceptionModule(c(80) + c(32) + c(48), c(112), c(48)), InceptionModule(c(160), c(96), c(64)),
            InceptionModule(c(160), c(80), c(80)), InceptionModule(c(160), c(48), c(96)),
            Downsample(c(48) + c(96), c(96)),  # (N, ., 8, 8)
            InceptionModule(c(96) + c(48) + c(96), c(176), c(160)), InceptionModule(c(336), c(176), c(160)),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(c(176) + c(160), num_classes)

    def forward(self, x):
        return self.fc(self.net(x))


class MobileNet(nn.Module, PyTorchModelHubMixin):
    """MobileNet-style: depthwise-separable convs (a 3x3 per-channel conv, then a 1x1 conv),
    strides placed for 32x32 inputs, channels scaled by `width`."""

    # (output channels, stride) of each separable block, as in MobileNetV1 for CIFAR
    BLOCKS = ((64, 1), (128, 1), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))

    def __init__(self, width: float = 0.5, num_classes: int = 10):
        super().__init__()
        cin = int(32 * width)
        layers = [conv_bn(3, cin), nn.ReLU(inplace=True)]
        for cout, stride in self.BLOCKS:
            cout = int(cout * width)
            layers += [conv_bn(cin, cin, stride, groups=cin), nn.ReLU(inplace=True),  # depthwise
                       conv_bn(cin, cout, kernel=1), nn.ReLU(inplace=True)]  # pointwise
            cin = cout
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.fc(self.features(x).mean(dim=(2, 3)))


# ---- the second seed: residual or not, squeeze-and-excitation, dense connections -------

class SqueezeExcite(nn.Module):
    """Hu et al.: rescale each channel by a gate computed from the globally pooled features."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(channels, channels // reduction), nn.ReLU(inplace=True),
                                  nn.Linear(channels // reduction, channels), nn.Sigmoid())

    def forward(self, x):
        return x * self.gate(x.mean(dim=(2, 3)))[:, :, None, None]


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers; with `residual` the input is added back (option A of He et
    al.: a strided, zero-padded identity when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int, residual: bool = True, se: bool = False):
        super().__init__()
        self.residual, self.stride, self.pad = residual, stride, cout - cin
        self.conv1, self.conv2 = conv_bn(cin, cout, stride), conv_bn(cout, cout)
        self.se = SqueezeExcite(cout) if se else nn.Identity()

    def forward(self, x):
        out = self.se(self.conv2(F.relu(self.conv1(x))))
        if self.residual:
            shortcut = x[:, :, ::self.stride, ::self.stride]
            if self.pad:
                shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.pad))
            out = out + shortcut
        return F.relu(out)


class ResNet(nn.Module, PyTorchModelHubMixin):
    """He et al.'s CIFAR network of depth 6n + 2: three stages of n blocks with `width`,
    2x and 4x channels. residual=False is the same stack without shortcuts (PlainNet);
    se=True adds squeeze-and-excitation to every block (SE-ResNet)."""

    def __init__(self, depth: int = 20, width: int = 16, residual: bool = True, se: bool = False, num_classes: int = 10):
        super().__init__()
        assert (depth - 2) % 6 == 0, "depth must be 6n + 2"
        n = (depth - 2) // 6
        layers, cin = [conv_bn(3, width), nn.ReLU(inplace=True)], width
        for stage, cout in enumerate((width, 2 * width, 4 * width)):
            for i in range(n):
                layers.append(BasicBlock(cin, cout, 2 if stage > 0 and i == 0 else 1, residual, se))
                cin = cout
        self.features = nn.Sequential(*layers)  # (N, 4 * width, 8, 8)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.fc(self.features(x).mean(dim=(2, 3)))


class DenseLayer(nn.Module):
    """DenseNet-BC layer: BN-ReLU-1x1 conv to 4k channels, BN-ReLU-3x3 conv to k; its output
    is concatenated to everything before it."""

    def __init__(self, cin: int, growth: int):
        super().__init__()
        self.net = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, 4 * growth, 1, bias=False),
                                 nn.BatchNorm2d(4 * growth), nn.ReLU(inplace=True),
                                 nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False))

    def forward(self, x):
        return torch.cat([x, self.net(x)], dim=1)


class DenseNet(nn.Module, PyTorchModelHubMixin):
    """DenseNet-BC (Huang et al.) for CIFAR: three dense blocks of (depth - 4) / 6 layers with
    growth rate k, transitions that halve the channels (compression 0.5) and the size."""

    def __init__(self, depth: int = 40, growth: int = 12, num_classes: int = 10):
        super().__init__()
        n = (depth - 4) // 6
        cin = 2 * growth
        layers = [nn.Conv2d(3, cin, 3, padding=1, bias=False)]
        for block in range(3):
            for _ in range(n):
                layers.append(DenseLayer(cin, growth))
                cin += growth
            if block < 2:
                cout = cin // 2
                layers += [nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, cout, 1, bias=False), nn.AvgPool2d(2)]
                cin = cout
        self.features = nn.Sequential(*layers, nn.BatchNorm2d(cin), nn.ReLU(inplace=True))  # (N, cin, 8, 8)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.fc(self.features(x).mean(dim=(2, 3)))


class PretrainedEfficientNet(nn.Module, PyTorchModelHubMixin):
    """EfficientNet-Lite0 (models/efficientnet.py) started from its ImageNet-1k weights, with a
    new 10-class layer. It takes the zoo's normalised images at any size: 32x32 ones are
    upsampled to `input_size`. The stem and the first `frozen_stages` stages keep their
    ImageNet weights (train/cifar10_efficientnet.py computes their output once and trains
    the rest on it)."""

    def __init__(self, input_size: int = 128, frozen_stages: int = 5, num_classes: int = 10):
        super().__init__()
        self.input_size, self.frozen_stages = input_size, frozen_stages
        self.net = EfficientNetLite0(num_classes=num_classes)
        self.split = self.net.stage_ends[frozen_stages - 1]  # the last frozen block
        mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    def frozen_features(self, x):
        """The frozen part's output for zoo-normalised images (N, 3, H, W)."""
        x = x * self.std + self.mean  # back to [0, 1] ...
        if x.shape[-1] < self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        return self.net.feature_map((x - 0.5) / 0.5, upto=self.split)  # ... and to the range its weights expect

    def head(self, h):
        """Logits from the frozen part's output: the trained stages, the 1280-channel head, the new layer."""
        for block in self.net._blocks[self.split + 1:]:
            h = block(h)
        h = F.relu6(self.net._bn1(self.net._conv_head(h))).mean((2, 3))
        return self.net._fc(self.net.dropout(h))

    def head_parameters(self) -> list[nn.Parameter]:
        trained = [*self.net._blocks[self.split + 1:], self.net._conv_head, self.net._bn1, self.net._fc]
        return [p for module in trained for p in module.parameters()]

    def forward(self, x):
        return self.head(self.frozen_features(x))


@dataclass(frozen=True)
class Architecture:
    """One model of the zoo: its class, the constructor's arguments, and the course's
    accuracy (on its first 2,000 test images) or None; the second seed gave no numbers we
    could check."""
    model: type
    kwargs: dict = field(default_factory=dict)
    seed_accuracy: float | None = None
    pretrained: str | None = None  # what its starting weights learned from, if not from scratch


ARCHITECTURES = {
    "logistic": Architecture(LogisticRegression, {}, 0.82),
    "softmax": Architecture(SoftmaxRegression, {}, 0.316),
    "mlp": Architecture(MLP, {}, 0.464),
    "cnn": Architecture(SimpleCNN, {}, 0.663),
    "vgg": Architecture(VGG, {}, 0.732),
    "vgg_airbench": Architecture(VGG, {"whiten": True}, 0.732),
    "resnet": Architecture(ResNet, {"depth": 14, "width": 32}, 0.763),
    "inception": Architecture(Inception, {}, 0.735),
    "mobilenet": Architecture(MobileNet, {}, 0.649),
    "plain20": Architecture(ResNet, {"depth": 20, "residual": False}),
    "resnet20": Architecture(ResNet, {"depth": 20}),
    "se_resnet20": Architecture(ResNet, {"depth": 20, "se": True}),
    "densenet_bc": Architecture(DenseNet, {}),
    "efficientnet": Architecture(PretrainedEfficientNet, {}, pretrained="ImageNet-1k"),
}
BINARY_CLASSES = (0, 1)  # airplane, automobile: the logistic regression's task
OPTIMIZERS = ("adam", "momentum", "sgd")  # the course's study and the training lab
INITIALIZERS = ("he", "xavier", "normal", "truncated_normal")  # see init_weights


def build_model(arch: str) -> nn.Module:
    """A freshly initialised model of the zoo."""
    return ARCHITECTURES[arch].model(**ARCHITECTURES[arch].kwargs)


def class_names(arch: str) -> list[str]:
    """The names of a model's outputs: two for the logistic regression, else all ten."""
    return [CIFAR10_CLASSES[c] for c in BINARY_CLASSES] if arch == "logistic" else list(CIFAR10_CLASSES)


# ---- checkpoints ---------------------------------------------------------------------------

def checkpoint_name(arch: str) -> str:
    return f"cifar10/{arch}"


def train_command(arch: str = "all") -> str:
    """What trains `arch` ("all": the whole zoo; "study": the course's study, STUDY)."""
    if arch == "study":
        return "python -m train.cifar10_study"
    if arch in ARCHITECTURES and ARCHITECTURES[arch].pretrained:
        return f"python -m train.cifar10_{arch}"
    return f"python -m train.cifar10 --arch {arch}"


STUDY = checkpoints.CHECKPOINTS / "cifar10" / "study.json"  # the course's study's table


def load_model(arch: str, device="cpu", root=None) -> nn.Module:
    """A committed model of the zoo, in eval mode (MissingCheckpoint says how to train it)."""
    return checkpoints.load(ARCHITECTURES[arch].model, checkpoint_name(arch), train_command(arch), device, root=root)


# Style transfer's CIFAR-10 losses, the transfer tab's CIFAR-10 VGG backbone and the GAN tab's
# Frechet distance were trained and measured in the features of the zoo's VGG as it was before
# its retrain on a validation split (issue 27: 12 epochs on all 50,000 training images). That
# network is kept here, unchanged, so their numbers still hold; the zoo's "vgg" is free to be
# retrained.
FEATURE_VGG = "cifar10/vgg_features"
FEATURE_VGG_COMMAND = (f"{train_command('vgg')} --val-images 0 --checkpoint-dir /tmp/vgg "
                       f"&& cp -r /tmp/vgg/cifar10/vgg checkpoints/{FEATURE_VGG}")


def load_feature_vgg(device="cpu", root=None) -> nn.Module:
    """The VGG whose features style transfer, the transfer tab and the GAN tab use (FEATURE_VGG)."""
    return checkpoints.load(VGG, FEATURE_VGG, FEATURE_VGG_COMMAND, device, root=root)


# ---- pictures in, probabilities out --------------------------------------------------------

def preprocess_image(image) -> torch.Tensor:
    """Any picture -> the (3, 32, 32) uint8 tensor a model sees: read by core.pictures
    (grayscale as gray RGB, transparency over white), its centre square resized to 32."""
    picture = read_picture(image, "picture", min_side=4, draft=256)  # JPEGs decode at a reduced size: fast for huge photos
    side = min(picture.size)
    left, top = (picture.width - side) // 2, (picture.height - side) // 2
    picture = picture.crop((left, top, left + side, top + side)).resize((32, 32), Image.Resampling.LANCZOS)
    return torch.from_numpy(np.asarray(picture).copy()).permute(2, 0, 1)


def predict(model, images_uint8, device, bf16: bool = False, batch_size: int = 1000, channels_last: bool = True) -> torch.Tensor:
    """Class probabilities (N, 10), or (N, 2) for the binary model, of uint8 images: the
    average over each image and its mirror image (test-time augmentation, as airbench does)."""
    model.eval()
    memory = torch.channels_last if channels_last else torch.contiguous_format
    out = []
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for i in range(0, len(images_uint8), batch_size):
            x = normalize(images_uint8[i:i + batch_size].to(device))
            logits = torch.stack([model(v.contiguous(memory_format=memory)).float() for v in (x, x.flip(3))])
            if logits.dim() == 2:  # the binary logistic regression: (2 views, N)
                p = torch.sigmoid(logits).mean(0)
                out.append(torch.stack([1 - p, p], 1).cpu())
            else:
                out.append(F.softmax(logits, dim=2).mean(0).cpu())
    return torch.cat(out)
