import json

import pytest
import torch

from core import checkpoints
from models.fizzbuzz import FizzBuzzMLP
from models.mnist import BootcampCNN


def test_round_trip_keeps_weights_config_and_metrics(tmp_path):
    model = BootcampCNN(widths=(8, 16, 32), dropout=0.2)
    path = checkpoints.save(model, "mnist/tiny", {"test_accuracy": 0.5}, root=tmp_path)
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "metrics.json", "model.safetensors"]
    assert json.loads((path / "config.json").read_text()) == {"widths": [8, 16, 32], "dropout": 0.2}
    loaded = checkpoints.load(BootcampCNN, "mnist/tiny", "python -m train.mnist", root=tmp_path)
    assert not loaded.training
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    metrics = checkpoints.load_metrics("mnist/tiny", root=tmp_path)
    assert metrics["test_accuracy"] == 0.5 and metrics["versions"]["torch"] == torch.__version__


def test_missing_checkpoint_says_what_to_run(tmp_path, monkeypatch):
    monkeypatch.delenv("DLP_HUB_REPO", raising=False)
    with pytest.raises(checkpoints.MissingCheckpoint, match="python -m train.fizzbuzz"):
        checkpoints.load(FizzBuzzMLP, "fizzbuzz", "python -m train.fizzbuzz", root=tmp_path)
    assert checkpoints.load_metrics("fizzbuzz", root=tmp_path) == {}


def test_unreachable_hub_counts_as_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("DLP_HUB_REPO", "nobody/no-such-repo")  # HF_HUB_OFFLINE=1 in conftest
    assert checkpoints.find("fizzbuzz", root=tmp_path) is None


def test_weights_are_safetensors_not_pickles():
    for path in checkpoints.CHECKPOINTS.rglob("*"):
        assert path.suffix not in {".pt", ".pth", ".pkl", ".ckpt", ".bin"}, path
