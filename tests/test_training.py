"""core.training through the real CLIs: --resume continues an interrupted run exactly,
refuses other settings, and --limit needs --checkpoint-dir."""
import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from conftest import run_cli
from core.data import REPO


@pytest.mark.parametrize("command, folder", [
    (["train.mnist", "--arch", "lenet", "--epochs", "3", "--limit", "256"], "mnist/lenet"),
    (["train.fizzbuzz", "--epochs", "3", "--hidden", "32"], "fizzbuzz"),
])
def test_resume_continues_exactly_where_an_interrupted_run_stopped(tmp_path, command, folder):
    run_cli(*command, "--checkpoint-dir", str(tmp_path / "straight"))
    run_cli(*command, "--checkpoint-dir", str(tmp_path / "broken"), "--stop-after", "1")
    assert not (tmp_path / "broken" / folder / "model.safetensors").exists()
    run_cli(*command, "--checkpoint-dir", str(tmp_path / "broken"), "--resume")
    straight = load_file(str(tmp_path / "straight" / folder / "model.safetensors"))
    resumed = load_file(str(tmp_path / "broken" / folder / "model.safetensors"))
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key])
    history = json.loads((tmp_path / "broken" / folder / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]


def test_resume_with_other_settings_is_refused(tmp_path):
    command = ["train.fizzbuzz", "--epochs", "3", "--hidden", "32", "--checkpoint-dir", str(tmp_path)]
    run_cli(*command, "--stop-after", "1")
    result = subprocess.run([sys.executable, "-m", *command, "--resume", "--lr", "0.1"], cwd=REPO,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode != 0 and "other settings" in result.stderr


def test_limit_without_checkpoint_dir_is_refused():
    result = subprocess.run([sys.executable, "-m", "train.mnist", "--arch", "mlp", "--limit", "10"], cwd=REPO,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode != 0 and "--checkpoint-dir" in result.stderr


def test_cifar10_holds_out_validation_images_from_training():
    """With --val-images the per-epoch curve and every choice use images held out of the
    training split; --val-images 0 (the first recipes, e.g. cifar10/vgg_features) keeps all
    50,000 for training."""
    from types import SimpleNamespace

    from models.cifar10 import ARCHITECTURES
    from train.cifar10 import DEFAULTS, load_split

    args = SimpleNamespace(data_dir=None, limit=0, val_images=5000)
    train_x, train_y = load_split("train", "cnn", args)
    val_x, val_y = load_split("val", "cnn", args)
    assert (len(train_y), len(val_y)) == (45_000, 5_000)
    assert set(val_y.tolist()) == set(range(10))
    # no validation image is also a training image (compared by their pixels' hashes)
    train_hashes = {hash(x.numpy().tobytes()) for x in train_x}
    assert sum(hash(x.numpy().tobytes()) in train_hashes for x in val_x) < 10  # CIFAR-10 has a few duplicates
    assert len(load_split("train", "cnn", SimpleNamespace(data_dir=None, limit=0, val_images=0))[1]) == 50_000
    # the defaults hold out what each committed checkpoint held out, 5,000 for every one now
    # (logistic: a fifth of its two classes); the pretrained member has a script of its own
    from core import checkpoints
    from models.cifar10 import checkpoint_name

    for arch, d in DEFAULTS.items():
        if not ARCHITECTURES[arch].pretrained and checkpoints.find(checkpoint_name(arch)):
            held_out = checkpoints.load_metrics(checkpoint_name(arch)).get("val_images", 0)
            assert d["val_images"] == 5000 and held_out, (arch, held_out)


def test_cifar10_validation_run_records_a_validation_curve_and_one_test_number(tmp_path):
    result = run_cli("train.cifar10", "--arch", "softmax", "--epochs", "2", "--limit", "600", "--val-images", "100",
                     "--checkpoint-dir", str(tmp_path))
    metrics = json.loads((tmp_path / "cifar10" / "softmax" / "metrics.json").read_text())
    assert (metrics["train_images"], metrics["val_images"], metrics["test_images"]) == (500, 100, 600)
    assert [sorted(k for k in h if "_" in k and not k.startswith(("train", "wall"))) for h in metrics["history"]] \
        == [["val_accuracy", "val_loss"]] * 2
    assert result["softmax"]["test_accuracy"] == metrics["test_accuracy"]
