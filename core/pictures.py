"""The one picture reader every tab uses: any upload (a file path, a PIL image, an array or
a Sketchpad value) to an upright 8-bit RGB PIL image, or a BadInput that says why not.

What it does with odd pictures, the same for every tab:
- palette and transparent pictures are composited over white (a Sketchpad's black ink on
  a transparent canvas becomes black on white);
- EXIF rotation is applied, so a phone photo is the right way up;
- grayscale becomes gray RGB; 16-bit pictures (PNG "I;16"/"I", uint16 arrays) are scaled
  by 65535, not clipped (clipping makes them all white); float arrays in [0, 1] by 255;
  NaN and negative pixels are refused with a message;
- files over MAX_PIXELS are refused before they are decoded, and with `max_side` or `draft`
  JPEGs decode at a reduced size (a 24-megapixel photo costs about a sixty-fourth of its pixels);
  other formats decode whole, so they are refused over MAX_FULL_DECODE_PIXELS (a 160 KB PNG can
  claim 49 megapixels: 200 MB decoded);
- pictures longer than MAX_ASPECT times their width (or the reverse) are refused: shrunk to
  fit a tab they would be a line of pixels.
"""
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from core.errors import BadInput

MAX_PIXELS = 50_000_000  # larger uploads are refused before they are decoded
MAX_FULL_DECODE_PIXELS = 16_000_000  # the same for formats that cannot decode at a reduced size
MAX_ASPECT = 25


def open_picture(path, what: str = "picture") -> Image.Image:
    """Open (without decoding) a picture file, refusing files that are not pictures and
    pictures over MAX_PIXELS, whichever limit (ours or PIL's bomb check) sees it first."""
    too_big = f"The {what} has more than {MAX_PIXELS // 1_000_000} megapixels. Please upload a smaller one."
    try:
        image = Image.open(path)
    except Image.DecompressionBombError as e:
        raise BadInput(too_big) from e
    except (UnidentifiedImageError, OSError) as e:
        raise BadInput(f"Could not read the {what}: it is not a picture this tab can read (try PNG, JPEG or WebP).") from e
    if image.width * image.height > MAX_PIXELS:
        image.close()
        raise BadInput(too_big.replace("has more", f"is {image.width}x{image.height}: more"))
    if image.format not in ("JPEG", "MPO") and image.width * image.height > MAX_FULL_DECODE_PIXELS:
        image.close()
        raise BadInput(f"The {what} is a {image.format or 'picture'} of {image.width}x{image.height}: over "
                       f"{MAX_FULL_DECODE_PIXELS // 1_000_000} megapixels. Please upload a smaller one, or a JPEG.")
    try:
        check_aspect(image.size, what)
    except BadInput:
        image.close()
        raise
    return image


def check_aspect(size: tuple[int, int], what: str = "picture") -> None:
    """Refuse a picture too long and thin to use (shrunk to fit a tab it would be a line)."""
    width, height = size
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise BadInput(f"The {what} is {width}x{height} pixels: too long and thin to use "
                       f"(at most {MAX_ASPECT} times longer than wide).")


def uint8_pixels(image, what: str = "picture") -> np.ndarray:
    """An array-like picture as uint8 pixels: booleans to 0/255; integers kept when they fit
    0..255, else read as 16-bit (scaled by 65535); floats in [0, 1] scaled by 255, others
    clipped. NaN, infinity and negative integers are refused; shapes are the caller's to check."""
    array = np.asarray(image)
    if array.dtype == np.uint8:
        return array
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating) or array.size == 0:
        raise BadInput(f"Expected an image of numbers for the {what}, got an array of {array.dtype} "
                       f"with shape {array.shape}.")
    if np.issubdtype(array.dtype, np.integer):
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 65535:
            raise BadInput(f"Expected pixel values 0..255 (or 0..65535 for 16-bit) in the {what}, got {low}..{high}.")
        return (array if high <= 255 else np.round(array / 257.0)).astype(np.uint8)
    if not np.isfinite(array).all():
        raise BadInput(f"The {what} contains NaN or infinite values.")
    # floats in [0, 1] (with a little rounding slack) are fractions of white, others 0..255
    scale = 255.0 if array.max() <= 1.0 + 1e-3 and array.min() >= -1e-3 else 1.0
    return np.clip(np.round(array.astype(np.float64) * scale), 0, 255).astype(np.uint8)


def _from_array(image, what: str) -> Image.Image:
    array = uint8_pixels(image, what)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise BadInput(f"Expected an HxW, HxWx3 or HxWx4 image for the {what}, got an array of shape {array.shape}.")
    return Image.fromarray(array)


def _to_rgb(image: Image.Image, notes: list | None, what: str) -> Image.Image:
    """Any PIL mode -> RGB: transparency over white, 16-bit and float grayscale to 8 bits."""
    if image.mode.startswith("I;16"):  # 16-bit whatever its values (a dark picture stays dark)
        image = Image.fromarray(np.round(np.asarray(image, dtype=np.float64) / 257.0).astype(np.uint8))
    elif image.mode in ("I", "F"):
        image = _from_array(np.asarray(image), what)
    gray = image.mode in ("1", "L", "LA") or (image.mode == "P" and _palette_is_gray(image))
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info) \
            or (image.mode in ("L", "RGB") and "transparency" in image.info):
        rgba = image.convert("RGBA")
        if notes is not None and rgba.getextrema()[3][0] < 255:
            notes.append(f"the {what}'s transparent parts were filled with white")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    if notes is not None and gray:
        notes.append(f"the {what} is grayscale: used as gray RGB")
    return image.convert("RGB")


def _palette_is_gray(image: Image.Image) -> bool:
    palette = np.asarray(image.getpalette() or [], dtype=np.int16).reshape(-1, 3)
    return bool(len(palette)) and bool((palette.max(1) - palette.min(1) == 0).all())


def read_picture(image, what: str = "picture", min_side: int = 1, max_side: int | None = None,
                 notes: list | None = None, draft: int | None = None) -> Image.Image:
    """Any picture a user can send -> an upright RGB PIL image.

    `image`: a file path, a PIL image, an HxW/HxWx1/HxWx3/HxWx4 array (uint8, uint16,
    bool, or float in [0, 1]), a Sketchpad/ImageEditor dict (its "composite"), or an upload's
    file dict (its "path": what a handler with preprocess=False gets, a path Gradio checked).
    `min_side`: smaller pictures are refused with a message. `max_side`: the result is
    shrunk (keeping its aspect ratio) so its longer side is at most this; JPEG files are
    decoded at a reduced size on the way. `draft`: a JPEG file is decoded at the smallest
    reduced size still covering draft x draft (a 12-megapixel photo at 1/8 of its sides, ten
    times faster) and nothing else is resized. `notes`: when a list, sentences describing
    what was changed (transparency filled, grayscale) are appended to it."""
    if isinstance(image, dict):  # a Sketchpad value, or an upload as Gradio passes it unprocessed
        image = image.get("composite") if "composite" in image else image.get("path")
    if image is None or (isinstance(image, str) and not image):
        raise BadInput(f"No {what}: upload one or pick an example.")
    try:
        if isinstance(image, (str, Path)):
            with open_picture(image, what) as probe:
                if draft or max_side:
                    probe.draft("RGB", (draft or max_side, draft or max_side))
                image = ImageOps.exif_transpose(probe)
                image.load()
        elif isinstance(image, Image.Image):
            image = ImageOps.exif_transpose(image)
        else:
            image = _from_array(image, what)
        check_aspect(image.size, what)
        if min(image.size) < min_side:
            raise BadInput(f"The {what} is only {image.width}x{image.height} pixels: too small "
                           f"(at least {min_side}x{min_side}).")
        if max_side and max(image.size) > max_side:
            scale = max_side / max(image.size)
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            if image.mode in ("I", "F", "P", "1") or image.mode.startswith("I;16"):
                image = _to_rgb(image, notes, what)
                notes = None  # already noted
            image = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        return _to_rgb(image, notes, what)
    except BadInput:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        # a truncated or damaged file fails only when it is decoded
        raise BadInput(f"Could not read the {what}: the file is damaged, cut short or not a picture ({e}).") from e
