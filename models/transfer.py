"""Transfer learning: a trained network's convolutional features and a new linear head.

Backbones are the project's own networks (nothing here can download ImageNet weights):
the CIFAR-10 VGG and ResNet-20 for colour photos, and the bootcamp MNIST CNN, trained on
digits 0-4 only, for digits 5-9. Each backbone name maps to the checkpoint its weights come from.
"""
import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from models.cifar10 import VGG, ResNet
from models.mnist import BootcampCNN

# name -> (architecture, its arguments, checkpoint with its trained weights, feature size,
# input, pooling). Each backbone's feature map is pooled as its own classifier pools it:
# averaged (ResNet), max-pooled (VGG) or flattened (the digit CNN: where a stroke is matters).
BACKBONES = {
    "cifar10_vgg": (VGG, {}, "cifar10/vgg", 256, "rgb", "max"),
    "cifar10_resnet20": (ResNet, {"depth": 20}, "cifar10/resnet20", 64, "rgb", "avg"),
    "digits04_cnn": (BootcampCNN, {}, "transfer/digits04_cnn", 256 * 4 * 4, "gray", "flatten"),
}


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
