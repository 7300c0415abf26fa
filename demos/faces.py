"""Face verification: are two photos the same person? Faces are found with OpenCV's Haar
cascade, cropped like LFW's, embedded by the ConvNeXt trained here (with or without center
loss) and compared by cosine similarity; a gallery search names the nearest LFW people;
maps of the embedding space and the ROC curve show what center loss changes."""
import functools
import json
import threading
from pathlib import Path

import gradio as gr
import numpy as np
import skimage
import torch
from PIL import Image

from core import checkpoints, data
from core.errors import BadInput
from core.pictures import open_picture, read_picture
from core.plots import curves_image
from core.results import Entry, Figure
from core.ui import user_errors
from models.faces import (DETECT_SIDE, FaceNet, NoFace, build_gallery, checkpoint_name, cosine_similarity, embed,
                          find_face, load_facenet, load_gallery, to_tensor, train_command)

TITLE = "Face verification"
KINDS = {"center": "ConvNeXt + center loss", "plain": "ConvNeXt, cross-entropy only"}
WEIGHTS = {"center": 0.01, "plain": 0.0}
CHECKPOINT_ROOT = None  # None: checkpoints/ (tests point it elsewhere)
MIN_SIDE = 32  # smaller photos are refused: a face needs more pixels than this
MAX_SIDE = 2 * DETECT_SIDE  # larger photos are shrunk to this (big JPEGs decode at a reduced size)
# Eileen Collins, in a picture that ships inside scikit-image (a dependency), not from LFW.
ASTRONAUT = Path(skimage.__file__).parent / "data" / "astronaut.png"


def _check_kind(kind) -> str:
    if kind not in KINDS:
        raise BadInput(f"Unknown model {kind!r}; choose one of {list(KINDS)}.")
    return kind


@functools.cache
def _load(kind: str, root):
    return load_facenet(WEIGHTS[kind], root=root)


def load_model(kind: str = "center") -> FaceNet:
    return _load(_check_kind(kind), CHECKPOINT_ROOT)


def metrics(kind: str = "center") -> dict:
    return checkpoints.load_metrics(checkpoint_name(WEIGHTS[_check_kind(kind)]), root=CHECKPOINT_ROOT)


def threshold(kind: str = "center") -> float:
    load_model(kind)  # a missing checkpoint says which command to run
    return float(metrics(kind)["threshold"])


def band(kind: str = "center") -> dict | None:
    """The uncertain band round the threshold (band.json, chosen on validation pairs by
    `python -m train.faces --band`): low, high and what it gave; None for a checkpoint without one."""
    path = checkpoints.find(checkpoint_name(WEIGHTS[_check_kind(kind)]), root=CHECKPOINT_ROOT)
    if path is None or not (path / "band.json").exists():
        return None
    return json.loads((path / "band.json").read_text())


# ---- photos and faces -------------------------------------------------------------------------

def face_embedding(crop: Image.Image, kind: str) -> torch.Tensor:
    model = load_model(kind)
    return embed(model, to_tensor([crop], model.image_size), "cpu")  # (1, D)


# ---- verification -------------------------------------------------------------------------------

def _verify(image_a, image_b, kind: str):
    kind = _check_kind(kind)
    limit = threshold(kind)
    photos = [(read_picture(image, what, min_side=MIN_SIDE, max_side=MAX_SIDE), what)
              for image, what in ((image_a, "first photo"), (image_b, "second photo"))]
    crops, notes, faceless = [], [], []
    for photo, what in photos:
        try:
            crop, note = find_face(photo, what)
        except NoFace:
            faceless.append(what)
            continue
        crops.append(crop)
        if note:
            notes.append(f"{what.capitalize()}: {note}")
    if faceless:  # no verdict without both faces
        raise NoFace(f"No face found in the {' or the '.join(faceless)}, so there is no answer. Try a photo where "
                     "one face looks at the camera and fills a good part of the picture.")
    similarity = float(cosine_similarity(face_embedding(crops[0], kind), face_embedding(crops[1], kind))[0])
    found = band(kind)
    low, high = (found["low"], found["high"]) if found else (limit, limit)
    if low <= similarity < high:
        same, decision = None, "uncertain"
    else:
        same = similarity >= limit
        decision = "same person" if same else "different people"
    result = {"similarity": round(similarity, 4), "same_person": same, "decision": decision,
              "threshold": round(limit, 4), "uncertain_band": [round(low, 4), round(high, 4)],
              "model": kind, "notes": notes}
    return result, crops


def verify(image_a, image_b, kind: str = "center") -> dict:
    """Same person or not: similarity (cosine, -1..1), decision ("same person", "different
    people", or "uncertain" inside the uncertain band, where same_person is None), the
    threshold and band (both chosen on LFW pairs of people the model never saw, not the test
    pairs), the model, and notes. Raises NoFace (a BadInput) naming a photo without a face."""
    return _verify(image_a, image_b, kind)[0]


def compare(image_a, image_b, kind: str = "center"):
    """The tab's action: the two face crops and a sentence."""
    result, crops = _verify(image_a, image_b, kind)
    m, found = metrics(kind), band(kind)
    low, high = result["uncertain_band"]
    if result["decision"] == "uncertain":
        side = "same person" if result["similarity"] >= result["threshold"] else "different people"
        text = (f"### Uncertain\nCosine similarity **{result['similarity']:.3f}** is too near the threshold "
                f"({result['threshold']:.3f}) to tell: between {low:.3f} and {high:.3f}, at least one answer in "
                f"three was wrong on the validation pairs. It leans to *{side}*.")
    else:
        text = (f"### {result['decision'].capitalize()}\nCosine similarity **{result['similarity']:.3f}**; the "
                f"threshold is {result['threshold']:.3f} (at it, {m.get('test_accuracy', 0):.1%} of LFW's test pairs "
                "were decided right).")
    if found:
        text += (f" Outside the uncertain band ({low:.3f} to {high:.3f}), {found['test_accuracy_outside_band']:.1%} "
                 f"of the {found['test_coverage']:.0%} of test pairs it answers were right.")
    if result["notes"]:
        text += "\n\n" + "\n".join(f"- {n}" for n in result["notes"])
    return crops[0], crops[1], text


def compare_in_tab(image_a, image_b, kind: str = "center"):
    """compare() for the tab's button: the two photos (a refused one emptied, so it does not
    stay in the preview), the two crops and the verdict. A refusal is said once, in the
    verdict's place, and the previous answer's crops go: nothing is shown for photos no longer there."""
    photos = [gr.update(), gr.update()]
    try:
        for k, (image, what) in enumerate(((image_a, "first photo"), (image_b, "second photo"))):
            try:
                read_picture(image, what, min_side=MIN_SIDE, max_side=MAX_SIDE)
            except BadInput:
                if image is not None:
                    photos[k] = None
                raise
        return (*photos, *compare(image_a, image_b, kind))
    except (BadInput, checkpoints.MissingCheckpoint) as e:
        return (*photos, None, None, f"### No answer\n{e}")


def refuse_upload(upload: dict | None, what: str, upload_folder: str):
    """For the tab, as a picture arrives and before Gradio decodes anything: a file that is not a
    picture, or too big, leaves the preview at once (None) and is said once in the verdict's
    place; anything else keeps it. Either way the last comparison's crops and verdict go."""
    path = (upload or {}).get("path")
    if not path or not Path(path).resolve().is_relative_to(Path(upload_folder).resolve()):
        return gr.update(), None, None, ""
    try:
        open_picture(path, what).close()
    except BadInput as e:
        return None, None, None, f"### No answer\n{e}"
    return gr.update(), None, None, ""


# ---- who is this: the nearest LFW people --------------------------------------------------------

def gallery_folder() -> Path | None:
    """LFW's images/ when the data is configured (a mirror, or already in the data directory)."""
    if data.mirror_dir() is not None:
        return data.lfw_dir() / "images"
    folder = data.data_dir() / "lfw" / "images"
    return folder if folder.exists() else None


_gallery_lock = threading.Lock()  # one thread builds a missing gallery; the others wait for it


@functools.cache
def _load_gallery(kind: str, root) -> dict:
    path = checkpoints.find(checkpoint_name(WEIGHTS[kind]), root=root)
    gallery = load_gallery(path) if path is not None else None
    if gallery is None:  # an older checkpoint without gallery.safetensors: embed the photos now
        folder = gallery_folder()
        if folder is None:
            raise BadInput("No gallery: it is not in the checkpoint and the LFW photos are not configured "
                           f"here (set DLP_DATA_MIRROR, then run `{train_command(WEIGHTS[kind])} --gallery`).")
        gallery = build_gallery(load_model(kind), folder)
    return gallery


def gallery(kind: str = "center") -> dict:
    """names, portraits (paths under LFW's images/) and mean unit embeddings (P, D)."""
    load_model(kind)  # a missing checkpoint says which command to run
    with _gallery_lock:
        return _load_gallery(_check_kind(kind), CHECKPOINT_ROOT)


def who_is_this(image, kind: str = "center", k: int = 5) -> list[tuple[str, float]]:
    """The k LFW people (with at least 10 photos) whose faces are nearest, with similarities."""
    crop, _ = find_face(read_picture(image, "photo", min_side=MIN_SIDE, max_side=MAX_SIDE), "photo")
    return _nearest(crop, _check_kind(kind), k)


def _nearest(crop: Image.Image, kind: str, k: int) -> list[tuple[str, float]]:
    g = gallery(kind)
    scores = cosine_similarity(face_embedding(crop, kind).expand(len(g["means"]), -1), g["means"])
    top = scores.argsort(descending=True)[:k]
    return [(g["names"][i].replace("_", " "), round(float(scores[i]), 4)) for i in top]


def search(image, kind: str = "center"):
    """The tab's gallery action: the face crop, the five nearest people's photos, a note."""
    # read and searched once, not again by who_is_this
    crop, note = find_face(read_picture(image, "photo", min_side=MIN_SIDE, max_side=MAX_SIDE), "photo")
    matches = _nearest(crop, _check_kind(kind), 5)
    text = ("Nearest of the LFW people with at least 10 photos (similarity to the mean of 10 of theirs). "
            "Someone who is not in LFW still gets five names: the nearest, not a match.")
    folder = gallery_folder()
    if folder is None:  # the names without their photos (on a Space without the data, say)
        text += "\n\n" + "\n".join(f"{k}. {n} ({s:.2f})" for k, (n, s) in enumerate(matches, 1))
        return crop, [], (f"{note}\n\n" if note else "") + text
    g = gallery(kind)
    # Pictures, not paths: the data directory need not be one Gradio serves files from.
    shown = [(Image.open(folder / g["portraits"][g["names"].index(n.replace(" ", "_"))]).convert("RGB"),
              f"{n} ({s:.2f})") for n, s in matches]
    return crop, shown, (f"{note}\n\n" if note else "") + text


# ---- embedding space and ROC ------------------------------------------------------------------

def analysis(kind: str) -> dict | None:
    path = checkpoints.find(checkpoint_name(WEIGHTS[kind]), root=CHECKPOINT_ROOT)
    if path is None or not (path / "analysis.json").exists():
        return None
    return json.loads((path / "analysis.json").read_text())


def embedding_figure(kind: str):
    """t-SNE of the test embeddings of the 12 test people with the most photos."""
    import matplotlib.pyplot as plt

    found = analysis(_check_kind(kind))
    if found is None:
        return None
    p = found["projection"]
    fig, ax = plt.subplots(figsize=(5, 4.4))
    labels = np.array(p["label"])
    for k, person in enumerate(p["people"]):
        mine = labels == k
        ax.scatter(np.array(p["x"])[mine], np.array(p["y"])[mine], s=14, color=plt.cm.tab20(k % 20),
                   label=person.replace("_", " "))
    ax.set_title(KINDS[kind], fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=6, loc="best", markerscale=0.8)
    fig.tight_layout()
    return fig


def roc_figure():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4.4))
    for kind in KINDS:
        found, m = analysis(kind), metrics(kind)
        if found is None:
            continue
        ax.plot(found["roc"]["fpr"], found["roc"]["tpr"],
                label=f"{KINDS[kind]} (AUC {m['test_auc']:.3f}, TAR@FAR=1% {m['test_tar_at_far_1e-2']:.2f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.5, ls="--")
    ax.set_xscale("symlog", linthresh=0.01)
    ax.set_xlabel("false accept rate (different people called the same)")
    ax.set_ylabel("true accept rate")
    ax.set_title("ROC on LFW's pairsDevTest (1,000 pairs)", fontsize=10)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def summary() -> str:
    rows = ["| model | accuracy | threshold | ROC AUC | TAR @ FAR 1% | training |", "|---|---|---|---|---|---|"]
    for kind in KINDS:
        m = metrics(kind)
        if not m:
            rows.append(f"| {KINDS[kind]} | not trained yet: `{train_command(WEIGHTS[kind])}` | | | | |")
            continue
        rows.append(f"| {KINDS[kind]} | {m['test_accuracy']:.1%} | {m['threshold']:.3f} | {m['test_auc']:.3f} | "
                    f"{m['test_tar_at_far_1e-2']:.1%} | {m['train_wall_time_s'] / 60:.0f} min |")
    return ("\n".join(rows) + "\n\nLFW's pairsDevTest: 500 same and 500 different pairs of people the models never "
            "saw, at the threshold chosen on other unseen people's pairs. The seed reported 0.715 on its own split. "
            "Published small models reach 96-99% on LFW only after training on hundreds of thousands of other "
            "people's faces; these saw 5,135 photos of 453 people.")


# ---- what the Overview shows -----------------------------------------------------------------

OVERVIEW = Entry("Face verification", 11, train_command(WEIGHTS["center"]),
                 [Figure("verification accuracy with center loss", checkpoint_name(WEIGHTS["center"]), "test_accuracy",
                         "{:.1%}"),
                  Figure("without", checkpoint_name(WEIGHTS["plain"]), "test_accuracy", "{:.1%}"),
                  Figure("ROC AUC", checkpoint_name(WEIGHTS["center"]), "test_auc", "{:.3f}")],
                 ["verification accuracy 71.5% on its own split"],
                 "LFW's 1,000 pairsDevTest pairs, people never trained on")


def thumbnail():
    """The Overview's picture of this experiment."""
    return curves_image({"center loss": checkpoints.history(checkpoint_name(WEIGHTS["center"]), "test_auc"),
                         "cross-entropy only": checkpoints.history(checkpoint_name(WEIGHTS["plain"]), "test_auc")},
                        "epoch", "pair ROC AUC")


def build():
    gr.Markdown("Two photos, one question: the same person? Each face is found (OpenCV's Haar cascade), cropped "
                "like LFW's photos, shrunk to 64x64 and embedded by a small ConvNeXt trained here on 453 LFW "
                "people; the cosine similarity of the embeddings decides. Faces should be frontal, like LFW's.")
    try:
        load_model("center")
        missing = ""
    except checkpoints.MissingCheckpoint as e:
        missing = f"**{e}**"
    gr.Markdown(missing)
    with gr.Row():
        photo_a = gr.Image(type="filepath", image_mode=None, label="First photo", height=260, elem_id="faces-photo-a")
        photo_b = gr.Image(type="filepath", image_mode=None, label="Second photo", height=260, elem_id="faces-photo-b")
        with gr.Column():
            kind = gr.Radio([(label, k) for k, label in KINDS.items()], value="center", label="Model")
            compare_btn = gr.Button("Compare", variant="primary")
    with gr.Row():
        face_a = gr.Image(label="Face found (first)", interactive=False, height=160, buttons=[])
        face_b = gr.Image(label="Face found (second)", interactive=False, height=160, buttons=[])
        verdict = gr.Markdown(elem_id="faces-verdict")
    if ASTRONAUT.exists():
        gr.Examples([[str(ASTRONAUT), str(ASTRONAUT), "center"]], inputs=[photo_a, photo_b, kind],
                    outputs=[face_a, face_b, verdict], fn=user_errors(compare), run_on_click=True,
                    label="Example (scikit-image's astronaut, twice)", api_name="faces_example")

    with gr.Accordion("Who is this? The five nearest LFW people", open=False):
        with gr.Row():
            photo_q = gr.Image(type="filepath", image_mode=None, label="A photo", height=240, elem_id="faces-photo-query")
            with gr.Column():
                face_q = gr.Image(label="Face found", interactive=False, height=140, buttons=[])
                search_btn = gr.Button("Search the gallery")
        matches = gr.Gallery(label="Nearest people", columns=5, height=220)
        search_note = gr.Markdown("The gallery: the 158 LFW people with at least 10 photos.")

    with gr.Accordion("The embedding space and the ROC curve: with and without center loss", open=True):
        gr.Markdown(summary())
        with gr.Row():
            gr.Plot(embedding_figure("center"), label="Test faces, center loss (t-SNE)")
            gr.Plot(embedding_figure("plain"), label="Test faces, cross-entropy only (t-SNE)")
            gr.Plot(roc_figure(), label="ROC")

    # The page's button says a refusal in the verdict's place and empties the refused photo;
    # API callers keep /faces_compare (three outputs, a refusal is an error), on a hidden trigger.
    compare_btn.click(compare_in_tab, inputs=[photo_a, photo_b, kind],
                      outputs=[photo_a, photo_b, face_a, face_b, verdict], api_name="faces_compare_in_tab",
                      api_visibility="private")
    # A refusal before the handler (Gradio decoding a huge upload) would be a toast plus an
    # "Error" on every output, and the picture would stay: check each upload's header first.
    for photo, what, name in ((photo_a, "first photo", "a"), (photo_b, "second photo", "b")):
        photo.upload(functools.partial(refuse_upload, what=what, upload_folder=photo.GRADIO_CACHE), inputs=photo,
                     outputs=[photo, face_a, face_b, verdict], preprocess=False, api_name=f"faces_check_photo_{name}",
                     api_visibility="private", show_progress="hidden")
    gr.Button(visible=False).click(user_errors(compare), inputs=[photo_a, photo_b, kind],
                                   outputs=[face_a, face_b, verdict], api_name="faces_compare")
    search_btn.click(user_errors(search), inputs=[photo_q, kind], outputs=[face_q, matches, search_note],
                     api_name="faces_who_is_this")
