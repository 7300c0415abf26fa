"""Transfer learning: a trained network's convolutional features and a new linear head.

Backbones are the project's own networks (nothing here can download ImageNet weights):
the CIFAR-10 VGG and ResNet-20 for colour photos, and the bootcamp MNIST CNN, trained on
digits 0-4 only, for digits 5-9. Each backbone name maps to the checkpoint its weights come
from. On a machine whose torch cache already holds torchvision's ImageNet ResNet-18 (the
seed's backbone), that is offered too; nothing depends on it.
"""
from pathlib import Path

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from models.cifar10 import VGG, ResNet
from models.mnist import BootcampCNN


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


# name -> (architecture, its arguments, checkpoint with its trained weights, feature size,
# input, pooling). Each backbone's feature map is pooled as its own classifier pools it:
# averaged (ResNet), max-pooled (VGG) or flattened (the digit CNN: where a stroke is matters).
# Inputs: "rgb" 64x64 photos normalised as CIFAR-10, "gray" 28x28 MNIST digits, "imagenet"
# 224x224 photos normalised as ImageNet. The ImageNet ResNet-18 has no checkpoint of ours:
# its weights come from torch's cache (imagenet_resnet18_state).
BACKBONES = {
    "cifar10_vgg": (VGG, {}, "cifar10/vgg", 256, "rgb", "max"),
    "cifar10_resnet20": (ResNet, {"depth": 20}, "cifar10/resnet20", 64, "rgb", "avg"),
    "digits04_cnn": (BootcampCNN, {}, "transfer/digits04_cnn", 256 * 4 * 4, "gray", "flatten"),
    "imagenet_resnet18": (ImageNetResNet18, {}, None, 512, "imagenet", "avg"),
}
INPUT_SIZE = {"rgb": 64, "gray": 28, "imagenet": 224}


class TransferNet(nn.Module, PyTorchModelHubMixin):
    """backbone.features -> pooled or flattened -> Linear(feature size, num_classes)."""

    def __init__(self, backbone: str = "cifar10_resnet20", num_classes: int = 2):
        super().__init__()
        cls, kwargs, _, feature_size, _, _ = BACKBONES[backbone]
        self.backbone_name = backbone
        self.features = cls(**kwargs).features
        self.head = nn.Linear(feature_size, num_classes)

    def embed(self, x):
        h = self.features(x)  # (N, C, H, W)
        pool = BACKBONES[self.backbone_name][5]
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
