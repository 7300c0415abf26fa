"""Datasets for every train script and test.

On a normal machine the data is downloaded (through torchvision or the dataset's own
source) into the data directory: `--data-dir`, else $DLP_DATA_DIR, else `data/` in the
repo. With $DLP_DATA_MIRROR set (an offline copy laid out like `../shared/data`), it is
read from there instead and nothing is downloaded.
"""
import fcntl
import gzip
import os
import threading
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def data_dir(override=None) -> Path:
    return Path(override or os.environ.get("DLP_DATA_DIR") or REPO / "data")


def mirror_dir() -> Path | None:
    path = os.environ.get("DLP_DATA_MIRROR")
    return Path(path) if path else None


def _write_atomically(path: Path, write) -> None:
    """`write(scratch_path)`, then move the file into place: a process that reads `path`
    (another test worker, an app started meanwhile) sees all of it or none, never half."""
    scratch = path.with_name(f".{os.getpid()}-{threading.get_ident()}-{path.name}")
    try:
        write(scratch)
        os.replace(scratch, path)
    finally:
        scratch.unlink(missing_ok=True)


def _save_npz(path: Path, **arrays) -> None:
    _write_atomically(path, lambda scratch: np.savez(scratch, **arrays))  # the name ends in .npz: kept as is


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


_unpack_lock = threading.Lock()


def _unpack(tarball: Path, dest: Path, marker: str) -> Path:
    """Unpack a mirrored tarball into the data directory once; returns dest. The members go
    to a scratch folder first and are moved in after, so another process never sees half."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    # threads of one app, and other processes (test workers): the first unpacks, the others wait
    with _unpack_lock, open(dest.parent / f".{dest.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (dest / marker).exists():
            import shutil
            import tarfile
            import tempfile

            dest.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{dest.name}-") as scratch:
                with tarfile.open(tarball) as tar:
                    tar.extractall(scratch, filter="data")
                for entry in sorted(Path(scratch).iterdir(), key=lambda e: e.name == marker):  # the marker last
                    if not (dest / entry.name).exists():
                        shutil.move(str(entry), str(dest / entry.name))
    return dest


def lfw_dir(root=None) -> Path:
    """LFW deep-funneled faces as `images/<Person_Name>/<Person_Name>_NNNN.jpg`, 112x112
    (the centre 150x150 of the 250x250 originals). Pair lists sit beside `images/`."""
    dest = data_dir(root) / "lfw"
    mirror = mirror_dir()
    if mirror is not None:
        _unpack(mirror / "lfw" / "lfw-deepfunneled-112.tar.gz", dest, "images")
        for name in ("pairs.txt", "pairsDevTrain.txt", "pairsDevTest.txt"):
            if not (dest / name).exists():
                _write_atomically(dest / name, lambda scratch: scratch.write_bytes((mirror / "lfw" / name).read_bytes()))
        return dest
    if not (dest / "images").exists():
        _download_lfw(dest)
    return dest


def _download_lfw(dest: Path) -> None:
    """Download LFW through torchvision and crop it like the mirror (centre 150, 112 px)."""
    import torchvision
    from PIL import Image

    people = torchvision.datasets.LFWPeople(str(dest / "download"), image_set="deepfunneled", download=True)
    for path in sorted(Path(people.root, people.base_folder, people.images_dir).glob("*/*.jpg")):
        out = dest / "images" / path.parent.name / path.name
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.open(path).convert("RGB").crop((50, 50, 200, 200)).resize((112, 112), Image.Resampling.BICUBIC).save(out, quality=95)
    for name in ("pairs.txt", "pairsDevTrain.txt", "pairsDevTest.txt"):
        torchvision.datasets.utils.download_url(f"http://vis-www.cs.umass.edu/lfw/{name}", str(dest))


def lfw_faces(size: int = 64, root=None) -> torch.Tensor:
    """All 13,233 LFW faces as one (N, 3, size, size) uint8 tensor, cached as .npy."""
    from PIL import Image

    base = lfw_dir(root)
    cache = base / f"faces_{size}.npy"
    if cache.exists():
        return torch.from_numpy(np.load(cache))
    paths = sorted((base / "images").glob("*/*.jpg"))
    faces = np.stack([np.asarray(Image.open(p).convert("RGB").resize((size, size), Image.Resampling.BICUBIC))
                      for p in paths]).transpose(0, 3, 1, 2)
    np.save(cache, faces)
    return torch.from_numpy(faces)


CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def cifar10(split: str = "train", root=None):
    """CIFAR-10 as tensors: images (N, 3, 32, 32) uint8, labels (N,) int64; cached as .npz.

    The offline mirror holds a JPEG copy (quality about 75, no lossless copy was reachable),
    so numbers measured on it run a little below those on the original images. Downloads
    take the official binary version (plain bytes, nothing unpickled).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    dest = data_dir(root) / "cifar10"
    cache = dest / f"{split}.npz"
    if not cache.exists():
        mirror = mirror_dir()
        images, labels = (_cifar10_from_jpeg(_unpack(mirror / "cifar10" / "cifar10-jpg.tar.gz", dest, "test"), split)
                          if mirror is not None else _cifar10_download(dest, split))
        _save_npz(cache, images=images, labels=labels)
    with np.load(cache) as f:
        return torch.from_numpy(f["images"]), torch.from_numpy(f["labels"].astype(np.int64))


def _cifar10_from_jpeg(base: Path, split: str):
    from PIL import Image

    images, labels = [], []
    for label, name in enumerate(CIFAR10_CLASSES):
        for path in sorted((base / split / name).glob("*.jpg")):
            images.append(np.asarray(Image.open(path).convert("RGB")))
            labels.append(label)
    return np.stack(images).transpose(0, 3, 1, 2).copy(), np.array(labels, dtype=np.uint8)


def _cifar10_download(dest: Path, split: str):
    from torchvision.datasets.utils import download_and_extract_archive

    folder = dest / "cifar-10-batches-bin"
    if not folder.exists():
        try:
            download_and_extract_archive("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz", str(dest),
                                         md5="c32a1d4ab5d03f1284b67883e8d87530")
        except Exception as e:
            raise RuntimeError(f"Could not download CIFAR-10 into {dest}. Offline? Point DLP_DATA_MIRROR "
                               "at a copy laid out like ../shared/data.") from e
    files = [f"data_batch_{i}.bin" for i in range(1, 6)] if split == "train" else ["test_batch.bin"]
    records = np.concatenate([np.fromfile(folder / f, dtype=np.uint8).reshape(-1, 3073) for f in files])
    return records[:, 1:].reshape(-1, 3, 32, 32).copy(), records[:, 0].copy()


def hymenoptera(split: str = "train", size: int = 72, root=None):
    """The ants-vs-bees set: images (N, 3, size, size) uint8 (shorter side scaled to
    `size`, centre square) and labels (N,) int64 (0 ants, 1 bees); split "train" (245)
    or "val" (153). Cached as .npz."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', not {split!r}")
    from PIL import Image

    dest = data_dir(root) / "hymenoptera"
    cache = dest / f"{split}_{size}.npz"
    if not cache.exists():
        mirror = mirror_dir()
        if mirror is not None:
            _unpack(mirror / "hymenoptera" / "hymenoptera_data.tar.gz", dest, "hymenoptera_data")
        elif not (dest / "hymenoptera_data").exists():
            from torchvision.datasets.utils import download_and_extract_archive

            download_and_extract_archive("https://download.pytorch.org/tutorial/hymenoptera_data.zip", str(dest))
        images, labels = [], []
        for label, name in enumerate(("ants", "bees")):
            for path in sorted((dest / "hymenoptera_data" / split / name).glob("*.jpg")):
                images.append(np.asarray(square(Image.open(path).convert("RGB"), size)))
                labels.append(label)
        _save_npz(cache, images=np.stack(images).transpose(0, 3, 1, 2), labels=np.array(labels))
    with np.load(cache) as f:
        return torch.from_numpy(f["images"]), torch.from_numpy(f["labels"].astype(np.int64))


def square(image, size: int):
    """A PIL image's centre square, resized to size x size."""
    from PIL import Image

    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    return image.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.LANCZOS)


FSDD_SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
FSDD_URL = "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/v1.0.10.tar.gz"


def fsdd(root=None, download: bool = True):
    """The Free Spoken Digit Dataset: 3,000 recordings of one spoken digit each (8 kHz mono,
    16 bit), 50 of every digit by each of FSDD_SPEAKERS. Returns (waves: list of int16
    arrays, digits (N,) int64, speakers (N,) str, takes (N,) int64) in file-name order,
    cached as one .npz (every recording end to end, and where each starts). With
    download=False a missing copy raises FileNotFoundError instead of being fetched."""
    dest = data_dir(root) / "fsdd"
    cache = dest / "recordings.npz"
    if not cache.exists():
        mirror = mirror_dir()
        if mirror is not None:
            folder = mirror / "fsdd" / "recordings"
        elif download or (dest / "recordings").exists():
            folder = _fsdd_download(dest)
        else:
            raise FileNotFoundError(f"No FSDD recordings in {dest} (and DLP_DATA_MIRROR is not set).")
        paths = sorted(folder.glob("*.wav"))
        if len(paths) != 3000:
            raise RuntimeError(f"Expected the 3,000 FSDD recordings in {folder}, found {len(paths)}.")
        waves = [_read_wav16(path) for path in paths]
        digit, speaker, take = zip(*(path.stem.split("_") for path in paths))
        dest.mkdir(parents=True, exist_ok=True)
        _save_npz(cache, samples=np.concatenate(waves), starts=np.cumsum([0] + [len(w) for w in waves]),
                 digits=np.array(digit, dtype=np.int64), speakers=np.array(speaker),
                 takes=np.array(take, dtype=np.int64))
    with np.load(cache, allow_pickle=False) as f:
        samples, starts = f["samples"], f["starts"]
        waves = [samples[a:b] for a, b in zip(starts[:-1], starts[1:])]
        return waves, f["digits"], f["speakers"], f["takes"]


def _read_wav16(path: Path) -> np.ndarray:
    """The samples of a mono 16-bit 8 kHz WAV file (the format every FSDD recording has)."""
    import wave

    with wave.open(str(path), "rb") as w:
        if (w.getsampwidth(), w.getnchannels(), w.getframerate()) != (2, 1, 8000):
            raise ValueError(f"{path} is not mono 16-bit 8 kHz audio")
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)


def _fsdd_download(dest: Path) -> Path:
    """Download the tagged FSDD release from its GitHub repository and keep its recordings/."""
    import shutil
    import tarfile
    import urllib.request

    folder = dest / "recordings"
    if folder.exists() and len(list(folder.glob("*.wav"))) == 3000:
        return folder
    dest.mkdir(parents=True, exist_ok=True)
    tarball = dest / "fsdd.tar.gz"
    try:
        with urllib.request.urlopen(FSDD_URL, timeout=60) as response, tarball.open("wb") as out:
            shutil.copyfileobj(response, out)
    except OSError as e:
        raise RuntimeError(f"Could not download FSDD into {dest}. Offline? Point DLP_DATA_MIRROR at a copy laid "
                           "out like ../shared/data.") from e
    folder.mkdir(exist_ok=True)
    with tarfile.open(tarball) as tar:
        for member in tar.getmembers():
            parts = Path(member.name).parts
            if member.isfile() and len(parts) == 3 and parts[1] == "recordings" and member.name.endswith(".wav"):
                member.name = parts[2]
                tar.extract(member, folder, filter="data")
    tarball.unlink()
    return folder


THUCNEWS_CLASSES = ("finance", "realty", "stocks", "education", "science", "society", "politics", "sports", "game",
                    "entertainment")
THUCNEWS_CLASSES_ZH = ("财经", "房产", "股票", "教育", "科技", "社会", "时政", "体育", "游戏", "娱乐")
THUCNEWS_URL = "https://raw.githubusercontent.com/649453932/Chinese-Text-Classification-Pytorch/master/THUCNews/data/"


def thucnews(split: str = "train", root=None) -> tuple[list[str], torch.Tensor]:
    """THUCNews headlines: (titles, labels (N,) int64 in THUCNEWS_CLASSES order).
    Splits: train (44,816), val (9,991), test (10,000)."""
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test', not {split!r}")
    mirror = mirror_dir()
    path = mirror / "thucnews-titles" / f"{split}.tsv" if mirror is not None else _thucnews_download(split, root)
    titles, labels = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        label, title = line.split("\t", 1)
        titles.append(title)
        labels.append(THUCNEWS_CLASSES.index(label))
    return titles, torch.tensor(labels)


def _thucnews_download(split: str, root=None) -> Path:
    """Rebuild the mirror's files from the public reference repo: its dev and test files,
    and the first 45,000 lines of its train file without duplicates or titles in val/test."""
    import urllib.request

    dest = data_dir(root) / "thucnews-titles"
    if not (dest / "train.tsv").exists():
        dest.mkdir(parents=True, exist_ok=True)
        raw = {}
        for name in ("train", "dev", "test"):
            try:
                with urllib.request.urlopen(THUCNEWS_URL + f"{name}.txt", timeout=60) as f:
                    raw[name] = [line.rsplit("\t", 1) for line in f.read().decode("utf-8").splitlines() if "\t" in line]
            except OSError as e:
                raise RuntimeError("Could not download the THUCNews titles. Offline? Point DLP_DATA_MIRROR at a "
                                   "copy laid out like ../shared/data.") from e
        test_titles = {t for t, _ in raw["test"]}
        val = [(t, y) for t, y in raw["dev"] if t not in test_titles]
        held_out, seen, train = test_titles | {t for t, _ in val}, set(), []
        for t, y in raw["train"][:45000]:
            if t not in held_out and t not in seen:
                seen.add(t)
                train.append((t, y))
        for name, rows in (("train", train), ("val", val), ("test", raw["test"])):
            text = "".join(f"{THUCNEWS_CLASSES[int(y)]}\t{t}\n" for t, y in rows)
            _write_atomically(dest / f"{name}.tsv", lambda scratch: scratch.write_text(text, encoding="utf-8"))
    return dest / f"{split}.tsv"


MULTI30K_URL = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/"
MULTI30K_FILES = {"train": "train", "val": "val", "test": "test_2016_flickr"}


def multi30k(split: str = "train", root=None) -> tuple[list[str], list[str]]:
    """Multi30K task 1 (Elliott et al. 2016), raw cased text: (english, german), one
    image caption and its translation per item. Splits: train (29,000), val (1,014),
    test (test_2016_flickr, 1,000)."""
    if split not in MULTI30K_FILES:
        raise ValueError(f"split must be one of {list(MULTI30K_FILES)}, not {split!r}")
    mirror = mirror_dir()
    folder = mirror / "multi30k" if mirror is not None else _multi30k_download(split, root)
    english, german = (_read_lines(folder / f"{MULTI30K_FILES[split]}.{lang}.gz") for lang in ("en", "de"))
    if len(english) != len(german):
        raise RuntimeError(f"Multi30K {split}: {len(english)} English lines but {len(german)} German ones")
    return english, german


def _read_lines(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [line.rstrip("\n").strip() for line in f]


def _multi30k_download(split: str, root=None) -> Path:
    """Fetch the split's two gzipped files from the dataset's public repository, once."""
    import urllib.request

    dest = data_dir(root) / "multi30k"
    dest.mkdir(parents=True, exist_ok=True)
    for lang in ("en", "de"):
        name = f"{MULTI30K_FILES[split]}.{lang}.gz"
        if not (dest / name).exists():
            try:
                with urllib.request.urlopen(MULTI30K_URL + name, timeout=60) as f:
                    raw = f.read()
            except OSError as e:
                raise RuntimeError("Could not download Multi30K. Offline? Point DLP_DATA_MIRROR at a copy laid "
                                   "out like ../shared/data.") from e
            (dest / f"{name}.tmp").write_bytes(raw)
            os.replace(dest / f"{name}.tmp", dest / name)
    return dest


FACE_MASK_KAGGLE = "andrewmvd/face-mask-detection"


def face_mask_dir(root=None, download: bool = True) -> Path:
    """The Kaggle face-mask set (853 photos, Pascal VOC boxes of with_mask, without_mask and
    mask_weared_incorrect): a folder with images/ and annotations/. Kaggle needs an account,
    so the download goes through the `kaggle` client and its API token (~/.kaggle/kaggle.json).
    With download=False a missing copy raises FileNotFoundError."""
    mirror = mirror_dir()
    if mirror is not None:
        return mirror / "face-mask"
    dest = data_dir(root) / "face-mask"
    if (dest / "annotations").exists():
        return dest
    how = (f"Kaggle allows downloads only with an account: download {FACE_MASK_KAGGLE} from "
           f"https://www.kaggle.com/datasets/{FACE_MASK_KAGGLE} and unpack its images/ and annotations/ "
           f"into {dest}, or `pip install kaggle` with an API token in ~/.kaggle/kaggle.json, or point "
           "DLP_DATA_MIRROR at a copy laid out like ../shared/data.")
    if not download:
        raise FileNotFoundError(f"No face-mask data in {dest}. {how}")
    try:
        import kaggle  # reads the API token when imported, and raises without one

        kaggle.api.dataset_download_files(FACE_MASK_KAGGLE, path=str(dest), unzip=True)
    except Exception as e:
        raise RuntimeError(f"Could not download the face-mask set. {how}") from e
    return dest
