"""Checkpoint I/O: safetensors weights + config.json (the constructor's keyword
arguments), written and read by huggingface_hub's PyTorchModelHubMixin, plus a
metrics.json beside them. Nothing is ever unpickled.

Loading looks in `checkpoints/<name>/` first, then in the Hugging Face Hub model repo
named by $DLP_HUB_REPO (folder `<name>/`, at revision $DLP_HUB_REVISION if set).
"""
import functools
import json
import os
import platform
import shlex
import sys
from pathlib import Path

import torch

from core.data import REPO

CHECKPOINTS = REPO / "checkpoints"


class MissingCheckpoint(FileNotFoundError):
    """Raised when a checkpoint is neither committed nor on the Hub; says what to run."""

    def __init__(self, name: str, command: str):
        self.name, self.command = name, command
        super().__init__(f"No checkpoint '{name}' yet. Train it with: {command}")


def find(name: str, root=None) -> Path | None:
    """The folder holding checkpoint `name` (under `root`, default checkpoints/). Without
    an explicit root, a checkpoint missing from checkpoints/ is fetched from the Hub when
    $DLP_HUB_REPO names a repo."""
    path = Path(root or CHECKPOINTS) / name
    if (path / "model.safetensors").exists():
        return path
    if root is not None or not os.environ.get("DLP_HUB_REPO"):
        return None
    return _from_hub(name, os.environ["DLP_HUB_REPO"], os.environ.get("DLP_HUB_REVISION"))


@functools.lru_cache(maxsize=None)
def _from_hub(name: str, repo: str, revision: str | None) -> Path | None:
    """Download folder `name` of a Hub model repo (cached, so an unreachable Hub is asked
    once per process, not on every click)."""
    from huggingface_hub import snapshot_download

    try:
        snapshot = snapshot_download(repo, revision=revision, allow_patterns=[f"{name}/*"])
    except Exception:  # offline, no such repo, no such revision: same as missing
        return None
    path = Path(snapshot) / name
    return path if (path / "model.safetensors").exists() else None


def load(model_cls, name: str, command: str, device="cpu", root=None):
    """Load checkpoint `name` into `model_cls` (a PyTorchModelHubMixin), in eval mode."""
    path = find(name, root)
    if path is None:
        raise MissingCheckpoint(name, command)
    model = model_cls.from_pretrained(str(path), map_location=str(device))
    return model.to(device).eval()


def load_metrics(name: str, root=None) -> dict:
    path = find(name, root)
    if path is None or not (path / "metrics.json").exists():
        return {}
    return json.loads((path / "metrics.json").read_text())


def save(model, name: str, metrics: dict, root=None) -> Path:
    """Write weights, config and metrics (with library versions) to <root>/<name>/."""
    path = Path(root or CHECKPOINTS) / name
    model.save_pretrained(str(path))
    (path / "README.md").unlink(missing_ok=True)  # the mixin's generic model card
    metrics = dict(metrics, versions=versions())
    (path / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    return path


def record_check(name: str, measured: dict, command: str, root=None) -> None:
    """Store in <name>/metrics.json, as "check", numbers re-measured on a fixed part of the
    test split: what the tests re-measure in a fraction of the time of the whole split."""
    path = find(name, root) / "metrics.json"
    metrics = json.loads(path.read_text())
    metrics["check"] = {**measured, "command": command}
    path.write_text(json.dumps(metrics, indent=1) + "\n")


def versions() -> dict:
    import numpy

    return {"python": platform.python_version(), "torch": torch.__version__,
            "numpy": numpy.__version__, "platform": platform.platform(),
            "cpu_threads": torch.get_num_threads()}


def command_line(module: str) -> str:
    """The command that produced a run, e.g. 'python -m train.mnist --arch cnn'."""
    return shlex.join(["python", "-m", module, *sys.argv[1:]])


def history(name: str, key: str, root=None) -> tuple[list, list]:
    """(epochs, values) of one key of a checkpoint's per-epoch history, skipping epochs
    where it was not measured."""
    rows = [h for h in load_metrics(name, root).get("history") or [] if h.get(key) is not None]
    return [h["epoch"] for h in rows], [h[key] for h in rows]
