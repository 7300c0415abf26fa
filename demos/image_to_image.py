"""Image to image (pix2pix): draw a face and get a photo, or give colour to a grey picture."""
import functools
from pathlib import Path

import gradio as gr
import numpy as np
import skimage
import torch
import torch.nn.functional as F
from PIL import Image

from core import checkpoints
from core.errors import BadInput
from core.pictures import read_picture
from core.results import Entry, Figure
from core.ui import drawing_canvas, user_errors
from models import image_to_image as i2i
from models.image_to_image import SIZE, TASKS, checkpoint_name, train_command

TITLE = "Image to image"
EXAMPLES = Path(__file__).parent / "examples" / "faces"
TEMPLATE = EXAMPLES / "template.png"
SKIMAGE_DATA = Path(skimage.__file__).parent / "data"
SHOWN = 256  # the 64-px face is shown this large
MAX_SIDE = 1024  # a photo to colour is shrunk to this first
WORKING_SIDE = 64  # the shorter side the network colours at (its training faces' size)
MAX_WORKING_SIDE = 256


def tasks() -> list[str]:
    return [*TASKS, *MASK_DIRECTIONS]


@functools.cache
def load(task: str):
    return i2i.load(task)


def _check_task(task) -> str:
    if task not in TASKS and task not in MASK_DIRECTIONS:
        raise BadInput(f"Unknown task {task!r}; choose one of {tasks()}.")
    return task


def sketch_to_face(image) -> Image.Image:
    """A drawing (a Sketchpad value, or any picture of dark lines on light paper) -> the face,
    SHOWN x SHOWN. Raises BadInput for an empty canvas."""
    empty = BadInput("The canvas is empty: pick the brush (left of the canvas) and draw a face over the grey guide.")
    if image is None or (isinstance(image, dict) and image.get("composite") is None and "composite" in image):
        raise empty
    try:
        ink = i2i.read_drawing(read_picture(image, "drawing", max_side=MAX_SIDE))
    except ValueError:
        raise empty from None
    face = i2i.translate(load("sketch_to_face"), ink * 2 - 1)
    return Image.fromarray(i2i.to_uint8(face)[0].permute(1, 2, 0).numpy()).resize((SHOWN, SHOWN),
                                                                                   Image.Resampling.LANCZOS)


def colourise(image) -> tuple[Image.Image, Image.Image]:
    """Any picture -> (its colours as the network sees them, the grey it was given), both at
    the picture's size (at most MAX_SIDE). The network colours a small copy (shorter side
    WORKING_SIDE, the size of its training faces); its colours are laid over the picture's
    own full-size brightness."""
    picture = read_picture(image, "picture", min_side=16, max_side=MAX_SIDE)
    pixels = torch.from_numpy(np.asarray(picture).copy()).permute(2, 0, 1)[None].float() / 255  # (1, 3, H, W)
    brightness = i2i.grey(pixels * 2 - 1).add(1).div(2)  # (1, 1, H, W) in [0, 1]
    h, w = brightness.shape[-2:]
    scale = min(WORKING_SIDE / min(h, w), MAX_WORKING_SIDE / max(h, w))
    small = F.interpolate(brightness, size=(max(1, round(h * scale)), max(1, round(w * scale))), mode="area")
    sh, sw = small.shape[-2:]
    pad_h, pad_w = -sh % SIZE, -sw % SIZE  # the U-Net halves the picture six times
    padded = F.pad(small, (0, pad_w, 0, pad_h), mode="replicate")
    colour = i2i.translate(load("grey_to_colour"), padded * 2 - 1)[:, :, :sh, :sw].add(1).div(2)
    coloured = i2i.with_brightness(colour, brightness)
    to_picture = lambda t: Image.fromarray(t[0].mul(255).round().byte().permute(1, 2, 0).numpy())  # noqa: E731
    return to_picture(coloured), to_picture(brightness.expand(-1, 3, -1, -1))


MASK_DIRECTIONS = {"add_mask": "Put a mask on", "remove_mask": "Take the mask off"}
MASK_MIN_SIDE = 32


@functools.cache
def load_mask_model():
    return i2i.load_mask_cyclegan()


@functools.cache
def load_face_finder():
    from models.detection import load_detector
    return load_detector()


def change_mask(image, direction: str = "add_mask") -> tuple[Image.Image, Image.Image, str]:
    """The largest face in any photo, found by the face-mask detector (it finds faces with and
    without masks) and cropped like the CycleGAN's training faces -> (the face, the face with
    a mask put on or taken off, a note), both SHOWN px. Raises BadInput when no face is found."""
    from models.detection import detect_faces

    if direction not in MASK_DIRECTIONS:
        raise BadInput(f"Unknown direction {direction!r}; choose one of {list(MASK_DIRECTIONS)}.")
    picture = read_picture(image, "photo", min_side=MASK_MIN_SIDE, max_side=MAX_SIDE)
    found = detect_faces(load_face_finder(), picture)
    if not found:
        raise BadInput("No face found in the photo. Try one where a face looks at the camera and fills a good "
                       "part of the picture.")
    best = max(found, key=lambda f: (f["box"][2] - f["box"][0]) * (f["box"][3] - f["box"][1]))
    crop = i2i.mask_crops(picture, [best["box"]])[0]
    face = i2i.to_model(torch.from_numpy(np.asarray(crop).copy()).permute(2, 0, 1)[None])
    changed = i2i.translate(getattr(load_mask_model(), direction), face)
    shown = Image.fromarray(i2i.to_uint8(changed)[0].permute(1, 2, 0).numpy()).resize((SHOWN, SHOWN),
                                                                                      Image.Resampling.LANCZOS)
    note = (f"{len(found)} faces found: used the largest. " if len(found) > 1 else "") + \
        f"The detector saw {best['label'].replace('_', ' ')} ({best['score']:.0%})."
    return crop.resize((SHOWN, SHOWN), Image.Resampling.LANCZOS), shown, note


def translate(image, task: str) -> Image.Image:
    """The tab's translations from Python: task "sketch_to_face" (a drawing -> a face),
    "grey_to_colour" (any picture -> coloured), "add_mask" or "remove_mask" (a photo's largest
    face with a mask put on or taken off); image: any upload or Sketchpad value."""
    if task in MASK_DIRECTIONS:
        return change_mask(image, task)[1]
    if _check_task(task) == "sketch_to_face":
        return sketch_to_face(image)
    return colourise(image)[0]


def show_face(image):
    """The tab's action for a drawing: the face, and the reason there is none."""
    try:
        return sketch_to_face(image), ""
    except BadInput as e:
        return None, str(e)


def show_mask(image, direction):
    try:
        face, changed, note = change_mask(image, direction)
    except BadInput as e:
        return None, None, str(e)
    return face, changed, note


def show_colours(image):
    try:
        coloured, grey = colourise(image)
    except BadInput as e:
        return None, None, str(e)
    return coloured, grey, ""


def timelapse(task: str) -> Image.Image | None:
    """The training's time-lapse sheet of a committed network (train/image_to_image.py,
    train/cyclegan.py), or None when it has none."""
    if task not in (*TASKS, i2i.MASK):
        raise BadInput(f"Unknown network {task!r}; choose one of {[*TASKS, i2i.MASK]}.")
    path = checkpoints.find(checkpoint_name(task))
    if path is None or not (path / "timelapse.jpg").exists():
        return None
    with Image.open(path / "timelapse.jpg") as sheet:
        return sheet.convert("RGB")


TIMELAPSE_CAPTIONS = {
    "grey_to_colour": "Grey -> colour: eight validation photos a row: the grey given, the colours after each "
                      "epoch, the real photo.",
    i2i.MASK: "Mask CycleGAN: four validation faces given a mask, then four masked ones with it taken off; the "
              "face, then the network after every fifth epoch.",
}


# ---- what the Overview shows ----------------------------------------------------------------

OVERVIEW = Entry(TITLE, 32, train_command("sketch_to_face"),
                 [Figure("sketch -> face: same person as the photo (face verification)",
                         checkpoint_name("sketch_to_face"), "test.same_person_rate", "{:.1%}"),
                  Figure("grey -> colour: PSNR (dB)", checkpoint_name("grey_to_colour"), "test.psnr_db", "{:.1f}"),
                  Figure("mask put on: the crop classifier says \"with mask\"", checkpoint_name(i2i.MASK),
                         "test.add_mask_detected_with_mask", "{:.1%}")],
                 ["none: the issue set no target for these numbers"],
                 "LFW people and face-mask photos held out of training")


def model_card(task: str) -> str:
    m = checkpoints.load_metrics(checkpoint_name(task))
    if not m:
        return f"No checkpoint yet: run `{train_command(task)}`."
    t = m["test"]
    if task == i2i.MASK:
        return (f"**Mask CycleGAN**: two generators of {m['generator_parameters']:,} parameters, trained "
                f"{m['hyperparameters']['epochs']} epochs on {m['bare_train_faces']:,} LFW faces and "
                f"{m['masked_train_faces']:,} masked faces ({m['min_face_px']} px and more in their photos) in "
                f"{m['train_wall_time_s'] / 60:.0f} min. On held-out faces, the face-mask slice's crop classifier "
                f"calls **{t['add_mask_detected_with_mask']:.0%}** of the faces it put a mask on \"with mask\" "
                f"(real bare faces: {t['real_bare_detected_with_mask']:.0%}) and "
                f"**{t['remove_mask_detected_without_mask']:.0%}** of those it took the mask off \"without mask\" "
                f"(real masked faces: {t['real_masked_detected_without_mask']:.0%}); face verification says the "
                f"masked face is the same person {t['add_mask_same_person']:.0%} of the time.")
    text = (f"**{TASKS[task].label}**: a U-Net of {m['generator_parameters']:,} parameters, trained "
            f"{m['hyperparameters']['epochs']} epochs on {m['train_photos']:,} LFW faces in "
            f"{m['train_wall_time_s'] / 60:.0f} min ({m['device']}), epoch {m['epoch_kept']} kept ({m['chosen_on']}). "
            f"On {t['photos']:,} photos of {m['test_people']} people it never saw: L1 {t['l1']:.3f}, "
            f"PSNR {t['psnr_db']:.1f} dB, Frechet distance in the face-verification network's embedding "
            f"{t['frechet_distance_facenet']:.2f} (real photos, half against half: "
            f"{t['frechet_distance_facenet_real_half_vs_half']:.2f}).")
    if "same_person_rate" in t:
        text += (f" The face-verification network says the face drawn from a photo's sketch is that photo's "
                 f"person **{t['same_person_rate']:.1%}** of the time.")
    return text


def thumbnail():
    """The Overview's picture: the example sketches and the faces drawn from them."""
    sketches = sorted(p for p in EXAMPLES.glob("face_*.png"))[:3]
    tiles = []
    for path in sketches:
        drawing = Image.alpha_composite(Image.new("RGBA", (280, 280), "white"), Image.open(path).convert("RGBA"))
        tiles += [drawing.convert("RGB").resize((128, 128)), sketch_to_face(path).resize((128, 128))]
    sheet = Image.new("RGB", (128 * len(tiles), 128), "white")
    for k, tile in enumerate(tiles):
        sheet.paste(tile, (128 * k, 0))
    return sheet


def build():
    gr.Markdown("pix2pix (Isola et al. 2017): a network that learned to turn one kind of picture into another "
                "from pairs of them. Draw a face and it paints the photo as you draw; or give it a grey picture "
                "and it adds the colours. Both learned from 64x64 faces of LFW, people the measurements below "
                "never saw.")
    with gr.Accordion("Sketch -> face", open=True):
        with gr.Row():
            with gr.Column(scale=2):
                sketch = drawing_canvas("Draw a face over the grey guide (brush: left of the canvas)",
                                        elem_id="i2i-sketchpad", background=TEMPLATE,
                                        brush_size=5)  # a pen, not a marker: eyes and lips are small
                sketch_status = gr.Markdown(elem_id="i2i-sketch-status")
            with gr.Column(scale=2):
                face = gr.Image(label="The face it paints", type="pil", height=SHOWN + 40, interactive=False,
                                elem_id="i2i-face")
        gr.Examples([[str(p)] for p in sorted(EXAMPLES.glob("face_*.png"))], inputs=[sketch],
                    outputs=[face, sketch_status], fn=user_errors(show_face), run_on_click=True, label="Sketches drawn by the project",
                    api_name="image_to_image_sketch_example", elem_id="i2i-examples")
    with gr.Accordion("Grey -> colour", open=True):
        with gr.Row():
            photo = gr.Image(type="filepath", image_mode=None, label="A picture (a colour one is made grey first)",
                             sources=["upload", "webcam", "clipboard"], height=320, elem_id="i2i-photo")
            grey = gr.Image(label="What the network is given", type="pil", height=320, interactive=False)
            coloured = gr.Image(label="Its colours", type="pil", height=320, interactive=False, elem_id="i2i-coloured")
        colour_status = gr.Markdown(elem_id="i2i-colour-status")
        gr.Examples([[str(p)] for p in colour_examples()], inputs=[photo], label="Pictures from scikit-image")
    with gr.Accordion("Put a mask on, take it off (CycleGAN)", open=True):
        gr.Markdown("No one is photographed with and without the same mask, so this network learned from two "
                    "piles of faces that do not match (CycleGAN, Zhu et al. 2017): LFW's faces and the face-mask "
                    "photos' masked ones. Its two halves must undo each other, which is what keeps the person. "
                    "It learned from news photos and from small masked faces in crowds, so it blurs every face, "
                    "and a face lit or turned unlike those (the astronaut below) may come back without a mask.")
        with gr.Row():
            with gr.Column():
                mask_photo = gr.Image(type="filepath", image_mode=None, label="A photo with a face",
                                      sources=["upload", "webcam", "clipboard"], height=320, elem_id="i2i-mask-photo")
                direction = gr.Radio([(label, name) for name, label in MASK_DIRECTIONS.items()], value="add_mask",
                                     label="Direction")
            found = gr.Image(label="The face found", type="pil", height=SHOWN + 40, interactive=False)
            changed = gr.Image(label="Changed", type="pil", height=SHOWN + 40, interactive=False,
                               elem_id="i2i-mask-changed")
        mask_status = gr.Markdown(elem_id="i2i-mask-status")
        gr.Examples([[str(SKIMAGE_DATA / "astronaut.png")]], inputs=[mask_photo], label="A photo from scikit-image")
    with gr.Accordion("About these models", open=False):
        for task in [*TASKS, i2i.MASK]:
            gr.Markdown(model_card(task))
    with gr.Accordion("How they learned: the same faces after every epoch", open=False):
        for task, caption in TIMELAPSE_CAPTIONS.items():
            sheet = timelapse(task)
            if sheet is not None:
                gr.Image(sheet, label=caption, show_label=True, interactive=False, height=520)

    gr.on([sketch.change], user_errors(show_face), inputs=sketch, outputs=[face, sketch_status],
          api_name="image_to_image_sketch", trigger_mode="always_last", show_progress="hidden")
    gr.on([mask_photo.change, direction.change], user_errors(show_mask), inputs=[mask_photo, direction],
          outputs=[found, changed, mask_status], api_name="image_to_image_mask")
    photo.change(user_errors(show_colours), inputs=photo, outputs=[coloured, grey, colour_status],
                 api_name="image_to_image_colour")


def colour_examples() -> list[Path]:
    return [SKIMAGE_DATA / name for name in ("astronaut.png", "coffee.png", "chelsea.png")]
