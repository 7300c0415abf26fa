"""Whole train-and-evaluate cycles on tiny slices, in seconds, through the real CLIs."""
import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from conftest import run_cli
from core.data import REPO


def test_fizzbuzz_train_then_eval(tmp_path):
    trained = run_cli("train.fizzbuzz", "--epochs", "30", "--hidden", "64", "--checkpoint-dir", str(tmp_path))
    assert 0 <= trained["test_accuracy"] <= 1
    metrics = json.loads((tmp_path / "fizzbuzz" / "metrics.json").read_text())
    assert metrics["history"][-1]["epoch"] == 30 and metrics["train_wall_time_s"] >= 0
    assert not set(range(1, 101)) & set(metrics["val_numbers"])  # test numbers never in validation
    evaluated = run_cli("train.fizzbuzz", "--eval", "--checkpoint-dir", str(tmp_path))
    assert evaluated["test_accuracy"] == trained["test_accuracy"]


def test_mnist_train_then_eval(tmp_path):
    trained = run_cli("train.mnist", "--arch", "lenet", "--epochs", "1", "--limit", "512",
                      "--checkpoint-dir", str(tmp_path))
    folder = tmp_path / "mnist" / "lenet"
    assert {"model.safetensors", "config.json", "metrics.json", "mistakes.safetensors"} <= {p.name for p in folder.iterdir()}
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["train_images"] == 512 and metrics["command"].startswith("python -m train.mnist")
    assert trained["lenet"]["test_accuracy"] == metrics["test_accuracy"]
    evaluated = run_cli("train.mnist", "--arch", "lenet", "--eval", "--checkpoint-dir", str(tmp_path))
    assert evaluated["lenet"]["test_images"] == 10000 and 0 <= evaluated["lenet"]["test_accuracy"] <= 1


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
