import pytest
import torch

from models.fizzbuzz import CLASSES, FizzBuzzMLP, answer, encode, fizzbuzz_class
from models.mnist import ARCHS


@pytest.mark.parametrize("arch", list(ARCHS))
def test_mnist_models_map_images_to_ten_logits(arch):
    model = ARCHS[arch]().eval()
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)


def test_fizzbuzz_encoding_is_binary_least_significant_bit_first():
    assert encode([1, 2, 1023]).tolist() == [[1] + [0] * 9, [0, 1] + [0] * 8, [1] * 10]
    assert FizzBuzzMLP(hidden=7)(encode([3, 5])).shape == (2, 4)


@pytest.mark.parametrize("n, expected", [(1, "1"), (3, "fizz"), (5, "buzz"), (15, "fizzbuzz"),
                                         (98, "98"), (99, "fizz"), (100, "buzz"), (0, "fizzbuzz")])
def test_fizzbuzz_truth(n, expected):
    assert answer(n, fizzbuzz_class(n)) == expected
    assert CLASSES[fizzbuzz_class(n)] in (expected, "number")
