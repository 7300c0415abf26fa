"""Gradio helpers the tabs share: a user's mistake as a clear message (for the handlers and
for input Gradio itself cannot read), and the drawing canvas."""
import functools
import inspect
import math
import os
import re
import tempfile
import time
from pathlib import Path

import gradio as gr
import pydantic
from gradio.exceptions import ComponentProcessingError, InvalidPathError
from PIL import Image, UnidentifiedImageError

from core.errors import BadInput
from core.pictures import open_picture


def user_errors(fn):
    """Wrap a Gradio handler so a BadInput (or a missing checkpoint) becomes a gr.Error
    with its message, instead of a generic 'Error' and a traceback in the log."""
    from core.checkpoints import MissingCheckpoint

    if inspect.isgeneratorfunction(fn):  # streaming handlers stay generators for Gradio
        @functools.wraps(fn)
        def streaming(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except (BadInput, MissingCheckpoint) as e:
                raise gr.Error(str(e), print_exception=False) from e
        return streaming

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (BadInput, MissingCheckpoint) as e:
            raise gr.Error(str(e), print_exception=False) from e
    return wrapper


# ---- input Gradio itself cannot read ------------------------------------------------------
# A word where a number goes, NaN, a text file sent as a picture or a path that was never
# uploaded fail inside Gradio, before any handler runs, and reach the user as a bare "Error".
# readable_input_errors() turns each into a gr.Error that says which input and why.

UPLOAD_HINT = "from Python: gradio_client.handle_file(path)"
MAX_TEXT = 10_000  # characters in any text box (a headline, a sentence to translate)
TAKES = {"Image": f"a picture uploaded to the app ({UPLOAD_HINT})",
         "ImageEditor": f"a drawing: a dict of 'background', 'layers' and 'composite' pictures ({UPLOAD_HINT})",
         "Audio": f"a sound file uploaded to the app ({UPLOAD_HINT})",
         "File": f"files uploaded to the app ({UPLOAD_HINT})"}


def _name(block) -> str:
    return f"'{getattr(block, 'label', None) or type(block).__name__}'"


def _show(value) -> str:
    text = repr(value)
    if isinstance(value, str) and len(value) > 40:
        return f"a text of {len(value):,} characters"
    return text if len(text) <= 40 else text[:37] + "..."


def input_problem(block, value) -> str | None:
    """Why Gradio cannot read `value` for the input component `block`, as a sentence
    (None when it can)."""
    if isinstance(block, (gr.Number, gr.Slider)):
        if value is None:
            return None if isinstance(block, gr.Number) else f"{_name(block)} needs a number, and got none."
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{_name(block)} must be a number, not {_show(value)}."
        if not math.isfinite(value):
            return f"{_name(block)} must be a finite number, not {value}."
        whole = (block.precision == 0 if isinstance(block, gr.Number) else
                 float(block.step or 0).is_integer() and float(block.minimum).is_integer())
        if whole and not float(value).is_integer():  # Gradio would round 3.5 to 4 without a word
            return f"{_name(block)} must be a whole number, not {value:g}."
        low, high = block.minimum, block.maximum
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = (f"from {low:g} to {high:g}" if low is not None and high is not None
                      else f"at least {low:g}" if low is not None else f"at most {high:g}")
            return f"{_name(block)} must be {bounds}, not {value:g}."
    if isinstance(block, gr.Textbox) and isinstance(value, str) and len(value) > MAX_TEXT:
        # the page's max_length is the browser's; a client of the API can send megabytes
        return f"{_name(block)} takes at most {MAX_TEXT:,} characters, not {len(value):,}."
    if isinstance(block, gr.Checkbox) and not isinstance(value, bool):
        return f"{_name(block)} must be true or false, not {_show(value)}."
    if isinstance(block, (gr.Dropdown, gr.Radio)) and value is not None and not getattr(block, "allow_custom_value", False):
        allowed = [v for _, v in block.choices]
        chosen = value if getattr(block, "multiselect", False) and isinstance(value, list) else [value]
        if not all(isinstance(v, (str, int, float)) and v in allowed for v in chosen):
            listed = ", ".join(map(repr, allowed[:12])) + (", ..." if len(allowed) > 12 else "")
            return f"{_name(block)} must be one of {listed}; not {_show(value)}."
    if isinstance(block, gr.Dataset):  # a row of gr.Examples, by its number
        rows = len(block.raw_samples)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < rows:
            return f"{_name(block)} takes the number of an example, 0 to {rows - 1}; not {_show(value)}."
    model = getattr(block, "data_model", None)
    if model is not None and value is not None:
        try:
            model.model_validate(value)
        except pydantic.ValidationError:
            return (f"{_name(block)} cannot take {_show(value)}: it takes "
                    f"{TAKES.get(type(block).__name__, f'a file uploaded to the app ({UPLOAD_HINT})')}.")
    return None


def _unreadable(block, payload, error: Exception) -> str:
    """A sentence for a file (or value) a component failed to decode."""
    if isinstance(error, Image.DecompressionBombError):
        limit = 2 * (Image.MAX_IMAGE_PIXELS or 0) // 1_000_000
        return f"{_name(block)}: that picture has more than {limit} megapixels. Please upload a smaller one."
    if isinstance(error, UnidentifiedImageError):
        return f"{_name(block)}: that file is not a picture this app can read (try PNG, JPEG or WebP)."
    if isinstance(error, OSError) and "truncated" in str(error):
        return f"{_name(block)}: that picture file is cut short (truncated). Please upload it again."
    if isinstance(error, OSError):
        return f"{_name(block)}: that file could not be read ({error.__class__.__name__}). Please upload another."
    return f"{_name(block)} cannot use {_show(payload)}: it is not a value of the kind this input takes."


def readable_input_errors(demo: gr.Blocks) -> gr.Blocks:
    """Make input that Gradio cannot read (before any handler runs) a gr.Error naming the
    input, for every event of `demo`. Gradio 6.31's own messages for these are empty."""
    original_preprocess_data = demo.preprocess_data

    async def preprocess_data(block_fn, inputs, state, explicit_call=False):
        # As Gradio does: a component updated in this session (new choices, a new range) is
        # the session's copy, not the one built with the page.
        blocks = [state[b._id] if state is not None and not b.stateful and b._id in state else b
                  for b in block_fn.inputs]
        if len(inputs) < len(blocks):
            labels = ", ".join("null (the session's state)" if isinstance(b, gr.State) else _name(b) for b in blocks)
            raise gr.Error(f"This takes {len(blocks)} inputs ({labels}), but got {len(inputs)}.", print_exception=False)
        for block, value in zip(blocks, inputs):
            problem = input_problem(block, value)
            if problem:
                raise gr.Error(problem, print_exception=False)
        try:
            return await original_preprocess_data(block_fn, inputs, state, explicit_call)
        except gr.Error:
            raise
        except InvalidPathError as e:  # a path on the server that nobody uploaded, e.g. /etc/passwd
            raise gr.Error("A file in this request was not uploaded to the app, so it cannot be read: upload it "
                           f"first ({UPLOAD_HINT}).", print_exception=False) from e
        except ComponentProcessingError as e:  # a component could not decode its value (a text file as a picture)
            where = re.search(r"input component at index (\d+)", str(e))
            if where and e.__cause__ is not None and int(where[1]) < len(blocks):
                k = int(where[1])
                raise gr.Error(_unreadable(blocks[k], inputs[k], e.__cause__), print_exception=False) from e
            raise gr.Error("One of the inputs could not be read: it is not a value of the kind its box takes.",
                           print_exception=False) from e
        except Exception as e:
            raise gr.Error(f"One of the inputs is not a value of the kind its box takes ({e.__class__.__name__}).",
                           print_exception=False) from e

    demo.preprocess_data = preprocess_data
    return demo


# ---- a refused upload leaves the box ---------------------------------------------------------
# A picture Gradio cannot decode (over the megapixel limit, not a picture) failed before any
# handler ran: a red "Error" on every output, and the refused picture stayed in the box. A tab
# reads its pictures itself instead (preprocess=False; read_picture takes the upload's file
# dict) and says what is wrong in its own status, and this removes the refused file from view.

def clear_refused_uploads(picture: gr.Image, what: str, api_name: str) -> None:
    """As a picture arrives, read its header only: one that read_picture would refuse leaves
    the box at once. The tab's own handler says why."""
    def check(upload):
        path = upload.get("path") if isinstance(upload, dict) else None
        if not path:
            return gr.skip()
        try:
            open_picture(path, what).close()  # reads the header: size, megapixels, aspect
        except BadInput:
            return None
        return gr.skip()

    picture.upload(check, inputs=picture, outputs=picture, preprocess=False, queue=False, show_progress="hidden",
                   api_name=api_name, api_visibility="private")


# The Sketchpad opens with no tool selected ("select the draw tool to start"), so a first
# stroke draws nothing. Pick the brush for the user whenever a canvas shows that hint.
PICK_BRUSH_JS = """
window.dlpPickBrush = window.dlpPickBrush || setInterval(() => {
  for (const pad of document.querySelectorAll('.dlp-sketchpad')) {
    if (pad.offsetParent !== null && pad.innerText.includes('select the draw tool')) {
      pad.querySelector('button[aria-label="Brush"]')?.click();
    }
  }
}, 500);
"""


# A drawing's composite is the only part the tabs read. Gradio would decode the background
# and every layer too, so a request naming one big PNG as 20 layers cost 20 decodes.
MAX_DRAWING_SIDE = 2048


def drawing_canvas(label: str, elem_id: str, background=None, brush_size: int = 12) -> gr.Sketchpad:
    """A 280x280 Sketchpad with a black 12-px brush (models.mnist redraws strokes far thinner or
    thicker than MNIST's for the digit's size), whose brush is picked automatically. Only its composite is decoded, and only when its
    sides are at most MAX_DRAWING_SIDE. `background`: a picture's path to draw over (a guide);
    `brush_size`: the pen's width in the canvas's pixels."""
    canvas = gr.Sketchpad(str(background) if background else None, label=label, type="numpy", image_mode="RGBA",
                          canvas_size=(280, 280),
                          brush=gr.Brush(default_size=brush_size, colors=["#000000"], color_mode="fixed"),
                          layers=False, elem_id=elem_id, elem_classes=["dlp-sketchpad"])
    preprocess = canvas.preprocess

    def composite_only(payload):
        if payload is not None and payload.id is None:
            payload = payload.model_copy(update={"background": None, "layers": []})
            composite = payload.composite
            if composite is not None and getattr(composite, "path", None):
                with Image.open(composite.path) as probe:  # reads the header only
                    if max(probe.size) > MAX_DRAWING_SIDE:
                        raise gr.Error(f"{_name(canvas)}: the drawing is {probe.width}x{probe.height} pixels; "
                                       f"at most {MAX_DRAWING_SIDE}x{MAX_DRAWING_SIDE} is read.", print_exception=False)
        return preprocess(payload)

    canvas.preprocess = composite_only
    gr.HTML("", js_on_load=PICK_BRUSH_JS, visible="hidden")
    return canvas


# A handler's file output (a download, a GIF) is copied into Gradio's own cache as soon as it
# is returned, and app.py has Gradio empty that cache of old files (delete_cache). Ours only
# need to outlive the copy, and are removed an hour on, so a server that runs for weeks does
# not fill its disk one result at a time.
OUTPUT_FILES = Path(tempfile.gettempdir()) / f"dlp_outputs_{os.getpid()}"
KEEP_OUTPUT_FILES_S = 3600


def output_file(suffix: str, prefix: str = "") -> str:
    """A new path for a handler's file output; files made here over an hour ago are removed."""
    OUTPUT_FILES.mkdir(exist_ok=True)
    now = time.time()
    for old in OUTPUT_FILES.iterdir():
        try:
            if now - old.stat().st_mtime > KEEP_OUTPUT_FILES_S:
                old.unlink()
        except FileNotFoundError:  # another thread removed it first
            pass
    with tempfile.NamedTemporaryFile(dir=OUTPUT_FILES, prefix=prefix, suffix=suffix, delete=False) as f:
        return f.name
