"""Face-mask detection: torchvision's Faster R-CNN with a small FPN backbone, sized for a CPU.

The seed fine-tuned the COCO-pretrained ResNet-50 FPN at 800 px. Nothing can be downloaded
here, so the committed model is trained from scratch: a ResNet-18 (or MobileNetV3-Large)
FPN at a shorter side of 640 px (`min_size`), with anchors and FPN levels chosen for small
faces (at 320 px the median face is 28 px and a tenth are under 12 px). ImageNet backbone weights are
used only when asked for (`imagenet_backbone=True`) and already in torch's cache.

Input: a list of float images (3, H, W) in [0, 1], any sizes; the model's own transform
normalises them and resizes each to a shorter side of `min_size` (at most `max_size` long).
Output in eval mode: per image a dict of boxes (K, 4) x0 y0 x1 y1 in the input's pixels,
labels (K,) in 1..3 (0 is background) and scores (K,).
"""
from pathlib import Path

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn
from torchvision.models import MobileNet_V3_Large_Weights, ResNet18_Weights, mobilenet_v3_large, resnet18
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

CLASSES = ("with_mask", "without_mask", "mask_weared_incorrect")  # labels 1, 2, 3
# Faces are a little taller than wide (aspect ratio here is height / width).
ASPECT_RATIOS = (1.0, 1.4)
IMAGENET = {"resnet18": ResNet18_Weights.IMAGENET1K_V1, "mobilenet_v3": MobileNet_V3_Large_Weights.IMAGENET1K_V1}


def cached_imagenet(backbone: str):
    """The backbone's ImageNet weights if torch's cache already holds them, else None."""
    weights = IMAGENET[backbone]
    file = Path(torch.hub.get_dir()) / "checkpoints" / weights.url.rsplit("/", 1)[-1]
    return weights if file.exists() else None


def fpn_backbone(name: str, imagenet: bool, width: int):
    """Feature maps at strides 8, 16, 32 (and a max-pooled 64), `width` channels each
    (64, a quarter of torchvision's 256, as small face detectors such as RetinaFace-MobileNet
    use: on this CPU the 256-wide FPN, RPN and box head cost more than the backbone).
    From scratch every layer trains with batch norm (the FPN's too: detectors trained from
    scratch need normalised heads, as ScratchDet found); with ImageNet weights the backbone's
    norms are frozen and the stem stays fixed, as torchvision fine-tunes them."""
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
    raise ValueError(f"backbone must be resnet18 or mobilenet_v3, not {name!r}")


class FaceMaskDetector(nn.Module, PyTorchModelHubMixin):
    """Faster R-CNN (torchvision's) for the three face-mask classes."""

    def __init__(self, backbone: str = "mobilenet_v3", min_size: int = 320, max_size: int = 640,
                 width: int = 64, representation_size: int = 512, imagenet_backbone: bool = False):
        super().__init__()
        self.classes, self.min_size = CLASSES, min_size
        features = fpn_backbone(backbone, imagenet_backbone, width)
        # One anchor size per FPN level (strides 8..64), two shapes each.
        anchors = AnchorGenerator(sizes=((16,), (32,), (64,), (128,)), aspect_ratios=(ASPECT_RATIOS,) * 4)
        roi_pool = MultiScaleRoIAlign(featmap_names=["0", "1", "2"], output_size=7, sampling_ratio=2)
        # A narrower box head than torchvision's 1024: 853 images, and it is most of the compute.
        head = TwoMLPHead(features.out_channels * 7 * 7, representation_size)
        self.detector = FasterRCNN(
            features, min_size=min_size, max_size=max_size, rpn_anchor_generator=anchors, box_roi_pool=roi_pool,
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
    """The detector's MobileNetV3-Large body with a linear head, trained on 64x64 crops
    (background, with_mask, without_mask, mask_weared_incorrect) by train.detection_backbone:
    a backbone the project trains itself, since no ImageNet weights can be had here."""

    def __init__(self, num_classes: int = len(CLASSES) + 1):
        super().__init__()
        self.features = mobilenet_v3_large(norm_layer=nn.BatchNorm2d).features
        self.head = nn.Linear(960, num_classes)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))
