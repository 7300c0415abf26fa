"""MNIST test digits redrawn the way people draw with a mouse: the digit's centre line
(skeleton) traced with a thick round brush, anywhere and at any size on a big canvas,
delivered as the Sketchpad delivers it (black ink on transparent RGBA) or as an upload
in either polarity."""
import numpy as np
from PIL import Image
from scipy.ndimage import distance_transform_edt, gaussian_filter
from skimage.morphology import skeletonize

CANVASES = [(280, 280), (280, 280), (400, 600), (600, 400), (512, 512)]  # (height, width)
FORMATS = ["sketchpad", "sketchpad", "dark_on_light", "light_on_dark"]


def redraw(digit28: np.ndarray, rng: np.random.Generator):
    """One (28, 28) uint8 MNIST digit -> (image in one of FORMATS, format name)."""
    height, width = CANVASES[rng.integers(len(CANVASES))]
    short = min(height, width)
    brush = 18 * short / 280 * rng.uniform(0.75, 1.3)  # the Sketchpad's brush, give or take
    rows, cols = np.nonzero(digit28 > 60)
    crop = digit28[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    digit_h = rng.uniform(0.4, 0.95) * short
    scale = digit_h / crop.shape[0]
    digit_w = max(2, min(int(crop.shape[1] * scale), width - 2 * int(brush) - 4))
    big = np.asarray(Image.fromarray(crop).resize((digit_w, int(digit_h)), Image.Resampling.BILINEAR))
    # Smooth before thinning so the centre line has no spurs from the digit's ragged edge.
    centre_line = skeletonize(gaussian_filter(big.astype(np.float32), digit_h / 30) > 100)
    stroke = distance_transform_edt(~centre_line) <= brush / 2
    pad = int(brush) + 2
    stroke = np.pad(stroke, pad)
    top = rng.integers(0, max(1, height - stroke.shape[0]))
    left = rng.integers(0, max(1, width - stroke.shape[1]))
    ink = np.zeros((height, width), dtype=bool)
    h, w = min(stroke.shape[0], height - top), min(stroke.shape[1], width - left)
    ink[top:top + h, left:left + w] = stroke[:h, :w]

    kind = FORMATS[rng.integers(len(FORMATS))]
    if kind == "sketchpad":
        rgba = np.zeros((height, width, 4), dtype=np.uint8)
        rgba[..., 3] = ink * 255
        return {"background": None, "layers": [rgba], "composite": rgba}, kind
    if kind == "dark_on_light":
        rgb = np.where(ink[..., None], np.uint8(20), np.uint8(245)).repeat(3, axis=2)
        return rgb, kind
    return np.where(ink, np.uint8(235), np.uint8(15)), kind


def drawn_test_set(images: np.ndarray, labels: np.ndarray, n: int = 500, seed: int = 0):
    """The first n MNIST test digits, redrawn: a list of (image, format, label)."""
    rng = np.random.default_rng(seed)
    out = []
    for digit, label in zip(images[:n], labels[:n]):
        image, kind = redraw(digit, rng)
        out.append((image, kind, int(label)))
    return out
