"""FizzBuzz as classification: a number in binary in, one of four answers out."""
import functools

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from core import checkpoints

CLASSES = ["number", "fizz", "buzz", "fizzbuzz"]
TRAIN_RANGE = (101, 1023)  # inclusive, as in the seed
TEST_RANGE = (1, 100)


def checkpoint_name() -> str:
    return "fizzbuzz"


def train_command() -> str:
    return "python -m train.fizzbuzz"


def encode(numbers, bits: int = 10) -> torch.Tensor:
    """Numbers -> (N, bits) float tensor of their binary digits, least significant first."""
    numbers = torch.as_tensor(numbers).long().unsqueeze(-1)
    return ((numbers >> torch.arange(bits)) & 1).float()


def fizzbuzz_class(n: int) -> int:
    """The true answer's index in CLASSES."""
    return (n % 3 == 0) + 2 * (n % 5 == 0)


def answer(n: int, cls: int) -> str:
    return str(n) if cls == 0 else CLASSES[cls]


class FizzBuzzMLP(nn.Module, PyTorchModelHubMixin):
    """The seed's two-layer network: Linear(bits, hidden) - ReLU - Linear(hidden, 4)."""

    def __init__(self, bits: int = 10, hidden: int = 100):
        super().__init__()
        self.bits = bits
        self.net = nn.Sequential(nn.Linear(bits, hidden), nn.ReLU(), nn.Linear(hidden, 4))

    def forward(self, x):  # (N, bits) -> (N, 4) logits
        return self.net(x)


@functools.cache
def load_model() -> FizzBuzzMLP:
    return checkpoints.load(FizzBuzzMLP, checkpoint_name(), train_command())


def predict_classes(model: nn.Module, numbers) -> list[int]:
    """The predicted index in CLASSES for each number."""
    with torch.inference_mode():
        return model(encode(numbers)).argmax(1).tolist()
