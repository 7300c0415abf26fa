"""pix2pix (Isola et al. 2017) for 64x64 faces: a U-Net generator that turns one picture into
another, trained with L1 to the target plus a PatchGAN discriminator that judges (input,
output) pairs patch by patch. Two tasks, each its own network:

- sketch_to_face: a line drawing -> the face photo. Training sketches are Canny edges of the
  LFW faces, made to look like what a person draws with a mouse (thicker or thinner lines,
  a shaky hand, lines left out, little background); a user's drawing is read the same way.
- grey_to_colour: a grey picture -> its colours. A big photo is coloured at the network's
  size and its colour laid over the photo's own full-size brightness.

Pictures are (N, C, 64, 64) in [-1, 1]; sketches are ink (1 on a line, 0 on paper) scaled
to [-1, 1] the same way.
"""
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from PIL import Image, ImageOps
from torch import nn

from core import checkpoints
from models.style_transfer import keep_colours

SIZE = 64
SKETCH_SIDE = 112  # sketches are drawn from LFW's 112-px faces, then shrunk to SIZE
MASK = "mask"  # the CycleGAN's checkpoint: its two generators put a mask on and take it off
INK_THRESHOLD = 0.25  # darker than this (after shrinking to 112 px) is a line; the faint guide is not


class Task(NamedTuple):
    label: str
    in_channels: int
    out_channels: int


TASKS = {
    "sketch_to_face": Task("Sketch -> face", 1, 3),
    "grey_to_colour": Task("Grey -> colour", 1, 3),
}


def checkpoint_name(task: str) -> str:
    return f"image_to_image/{task}"


def train_command(task: str) -> str:
    return "python -m train.cyclegan" if task == MASK else f"python -m train.image_to_image --task {task}"


# ---- the networks -------------------------------------------------------------------------------

def down(cin: int, cout: int, norm: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, 4, 2, 1, bias=not norm)]
    if norm:
        layers.append(nn.BatchNorm2d(cout))
    return nn.Sequential(*layers, nn.LeakyReLU(0.2))


def up(cin: int, cout: int, dropout: bool) -> nn.Sequential:
    layers = [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout)]
    if dropout:
        layers.append(nn.Dropout(0.5))
    return nn.Sequential(*layers, nn.ReLU())


class UNet(nn.Module, PyTorchModelHubMixin):
    """pix2pix's generator: 64 -> 1 px in six halvings (each C channels, doubling up to
    8 * width), then back up, each step taking the encoder's output of its size too (the
    skips carry where the lines are; the bottleneck what a face looks like). Dropout in the
    three deepest up-steps, as in the paper."""

    def __init__(self, in_channels: int = 1, out_channels: int = 3, width: int = 32, depth: int = 6):
        super().__init__()
        widths = [min(width * 2 ** i, width * 8) for i in range(depth)]  # 32, 64, 128, 256, 256, 256
        self.downs = nn.ModuleList([down(in_channels, widths[0], norm=False)] +
                                   [down(widths[i - 1], widths[i], norm=i < depth - 1) for i in range(1, depth)])
        self.ups = nn.ModuleList()
        for i in reversed(range(1, depth)):  # up from size 1 to 32, each step joined by the skip
            cin = widths[i] if i == depth - 1 else 2 * widths[i]
            self.ups.append(up(cin, widths[i - 1], dropout=i >= depth - 3))
        self.out = nn.Sequential(nn.ConvTranspose2d(2 * widths[0], out_channels, 4, 2, 1), nn.Tanh())

    def forward(self, x):  # (N, in, H, W), H and W multiples of 64 -> (N, out, H, W) in [-1, 1]
        skips = []
        for layer in self.downs:
            x = layer(x)
            skips.append(x)
        skips.pop()  # the bottleneck itself
        for layer in self.ups:
            x = torch.cat([layer(x), skips.pop()], 1)
        return self.out(x)


class PatchDiscriminator(nn.Module):
    """Real or fake for overlapping patches of an (input, output) pair: (N, 1, 6, 6) logits at
    64 px. pix2pix's 70x70 PatchGAN, layer for layer: each logit sees 70x70 pixels, so on a
    64-px face it judges the whole picture, from 36 slightly shifted views (what the paper
    calls an ImageGAN at its own 256 px, a little behind the 70x70 patches there)."""

    def __init__(self, in_channels: int = 4, width: int = 64):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, width, 4, 2, 1), nn.LeakyReLU(0.2),  # 32
            nn.Conv2d(width, 2 * width, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * width), nn.LeakyReLU(0.2),  # 16
            nn.Conv2d(2 * width, 4 * width, 4, 2, 1, bias=False), nn.BatchNorm2d(4 * width), nn.LeakyReLU(0.2),  # 8
            nn.Conv2d(4 * width, 8 * width, 4, 1, 1, bias=False), nn.BatchNorm2d(8 * width), nn.LeakyReLU(0.2),  # 7
            nn.Conv2d(8 * width, 1, 4, 1, 1))  # 6

    def forward(self, source, picture):
        return self.net(torch.cat([source, picture], 1))


def init_weights(module):
    """N(0, 0.02) convolutions, N(1, 0.02) norm scales: the paper's initialisation."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def load(task: str, device="cpu", root=None) -> UNet:
    return checkpoints.load(UNet, checkpoint_name(task), train_command(task), device, root=root)


# ---- sketches -----------------------------------------------------------------------------------

def edges(faces_uint8: torch.Tensor, sigma: float = 2.0) -> torch.Tensor:
    """Canny edges of (N, 3, H, W) uint8 faces: (N, 1, H, W) float ink, 1 on an edge."""
    from skimage.feature import canny

    grey = faces_uint8.float().mean(1).numpy() / 255
    return torch.from_numpy(np.stack([canny(g, sigma=sigma) for g in grey]).astype(np.float32))[:, None]


def like_a_drawing(ink: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Edge maps (N, 1, SKETCH_SIDE, SKETCH_SIDE) made to look drawn by hand: a line 1 or 3 px
    thick, a hand that shakes a little (a small random warp), lines left out (random patches
    wiped), less of the background (a random oval kept); then shrunk to SIZE."""
    n = len(ink)
    thick = torch.rand(n, 1, 1, 1, generator=g) < 0.5
    x = torch.where(thick, F.max_pool2d(ink, 3, 1, 1), ink)
    # a shaky hand: a smooth random displacement of a few pixels
    shake = F.interpolate(torch.randn(n, 2, 4, 4, generator=g) * 0.02, size=x.shape[-2:], mode="bicubic",
                          align_corners=False).permute(0, 2, 3, 1)
    theta = torch.eye(2, 3).expand(n, 2, 3) + torch.randn(n, 2, 3, generator=g) * torch.tensor([[0.03, 0.03, 0.03]])
    grid = F.affine_grid(theta, x.shape, align_corners=False) + shake
    x = F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")
    # lines left out: wipe about a tenth of 16x16 patches
    keep = (torch.rand(n, 1, x.shape[2] // 16, x.shape[3] // 16, generator=g) > 0.1).float()
    x = x * F.interpolate(keep, size=x.shape[-2:], mode="nearest")
    # background: half the time only what lies inside an oval round the face
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, x.shape[2]), torch.linspace(-1, 1, x.shape[3]), indexing="ij")
    radius = 0.75 + 0.35 * torch.rand(n, 1, 1, 1, generator=g)
    oval = ((xs / 0.85) ** 2 + (ys / 1.0) ** 2 <= radius ** 2).float()
    use_oval = (torch.rand(n, 1, 1, 1, generator=g) < 0.5).float()
    x = x * (use_oval * oval + (1 - use_oval))
    return shrink(x)


def shrink(ink: torch.Tensor) -> torch.Tensor:
    """Ink at SKETCH_SIDE -> SIZE, keeping thin lines visible (area average, then brightened)."""
    return (F.interpolate(ink, size=(SIZE, SIZE), mode="area") * 2).clamp(0, 1)


def read_drawing(image) -> torch.Tensor:
    """A drawing (a Sketchpad's RGBA, or any picture: dark lines on light paper, or lines on a
    transparent layer) -> (1, 1, SIZE, SIZE) ink, as the training sketches. The picture is
    squared on white paper first, and its strokes thinned to 1 px and drawn again 3 px wide:
    the same lines whatever brush drew them. Raises ValueError for an empty one."""
    from skimage.morphology import skeletonize

    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        paper = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(paper, image.convert("RGBA"))
    grey = image.convert("L")
    side = max(grey.size)
    square = Image.new("L", (side, side), 255)
    square.paste(grey, ((side - grey.width) // 2, (side - grey.height) // 2))
    square = square.resize((SKETCH_SIDE, SKETCH_SIDE), Image.Resampling.BOX)
    ink = 1 - np.asarray(square, dtype=np.float32) / 255 >= INK_THRESHOLD
    if not ink.any():
        raise ValueError("empty drawing")
    lines = torch.from_numpy(skeletonize(ink).astype(np.float32))[None, None]
    return shrink(F.max_pool2d(lines, 3, 1, 1))


# ---- colour -------------------------------------------------------------------------------------

LUMA = torch.tensor([0.299, 0.587, 0.114])


def grey(pictures: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) in [-1, 1] -> (N, 1, H, W) brightness in [-1, 1]."""
    return torch.einsum("c,nchw->nhw", LUMA.to(pictures), pictures)[:, None]


def with_brightness(colour: torch.Tensor, brightness: torch.Tensor) -> torch.Tensor:
    """The colour picture's chroma (upsampled to brightness's size) on the given brightness,
    both in [0, 1]: (1, 3, h, w), (1, 1, H, W) -> (1, 3, H, W). A coloured 64-px face laid on
    a 600-px photo keeps the photo's sharpness. (Style transfer's keep_colours, the other way
    round: brightness from the grey picture, colour from the network's.)"""
    colour = F.interpolate(colour, size=brightness.shape[-2:], mode="bilinear", align_corners=False)
    return keep_colours(brightness.expand(-1, 3, -1, -1), colour)


def to_model(pictures_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float in [-1, 1]."""
    return pictures_uint8.float() / 127.5 - 1


def to_uint8(pictures: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> uint8, same shape."""
    return ((pictures.clamp(-1, 1) + 1) * 127.5).round().byte()


@torch.no_grad()
def translate(model: UNet, source: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """The generator's pictures (N, 3, SIZE, SIZE) in [-1, 1] for sources in [-1, 1]; no
    dropout (the paper keeps it at test time as noise; here one sketch gives one face)."""
    model.eval()
    return torch.cat([model(source[i:i + batch_size]) for i in range(0, len(source), batch_size)])


# ---- CycleGAN: put a mask on, take it off ---------------------------------------------------------
# Zhu et al. 2017: no pairs exist (nobody is photographed with and without the same mask), so two
# generators learn the two directions at once, each judged by its own discriminator, and each
# must undo the other (the cycle loss): what makes a face keep its identity.

class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels),
                                  nn.ReLU(), nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3),
                                  nn.InstanceNorm2d(channels))

    def forward(self, x):
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """CycleGAN's generator: c7s1-w, two stride-2 convs, `blocks` residual blocks at 1/4 size,
    two transposed convs back, c7s1-3; instance norm, mirrored padding."""

    def __init__(self, width: int = 32, blocks: int = 6):
        super().__init__()
        w = width
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(3, w, 7), nn.InstanceNorm2d(w), nn.ReLU()]
        for k in (1, 2):
            layers += [nn.Conv2d(w * k, w * 2 * k, 3, 2, 1), nn.InstanceNorm2d(w * 2 * k), nn.ReLU()]
        layers += [ResidualBlock(4 * w) for _ in range(blocks)]
        for k in (4, 2):
            layers += [nn.ConvTranspose2d(w * k, w * k // 2, 3, 2, 1, output_padding=1), nn.InstanceNorm2d(w * k // 2),
                       nn.ReLU()]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(w, 3, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, x):  # (N, 3, H, W) in [-1, 1], H and W multiples of 4
        return self.net(x)


class MaskCycleGAN(nn.Module, PyTorchModelHubMixin):
    """The two generators of the mask CycleGAN, saved together: add_mask (a bare face -> masked)
    and remove_mask (masked -> bare)."""

    def __init__(self, width: int = 32, blocks: int = 6):
        super().__init__()
        self.add_mask = ResnetGenerator(width, blocks)
        self.remove_mask = ResnetGenerator(width, blocks)

    def forward(self, faces, direction: str = "add_mask"):
        return getattr(self, direction)(faces)


class CycleDiscriminator(nn.Module):
    """A 64-px PatchGAN with instance norm (CycleGAN's), judging one picture, not a pair."""

    def __init__(self, width: int = 64):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.InstanceNorm2d(2 * width), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, 4 * width, 4, 2, 1), nn.InstanceNorm2d(4 * width), nn.LeakyReLU(0.2),
            nn.Conv2d(4 * width, 4 * width, 4, 1, 1), nn.InstanceNorm2d(4 * width), nn.LeakyReLU(0.2),
            nn.Conv2d(4 * width, 1, 4, 1, 1))

    def forward(self, x):
        return self.net(x)


def load_mask_cyclegan(device="cpu", root=None) -> MaskCycleGAN:
    return checkpoints.load(MaskCycleGAN, checkpoint_name(MASK), train_command(MASK), device, root=root)


def mask_crops(image: Image.Image, boxes, size: int = SIZE, scale: float = 1.2) -> list[Image.Image]:
    """Square crops of the faces in a photo, framed like LFW's (the annotated box, which runs
    from brow to chin, widened `scale` times round its centre), resized to size."""
    crops = []
    for x0, y0, x1, y1 in boxes:
        cx, cy, side = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0) * scale
        cy -= 0.08 * side  # the box stops at the brow; LFW's frame shows the forehead too
        box = (round(cx - side / 2), round(cy - side / 2), round(cx + side / 2), round(cy + side / 2))
        crops.append(image.crop(box).resize((size, size), Image.Resampling.BICUBIC))  # outside: black
    return crops
