"""Helpers every train script uses: device choice, seeding, and the resumable
training state kept in <checkpoint folder>/resume/ (git-ignored) after each epoch."""
import argparse
import json
import os
import random
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file



def add_run_arguments(parser, data: bool = True) -> None:
    """The flags every train script shares: seed, device, where checkpoints go, resuming,
    evaluating, and (for scripts that read a dataset) --limit and --data-dir."""
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    if data:
        parser.add_argument("--limit", type=int, default=0, help="use only this many images per split (smoke tests)")
        parser.add_argument("--data-dir", help="data directory (default: $DLP_DATA_DIR or data/)")
    parser.add_argument("--checkpoint-dir", help="where checkpoints are written and read (default: checkpoints/)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run (state in <checkpoint>/resume/)")
    parser.add_argument("--stop-after", type=int, help="stop after this many epochs, as if interrupted (tests)")
    parser.add_argument("--eval", action="store_true", help="re-evaluate the committed checkpoint(s) on the test split")


def parse_run_arguments(parser, argv):
    args = parser.parse_args(argv)
    if getattr(args, "limit", 0) and not args.checkpoint_dir and not args.eval:
        parser.error("--limit trains a partial model: give --checkpoint-dir so the committed one is kept")
    return args


def with_defaults(args, field: str, name: str, defaults: dict):
    """A copy of args for one model `name` (stored in args.<field>), with that model's
    defaults filled in wherever a flag was not given."""
    out = argparse.Namespace(**dict(vars(args), **{field: name}))
    for key, value in defaults[name].items():
        if getattr(out, key) is None:
            setattr(out, key, value)
    return out


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


def bf16_is_fast(device: torch.device) -> bool:
    """Whether bfloat16 autocast runs on native kernels here. CPUs without AVX-512 BF16 or
    AMX (this project's machines differ: some have it, some only AVX2) fall back to slow
    reference convolutions, 10-30x slower than float32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _flatten_optimizer(state_dict: dict) -> tuple[dict, dict]:
    """Split an optimizer state_dict into tensors (for safetensors) and JSON."""
    tensors, plain = {}, {"param_groups": state_dict["param_groups"], "state": {}}
    for param_id, param_state in state_dict["state"].items():
        plain["state"][str(param_id)] = {}
        for key, value in param_state.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{param_id}.{key}"] = value.contiguous()
            else:
                plain["state"][str(param_id)][key] = value
    return tensors, plain


def save_state(path: Path, model, optimizer, scheduler, epoch: int, history: list, config: dict) -> None:
    """Save everything --resume needs after `epoch` (1-based) finished, in folder `path`.
    `config` is the run's settings; a resume with different settings is refused."""
    path.mkdir(parents=True, exist_ok=True)
    tensors, optim_plain = _flatten_optimizer(optimizer.state_dict())
    tensors.update({f"model.{k}": v.contiguous() for k, v in model.state_dict().items()})
    plain = {"epoch": epoch, "config": config, "history": history, "optimizer": optim_plain,
             "scheduler": scheduler.state_dict() if scheduler is not None else None}
    # Write both files under temporary names, then rename: a crash mid-save leaves the
    # previous epoch's state intact. The epoch is in both so a mismatch is caught.
    save_file(tensors, str(path / "last.safetensors.tmp"), metadata={"epoch": str(epoch)})
    (path / "last.json.tmp").write_text(json.dumps(plain))
    os.replace(path / "last.safetensors.tmp", path / "last.safetensors")
    os.replace(path / "last.json.tmp", path / "last.json")


def load_state(path: Path, model, optimizer, scheduler, config: dict) -> tuple[int, list]:
    """Restore the last epoch saved in `path`; returns (epochs done, history) or (0, [])."""
    if not (path / "last.json").exists():
        return 0, []
    plain = json.loads((path / "last.json").read_text())
    if plain["config"] != config:
        changed = {k: (plain["config"].get(k), v) for k, v in config.items() if plain["config"].get(k) != v}
        raise SystemExit(f"Cannot resume {path}: the run was started with other settings "
                         f"(saved, now): {changed}. Rerun with the same flags, or without --resume.")
    with safe_open(str(path / "last.safetensors"), "pt") as f:
        if f.metadata().get("epoch") != str(plain["epoch"]):
            raise SystemExit(f"Cannot resume {path}: its weights and its state are from different epochs.")
    tensors = load_file(str(path / "last.safetensors"))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    optim_state = {"param_groups": plain["optimizer"]["param_groups"], "state": {}}
    for param_id, extra in plain["optimizer"]["state"].items():
        prefix = f"optimizer.{param_id}."
        optim_state["state"][int(param_id)] = dict(
            extra, **{k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    optimizer.load_state_dict(optim_state)
    if scheduler is not None and plain["scheduler"] is not None:
        scheduler.load_state_dict(plain["scheduler"])
    return plain["epoch"], plain["history"]


def seed_epoch(seed: int, epoch: int) -> torch.Generator:
    """Reseed the global RNG (dropout) and return a generator (shuffling, augmentation) for
    one epoch, so a resumed run continues exactly like an unbroken one."""
    torch.manual_seed(seed * 1000 + epoch)
    return torch.Generator().manual_seed(seed * 1000 + epoch)
