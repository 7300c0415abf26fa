"""Face verification: a small ConvNeXt (Liu et al., "A ConvNet for the 2020s", 2022) written
as the seed wrote its ConvNeXt-T, with batch norm instead of layer norm, layer scale and
stochastic depth, trained as an identity classifier whose pooled features, projected to an
embedding, are compared by cosine similarity; and center loss (Wen et al., "A
Discriminative Feature Learning Approach for Deep Face Recognition", 2016).

FaceNet takes normalised faces (N, 3, S, S) (see `normalize`; S = image_size) and returns
(embeddings (N, embedding_dim), logits (N, num_classes)); `embed` returns the embeddings only.

Also here: the checkpoint names, `embed` (a face and its mirror image, batched) and the
who-is-this gallery of LFW people that the train script builds and the tab searches.
"""
import json
import threading
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from PIL import Image
from torch import nn

from core import checkpoints
from core.errors import BadInput

MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)
GALLERY_MIN_PHOTOS, GALLERY_PHOTOS = 10, 10  # LFW people with >= 10 photos; 10 photos each


def checkpoint_name(center_loss: float) -> str:
    return "faces/center" if center_loss > 0 else "faces/plain"


def train_command(center_loss: float) -> str:
    return f"python -m train.faces --center-loss {center_loss:g}"


def normalize(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, S, S) -> float, about zero mean and unit spread."""
    mean = torch.tensor(MEAN, device=images_uint8.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=images_uint8.device).view(1, 3, 1, 1)
    return (images_uint8.float() / 255 - mean) / std


class DropPath(nn.Module):
    """Stochastic depth: during training, drop a sample's whole residual branch with
    probability p (and scale the kept ones by 1 / (1 - p))."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        keep = torch.rand(x.shape[0], 1, 1, 1, device=x.device) >= self.p
        return x * keep.to(x.dtype) / (1 - self.p)


class ConvNeXtBlock(nn.Module):
    """7x7 depthwise conv -> norm -> 1x1 conv to 4x width -> GELU -> 1x1 conv back, scaled
    per channel by a learned layer scale (initialised small, so each block starts close to
    the identity), then dropped by stochastic depth and added to the input."""

    def __init__(self, dim: int, drop_path: float = 0.0, layer_scale: float = 1e-6):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.BatchNorm2d(dim)  # the seed's choice: batch norm, not ConvNeXt's layer norm
        self.pwconv1 = nn.Conv2d(dim, 4 * dim, 1)  # the inverted bottleneck: (N, 4C, H, W)
        self.act = nn.GELU()
        self.pwconv2 = nn.Conv2d(4 * dim, dim, 1)
        self.gamma = nn.Parameter(torch.full((dim, 1, 1), layer_scale))
        self.drop_path = DropPath(drop_path)

    def forward(self, x):
        y = self.pwconv2(self.act(self.pwconv1(self.norm(self.dwconv(x)))))
        return x + self.drop_path(self.gamma * y)


class FaceNet(nn.Module, PyTorchModelHubMixin):
    """A ConvNeXt for small faces: a 2x2 stride-2 stem, four stages of blocks with a norm
    and a 2x2 stride-2 conv between them, global average pooling, then an embedding layer
    (linear + batch norm) and a linear classifier over the training identities."""

    def __init__(self, num_classes: int = 453, dims=(32, 64, 128, 256), depths=(1, 1, 3, 1),
                 embedding_dim: int = 128, drop_path: float = 0.1, image_size: int = 64):
        super().__init__()
        self.image_size, self.embedding_dim = image_size, embedding_dim
        rates = torch.linspace(0, drop_path, sum(depths)).tolist()  # deeper blocks dropped more often
        layers, k = [nn.Conv2d(3, dims[0], 2, stride=2), nn.BatchNorm2d(dims[0])], 0  # (N, C0, S/2, S/2)
        for i, (dim, depth) in enumerate(zip(dims, depths)):
            if i > 0:  # halve the resolution, widen: (N, C_i, H/2, W/2)
                layers += [nn.BatchNorm2d(dims[i - 1]), nn.Conv2d(dims[i - 1], dim, 2, stride=2)]
            layers += [ConvNeXtBlock(dim, rates[k + j]) for j in range(depth)]
            k += depth
        self.features = nn.Sequential(*layers)
        self.norm = nn.BatchNorm1d(dims[-1])
        self.embedding = nn.Sequential(nn.Linear(dims[-1], embedding_dim, bias=False), nn.BatchNorm1d(embedding_dim))
        self.classifier = nn.Linear(embedding_dim, num_classes)
        self.apply(_init)

    def embed(self, x):
        pooled = self.norm(self.features(x).mean(dim=(2, 3)))  # (N, C_last)
        return self.embedding(pooled)  # (N, embedding_dim)

    def forward(self, x):
        e = self.embed(x)
        return e, self.classifier(e)


def _init(m):
    # ConvNeXt's initialisation: truncated normal (std 0.02) weights, zero biases.
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


class CenterLoss(nn.Module):
    """Half the mean squared distance of each feature to its class's learnable centre.
    Its gradient pulls features toward their centre; the centres move toward their
    features through their own optimiser (see `center_optimizer`)."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.centers = nn.Parameter(torch.zeros(num_classes, dim))  # Wen et al. start every centre at 0

    def forward(self, features, labels):
        return 0.5 * (features - self.centers[labels]).pow(2).sum(dim=1).mean()


def center_optimizer(center_loss: CenterLoss, lr: float = 0.5):
    """Plain SGD with lr 0.5 (Wen et al.'s alpha) for the centres. The training loop
    divides the centres' gradient by the loss weight before stepping, so the centres move
    at this rate whatever weight the loss has in the total."""
    return torch.optim.SGD(center_loss.parameters(), lr=lr)


def cosine_similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine similarity of two (N, D) embeddings: (N,) in [-1, 1]."""
    return (F.normalize(a.float(), dim=1) * F.normalize(b.float(), dim=1)).sum(dim=1)


# ---- using a trained model ----------------------------------------------------------------------

def load_facenet(center_loss: float, device="cpu", root=None) -> FaceNet:
    """The model trained with this center-loss weight (checkpoints/faces/..., or under `root`)."""
    return checkpoints.load(FaceNet, checkpoint_name(center_loss), train_command(center_loss), device, root=root)


def to_tensor(pictures: list[Image.Image], size: int) -> torch.Tensor:
    """RGB face crops -> uint8 (N, 3, size, size), each resized (bicubic) as data.lfw_faces
    resizes LFW's."""
    pixels = np.stack([np.asarray(p.resize((size, size), Image.Resampling.BICUBIC)) for p in pictures])
    return torch.from_numpy(pixels).permute(0, 3, 1, 2)


@torch.no_grad()
def embed(model, faces_uint8: torch.Tensor, device, batch_size: int = 256, flip: bool = True) -> torch.Tensor:
    """Embeddings (N, D) of uint8 faces; with flip, the sum of each face's and its mirror's."""
    model.eval()
    out = []
    for i in range(0, len(faces_uint8), batch_size):
        x = normalize(faces_uint8[i:i + batch_size].to(device))
        e = model.embed(x)
        if flip:
            e = F.normalize(e, dim=1) + F.normalize(model.embed(x.flip(3)), dim=1)
        out.append(e.float().cpu())
    return torch.cat(out) if out else torch.zeros(0, model.embedding_dim)


def build_gallery(model, images: Path, device="cpu") -> dict:
    """The tab's who-is-this gallery: for each LFW person with at least GALLERY_MIN_PHOTOS
    photos, the mean unit embedding of their first GALLERY_PHOTOS. Saved beside the weights
    so that the first search does not wait for 1,600 photos to be embedded."""
    names, portraits, faces = [], [], []
    for person in sorted(p for p in images.iterdir() if p.is_dir()):
        photos = sorted(person.glob("*.jpg"))
        if len(photos) < GALLERY_MIN_PHOTOS:
            continue
        names.append(person.name)
        portraits.append(f"{person.name}/{photos[0].name}")
        faces.append(to_tensor([Image.open(p).convert("RGB") for p in photos[:GALLERY_PHOTOS]], model.image_size))
    e = F.normalize(embed(model, torch.cat(faces), device), dim=1).view(len(names), GALLERY_PHOTOS, -1)
    return {"names": names, "portraits": portraits, "means": F.normalize(e.mean(1), dim=1)}


def save_gallery(path: Path, gallery: dict) -> None:
    from safetensors.torch import save_file

    save_file({"means": gallery["means"].contiguous()}, str(path / "gallery.safetensors"),
              metadata={"names": json.dumps(gallery["names"]), "portraits": json.dumps(gallery["portraits"])})


def load_gallery(path: Path) -> dict | None:
    """The gallery saved beside a checkpoint's weights, or None when there is none."""
    from safetensors import safe_open

    if not (path / "gallery.safetensors").exists():
        return None
    with safe_open(str(path / "gallery.safetensors"), "pt") as f:
        meta = f.metadata()
        return {"names": json.loads(meta["names"]), "portraits": json.loads(meta["portraits"]),
                "means": f.get_tensor("means")}


# ---- finding a face in a photo -----------------------------------------------------------------
# The LFW crops (centre 150 of the 250 px deep-funneled photos) are 1.37x as wide as the
# box OpenCV's frontal-face cascade puts round their face (82 px of 112, measured on 221).
CROP_SCALE = 112 / 82
DETECT_SIDE = 800  # detection runs on a copy whose longer side is at most this

_per_thread = threading.local()
_cv2_import = threading.Lock()


def _cascade():
    """One classifier per thread: OpenCV's CascadeClassifier is not safe to share between
    Gradio's worker threads (concurrent calls fail with a getScaleData assertion or crash).
    The lock: threads importing cv2 at once can see it half-initialised (no cv2.data yet)."""
    if not hasattr(_per_thread, "cascade"):
        with _cv2_import:
            import cv2

            _per_thread.cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    return _per_thread.cascade


class NoFace(BadInput):
    """No face was found in a photo: no verdict, no names."""


def find_face(photo: Image.Image, what: str = "photo") -> tuple[Image.Image, str]:
    """The face crop (square, framed like LFW's, 112x112) and a note: empty, or which face
    was used when there were several. Raises NoFace (a BadInput naming `what`) when there is none."""
    scale = min(1.0, DETECT_SIDE / max(photo.size))
    small = photo.resize((round(photo.width * scale), round(photo.height * scale))) if scale < 1 else photo
    grey = np.asarray(small.convert("L"))
    side = max(24, min(grey.shape) // 10)
    boxes = _cascade().detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(side, side))
    if len(boxes) == 0:
        raise NoFace(f"No face found in the {what}, so there is no answer. Try a photo where one face looks at "
                     "the camera and fills a good part of the picture.")
    x, y, w, h = (v / scale for v in max(boxes, key=lambda b: b[2] * b[3]))
    s = min(w * CROP_SCALE, *photo.size)
    left = min(max(x + w / 2 - s / 2, 0), photo.width - s)  # shift the crop inside the photo
    top = min(max(y + h / 2 - s / 2, 0), photo.height - s)
    note = f"{len(boxes)} faces found: used the largest." if len(boxes) > 1 else ""
    crop = photo.crop((round(left), round(top), round(left + s), round(top + s)))
    return crop.resize((112, 112), Image.Resampling.BICUBIC), note
