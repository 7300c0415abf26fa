"""Datasets for every train script and test.

On a normal machine the data is downloaded (through torchvision or the dataset's own
source) into the data directory: `--data-dir`, else $DLP_DATA_DIR, else `data/` in the
repo. With $DLP_DATA_MIRROR set (an offline copy laid out like `../shared/data`), it is
read from there instead and nothing is downloaded.
"""
import gzip
import os
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def data_dir(override=None) -> Path:
    return Path(override or os.environ.get("DLP_DATA_DIR") or REPO / "data")


def mirror_dir() -> Path | None:
    path = os.environ.get("DLP_DATA_MIRROR")
    return Path(path) if path else None


def _read_idx(path: Path) -> np.ndarray:
    """Read one gzipped IDX file (the format MNIST and Fashion-MNIST ship in)."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def mnist(split: str = "train", name: str = "MNIST", root=None):
    """MNIST or Fashion-MNIST as tensors: images (N, 28, 28) uint8, labels (N,) int64.

    `split` is "train" (60,000) or "test" (10,000); `name` is "MNIST" or "FashionMNIST".
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    prefix = "train" if split == "train" else "t10k"
    mirror = mirror_dir()
    if mirror is not None:
        raw = mirror / name / "raw"
        images = _read_idx(raw / f"{prefix}-images-idx3-ubyte.gz")
        labels = _read_idx(raw / f"{prefix}-labels-idx1-ubyte.gz")
        return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))
    import torchvision

    dataset_cls = getattr(torchvision.datasets, name)
    try:
        ds = dataset_cls(str(data_dir(root)), train=split == "train", download=True)
    except RuntimeError as e:
        raise RuntimeError(f"Could not download {name} into {data_dir(root)}. Offline? Point "
                           "DLP_DATA_MIRROR at a copy laid out like ../shared/data.") from e
    return ds.data.clone(), ds.targets.clone().long()
