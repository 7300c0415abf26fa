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
