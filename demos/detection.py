"""Face-mask detection: Faster R-CNN finds the faces in a photo and says whether each wears
a mask, wears it wrongly or wears none. The default detector stands on ImageNet features
(EfficientNet-Lite0); the earlier one, whose backbone learned here from face crops, can be
picked for comparison. With the model card (both detectors' numbers side by side, per-class
AP, precision-recall curves, training curves, the test photos it gets most wrong)."""
import functools
import math

import gradio as gr
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from core import checkpoints, data
from core.errors import BadInput
from core.pictures import read_picture
from core.plots import curves, curves_image
from core.results import Entry, Figure
from core.ui import clear_refused_uploads, user_errors
from models.detection import (CLASSES, CROPS_COMMAND, DEFAULT_BACKBONE, FaceMaskDetector, checkpoint_name,
                              detect_faces, image_path, load_annotations, load_detector, split, train_command)

TITLE = "Face-mask detection"
COLORS = {"with_mask": (30, 160, 60), "without_mask": (220, 40, 40), "mask_weared_incorrect": (240, 160, 0)}
MIN_SIDE = 8  # smaller pictures are refused: too small to find a face in
DETECTORS = {"efficientnet": "EfficientNet-Lite0, ImageNet-pretrained",
             "mobilenet_v3": "MobileNetV3, pre-trained here on face crops"}  # the first is the default


@functools.cache
def load_model(backbone: str = DEFAULT_BACKBONE) -> FaceMaskDetector:
    return load_detector(backbone)


def check_detector(backbone) -> str:
    if backbone not in DETECTORS:
        raise BadInput(f"The detector must be one of {', '.join(DETECTORS)}, not {backbone!r}.")
    return backbone


def check_threshold(score_threshold) -> float:
    if isinstance(score_threshold, bool) or not isinstance(score_threshold, (int, float)) \
            or not math.isfinite(score_threshold) or not 0 <= score_threshold <= 1:
        raise BadInput(f"The score threshold must be a number from 0 to 1, not {score_threshold!r}.")
    return float(score_threshold)


def detect_picture(picture: Image.Image, score_threshold: float = 0.5, backbone: str = DEFAULT_BACKBONE) -> list[dict]:
    """Faces in an RGB picture, boxes in its own pixels, best first."""
    threshold = check_threshold(score_threshold)  # before loading: a bad value is the user's to fix first
    return detect_faces(load_model(check_detector(backbone)), picture, threshold)


def detect(image, score_threshold: float = 0.5, backbone: str = DEFAULT_BACKBONE) -> list[dict]:
    """Every face the detector with this backbone finds in any picture with a score of at
    least score_threshold: a list of {"box": [x0, y0, x1, y1] in the input's pixels, "label":
    class name, "score"}."""
    return detect_picture(read_picture(image, min_side=MIN_SIDE), score_threshold, backbone)


DRAWN_SIDE = 960  # the picture is drawn at this longer side (small photos enlarged), so labels stay readable
SHORT_LABELS = {"with_mask": "mask", "without_mask": "no mask", "mask_weared_incorrect": "worn wrong"}


def place_labels(boxes: list, label_sizes: list, canvas_size: tuple[int, int]) -> list:
    """Where each box's label goes, in order (the first boxes first): above its box, below it,
    or inside its top; the first of those on the canvas that covers no label placed before,
    preferring one that covers no other face either; else None (no label: the box's colour
    and the table still say what it is)."""
    placed, width, height = [], *canvas_size

    def overlaps(a, b):
        return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]

    for k, ((x0, y0, x1, y1), (w, h)) in enumerate(zip(boxes, label_sizes)):
        x = min(max(0, x0), max(0, width - w))
        spots = [(x, top, x + w, top + h) for top in (y0 - h, y1, y0) if top >= 0 and top + h <= height]
        free = [r for r in spots if not any(overlaps(r, q) for q in placed if q is not None)]
        clear = [r for r in free if not any(overlaps(r, b) for n, b in enumerate(boxes) if n != k)]
        placed.append((clear or free or [None])[0])
    return placed


def draw(picture: Image.Image, detections: list[dict], side: int = DRAWN_SIDE) -> Image.Image:
    """The picture at `side` px on its longer side with each box and a short label and score
    (the most confident faces labelled first; a label that would cover another is left out)."""
    scale = side / max(picture.size)
    shown = picture.resize((max(1, round(picture.width * scale)), max(1, round(picture.height * scale))),
                           Image.Resampling.LANCZOS if scale > 1 else Image.Resampling.BILINEAR)
    canvas = ImageDraw.Draw(shown)
    width = max(2, round(side / 320))
    font = ImageFont.load_default(size=max(12, round(side / 50)))
    ordered = sorted(detections, key=lambda d: -d["score"])
    boxes = [[v * scale for v in d["box"]] for d in ordered]
    texts = [f"{SHORT_LABELS.get(d['label'], d['label'])} {d['score']:.2f}" for d in ordered]
    sizes = []
    for text in texts:
        left, top, right, bottom = canvas.textbbox((0, 0), text, font=font)
        sizes.append((right + 6, bottom + 6))
    for d, box in zip(ordered, boxes):
        canvas.rectangle(box, outline=COLORS[d["label"]], width=width)
    for d, text, spot in zip(ordered, texts, place_labels(boxes, sizes, shown.size)):
        if spot is not None:
            canvas.rectangle(spot, fill=COLORS[d["label"]])
            canvas.text((spot[0] + 3, spot[1] + 3), text, fill=(255, 255, 255), font=font)
    return shown


def summary(detections: list[dict], score_threshold: float) -> str:
    if not detections:
        return f"Found no faces with a score of at least {score_threshold:.2f}."
    counts = {c: sum(d["label"] == c for d in detections) for c in CLASSES}
    listed = ", ".join(f"{n} {c}" for c, n in counts.items() if n)
    return f"Found {len(detections)} face{'s' * (len(detections) > 1)}: {listed}."


def detect_and_draw(image, score_threshold, backbone=DEFAULT_BACKBONE):
    """The tab's action: the picture with boxes, a sentence with the counts per class, a table."""
    picture = read_picture(image, min_side=MIN_SIDE)
    try:
        detections = detect_picture(picture, score_threshold, backbone)
    except checkpoints.MissingCheckpoint as e:
        return draw(picture, []), f"**No detector trained yet.** {e}", []
    rows = [[d["label"], d["score"], *d["box"]] for d in detections]
    return draw(picture, detections), summary(detections, score_threshold), rows


def detect_in_tab(image, score_threshold, backbone=DEFAULT_BACKBONE):
    """detect_and_draw for the tab's events: a picture it cannot use is said in the status
    (once, with nothing drawn), not raised as an error on every output."""
    try:
        return detect_and_draw(image, score_threshold, backbone)
    except BadInput as e:
        return None, f"**No answer:** {e}", []


def redetect(image, score_threshold, backbone=DEFAULT_BACKBONE):
    """The slider moved or another detector was picked: detect again, or nothing while no
    photo is there."""
    if image is None:
        return None, "", []
    return detect_in_tab(image, score_threshold, backbone)


# ---- the test split and the model card -------------------------------------------------------

def split_examples(n: int = 8) -> list[str]:
    """Paths of the first n test-split photos when the data is on this machine, else none."""
    try:
        root = data.face_mask_dir(download=False)
        records = split(load_annotations(root))["test"][:n] if (root / "annotations").exists() else []
        return [str(image_path(root, r["stem"])) for r in records]
    except (FileNotFoundError, OSError):
        return []


def pr_figure(pr_curves: dict):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 3.4))
    recall = np.linspace(0, 1, 101)
    for name, precision in pr_curves.items():
        p = np.array(precision, dtype=float)
        ax.plot(recall[p >= 0], p[p >= 0], label=name, color=np.array(COLORS[name]) / 255)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("Test split, IoU 0.5")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def failure_gallery(metrics: dict) -> list:
    """The test photos with the most mistakes at score 0.5, boxes as the model drew them."""
    try:
        root = data.face_mask_dir(download=False)
        out = []
        for f in metrics.get("failures", []):
            picture = read_picture(image_path(root, f["stem"]))
            found = [{"box": box, "label": CLASSES[label - 1], "score": score}
                     for *box, label, score in f["predictions"]]  # as evaluate() records them
            out.append((draw(picture, found, 640), f"{f['faces']} faces: {f['missed']} missed, "
                        f"{f['false_alarms']} false alarms, {f['wrong_class']} wrong class"))
        return out
    except (FileNotFoundError, OSError, BadInput):
        return []


def start_of(hyperparameters: dict) -> str:
    if hyperparameters.get("imagenet_backbone"):
        return "from ImageNet weights"
    if hyperparameters.get("backbone_init"):
        return f"from a backbone pre-trained here on face crops ({CROPS_COMMAND})"
    return "from scratch"


COMPARISON_HEADERS = ["detector", "mAP@0.5", "mAP@[.5:.95]", *(f"AP@0.5 {c}" for c in CLASSES),
                      "faces missed at 0.5", "faces under 16 px missed", "training"]


def comparison() -> list[list]:
    """One row per trained detector, measured on the same test split."""
    rows = []
    for backbone, name in DETECTORS.items():
        m = checkpoints.load_metrics(checkpoint_name(backbone))
        if not m:
            continue
        small = m.get("misses_by_size_at_0_5", {}).get("under 16 px")
        rows.append([name, round(m["test_map50"], 3), round(m["test_map"], 3),
                     *(round(m["per_class_ap50"][c], 3) for c in CLASSES),
                     f"{m['errors_at_0_5']['missed']} of {m['test_faces']}",
                     f"{small['missed']} of {small['faces']}" if small else "-",
                     f"{m['train_wall_time_s'] / 60:.0f} min"])
    return rows


def model_card(backbone: str = DEFAULT_BACKBONE):
    """Markdown, per-class AP rows, the precision-recall and training-curve figures, failures."""
    m = checkpoints.load_metrics(checkpoint_name(backbone))
    if not m:
        return f"No checkpoint yet: train it with `{train_command(backbone)}`.", [], None, None, []
    text = (f"Test split ({m['test_images']} photos, {m['test_faces']} faces): **mAP@0.5 {m['test_map50']:.3f}**, "
            f"mAP@[.5:.95] {m['test_map']:.3f} (COCO-style, torchmetrics with pycocotools). Faster R-CNN with a "
            f"{m['hyperparameters']['backbone']} FPN backbone trained "
            f"{start_of(m['hyperparameters'])} at "
            f"{m['hyperparameters']['min_size']} px, "
            f"{m['parameters']:,} parameters; epoch {m['best_epoch']} of {m['hyperparameters']['epochs']} kept for its "
            f"validation mAP@0.5 ({m['val_map50']:.3f}); trained in {m['train_wall_time_s'] / 60:.0f} min on "
            f"{m['device']}. The seed reported no mAP, only a training loss. Reproduce: `{m['command']}`")
    shown = lambda ap: "-" if ap is None or ap < 0 else f"{ap:.3f}"  # noqa: E731 (-1: no such face in the test split)
    rows = [[c, shown(m["per_class_ap50"].get(c)), shown(m["per_class_ap"].get(c)), m["faces_per_split"]["test"][c]]
            for c in CLASSES]
    fig = curves(m["history"], {"training loss": ["train_loss"], "validation mAP@0.5": ["val_map50"]}, TITLE)
    return text, rows, pr_figure(m["pr_curves50"]), fig, failure_gallery(m)


# ---- what the Overview shows -----------------------------------------------------------------

OVERVIEW = Entry("Face-mask detection", 10, train_command(),
                 [Figure("mAP (IoU 0.5)", checkpoint_name(), "test_map50", "{:.3f}")],
                 ["training loss 0.0307 only, no mAP (target: mAP 0.60 at IoU 0.5)"])


def thumbnail():
    """The Overview's picture of this experiment."""
    return curves_image({"validation": checkpoints.history(checkpoint_name(), "val_map50")}, "epoch", "mAP (IoU 0.5)")


def build():
    gr.Markdown("Upload a photo with people in it: the detector boxes every face it finds and says whether it "
                "wears a mask (green, **mask**: the dataset's with_mask), wears it wrongly (orange, **worn wrong**: "
                "mask_weared_incorrect) or wears none (red, **no mask**: without_mask), with its score. Move the "
                "slider to see less confident boxes; where labels would cover each other the most confident keep "
                "theirs, and the table lists every face.")
    for backbone, name in DETECTORS.items():
        if checkpoints.find(checkpoint_name(backbone)) is None:
            gr.Markdown(f"**The {name} detector is not trained yet.** Train it with `{train_command(backbone)}`; "
                        "until then it shows the photo without boxes.")
    with gr.Row():
        with gr.Column(scale=1):
            picture = gr.Image(type="filepath", image_mode=None, label="Your photo", height=300, elem_id="detection-image")
            threshold = gr.Slider(0.05, 0.95, value=0.5, step=0.05, label="Score threshold")
            detector = gr.Radio([(name, key) for key, name in DETECTORS.items()], value=DEFAULT_BACKBONE,
                                label="Detector", elem_id="detection-detector")
            detect_btn = gr.Button("Detect faces", variant="primary")
            status = gr.Markdown(elem_id="detection-status")
        with gr.Column(scale=2):
            shown = gr.Image(label="Faces found", interactive=False, height=640, elem_id="detection-result")
    table = gr.Dataframe(headers=["label", "score", "x0", "y0", "x1", "y1"], label="Detections (pixels of your photo)",
                         interactive=False)
    outputs = [shown, status, table]
    examples = split_examples()
    if examples:
        gr.Examples([[p, 0.5, DEFAULT_BACKBONE] for p in examples], inputs=[picture, threshold, detector], outputs=outputs,
                    fn=user_errors(detect_and_draw),
                    run_on_click=True, label="Photos from the test split (never trained on)",
                    api_name="detection_example")
    with gr.Accordion("Model card: both detectors compared, per-class AP, precision-recall curves, training curves, "
                      "failures", open=False):
        gr.Dataframe(comparison(), headers=COMPARISON_HEADERS, label="Both detectors on the same test split",
                     interactive=False)
        text, rows, pr, fig, failures = model_card()
        gr.Markdown(text)
        gr.Dataframe(rows, headers=["class", "AP@0.5", "AP@[.5:.95]", "test faces"], interactive=False)
        with gr.Row():
            gr.Plot(pr, label="Precision-recall curves")
            gr.Plot(fig, label="Training loss and validation mAP@0.5")
        gr.Gallery(failures, label="Test photos it gets most wrong (score >= 0.5)", columns=4, height=320)

    # The tab reads the upload itself (preprocess=False): a refused picture is said once in the
    # status and leaves the box, instead of a red "Error" on every output (core.ui).
    clear_refused_uploads(picture, "photo", api_name="detection_check_upload")
    handler = user_errors(detect_in_tab)
    inputs = [picture, threshold, detector]
    picture.upload(handler, inputs=inputs, outputs=outputs, api_name="detection_upload", preprocess=False)
    detect_btn.click(handler, inputs=inputs, outputs=outputs, api_name="detection_detect", preprocess=False)
    threshold.release(user_errors(redetect), inputs=inputs, outputs=outputs, api_name="detection_threshold",
                      preprocess=False)
    detector.input(user_errors(redetect), inputs=inputs, outputs=outputs, api_name="detection_detector",
                    preprocess=False)
