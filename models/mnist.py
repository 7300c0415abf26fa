"""The three MNIST classifiers of the seeds. Each takes (N, 1, 28, 28) images
normalised with MNIST's mean and std and returns (N, 10) logits."""
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

MEAN, STD = 0.1307, 0.3081  # of the MNIST training images, scaled to [0, 1]


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
