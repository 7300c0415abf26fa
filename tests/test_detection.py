"""Face-mask detection: the VOC parser, box-keeping transforms, the split, boxes mapped back
to the uploaded picture, bad input, a tiny train-evaluate cycle and the tab's endpoint."""
import functools
import json

import numpy as np
import pytest
import torch
from PIL import Image

from core import checkpoints, data
from core.errors import BadInput
from demos import detection
from models.detection import (CLASSES, CROPS_CHECKPOINT, CROPS_COMMAND, EfficientNetFPN, FaceMaskDetector,
                              checkpoint_name, image_path, load_annotations, parse_voc, rescale_boxes, split,
                              train_command)
from train import detection as training

ROOT = data.mirror_dir() / "face-mask" if data.mirror_dir() else None
needs_data = pytest.mark.skipif(ROOT is None or not (ROOT / "annotations").exists(),
                                reason="no face-mask data (set DLP_DATA_MIRROR)")

VOC = """<annotation><filename>x.jpg</filename><size><width>100</width><height>80</height><depth>3</depth></size>
<object><name>with_mask</name><bndbox><xmin>-5</xmin><ymin>10</ymin><xmax>30</xmax><ymax>90</ymax></bndbox></object>
<object><name>mask_weared_incorrect</name><bndbox><xmin>70</xmin><ymin>50</ymin><xmax>60</xmax><ymax>40</ymax></bndbox></object>
<object><name>without_mask</name><bndbox><xmin>120</xmin><ymin>5</ymin><xmax>130</xmax><ymax>20</ymax></bndbox></object>
</annotation>"""


def test_checkpoint_names_and_train_commands():
    assert (checkpoint_name(), train_command()) == ("detection_efficientnet", "python -m train.detection")
    assert (checkpoint_name("mobilenet_v3"), train_command("mobilenet_v3")) == \
        ("detection_mobilenet_v3", "python -m train.detection --backbone mobilenet_v3")
    assert (CROPS_CHECKPOINT, CROPS_COMMAND) == ("detection_backbone", "python -m train.detection_backbone")
    assert detection.OVERVIEW.command == train_command() and list(detection.DETECTORS)[0] == "efficientnet"


def test_efficientnet_fpn_loads_imagenet_weights_and_freezes_its_early_layers():
    fpn = EfficientNetFPN(width=32)
    before = fpn.body._blocks[5]._project_conv.weight.clone()
    fpn.load_imagenet()
    assert not torch.equal(before, fpn.body._blocks[5]._project_conv.weight)
    assert not any(p.requires_grad for p in fpn.body._conv_stem.parameters())
    assert not any(p.requires_grad for block in fpn.body._blocks[:3] for p in block.parameters())  # stages 0 and 1
    assert all(p.requires_grad for p in fpn.body._blocks[3].parameters())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fpn.body.modules())  # frozen statistics
    levels = fpn(torch.rand(1, 3, 96, 128))
    assert [tuple(v.shape) for v in levels.values()] == [(1, 32, 12, 16), (1, 32, 6, 8), (1, 32, 3, 4), (1, 32, 2, 2)]


def test_a_stride_4_level_gets_the_smallest_anchors_and_the_box_heads_pooling():
    fpn = EfficientNetFPN(width=32, stride4=True)
    levels = fpn(torch.rand(1, 3, 96, 128))
    assert [tuple(v.shape) for v in levels.values()] == [(1, 32, 24, 32), (1, 32, 12, 16), (1, 32, 6, 8),
                                                         (1, 32, 3, 4), (1, 32, 2, 2)]
    detector = FaceMaskDetector("efficientnet", min_size=96, max_size=128, width=32, stride4=True).detector
    assert detector.rpn.anchor_generator.sizes == ((8,), (16,), (32,), (64,), (128,))
    assert detector.roi_heads.box_roi_pool.featmap_names == ["0", "1", "2", "3"]  # not the max-pooled level
    detector.eval()
    with torch.no_grad():
        out = detector([torch.rand(3, 96, 128)])
    assert out[0]["boxes"].shape[1] == 4
    with pytest.raises(ValueError, match="efficientnet backbone only"):
        FaceMaskDetector("mobilenet_v3", stride4=True)


def test_voc_parser_clips_sorts_and_drops(tmp_path):
    path = tmp_path / "x.xml"
    path.write_text(VOC)
    r = parse_voc(path)
    assert (r["width"], r["height"]) == (100, 80)
    assert r["boxes"].tolist() == [[0, 10, 30, 80], [60, 40, 70, 50]]  # clipped; corners put in order
    assert r["labels"].tolist() == [1, 3]  # the box wholly outside the picture is gone
    path.write_text(VOC.replace("without_mask", "mask_on_chin"))
    with pytest.raises(ValueError, match="mask_on_chin"):
        parse_voc(path)


@needs_data
def test_every_box_of_the_real_annotations_is_inside_its_image():
    records = load_annotations(ROOT)
    assert len(records) == 853 and records[0]["stem"] == "maksssksksss0"
    for r in records:
        b = r["boxes"]
        assert (b[:, :2] >= 0).all() and (b[:, 2] <= r["width"]).all() and (b[:, 3] <= r["height"]).all()
        assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
    labels = torch.cat([r["labels"] for r in records])
    assert torch.bincount(labels, minlength=4)[1:].tolist() == [3232, 717, 123]
    with Image.open(image_path(ROOT, records[0]["stem"])) as image:
        assert image.size == (records[0]["width"], records[0]["height"])


def picture_with_a_red_box():
    """A grey 60x90 picture with a red face-sized box at x 10..30, y 20..45."""
    image = torch.full((3, 60, 90), 128, dtype=torch.uint8)
    image[:, 20:45, 10:30] = torch.tensor([230, 20, 20], dtype=torch.uint8)[:, None, None]
    return image, torch.tensor([[10.0, 20, 30, 45]])


def red_inside(image, box) -> float:
    """Share of the box's pixels that are redder than they are green (the marked region)."""
    x0, y0, x1, y1 = (round(v) for v in box.tolist())
    region = image[:, y0:y1, x0:x1].float()
    return (region[0] > region[1] + 50).float().mean().item()


def test_flip_resize_and_augment_keep_boxes_on_their_pixels():
    image, boxes = picture_with_a_red_box()
    flipped, fboxes = training.hflip(image, boxes)
    assert fboxes.tolist() == [[60, 20, 80, 45]] and red_inside(flipped, fboxes[0]) == 1
    for scale in (0.5, 1.7):
        resized, rboxes = training.resize(image, boxes, scale)
        assert resized.shape[1:] == (round(60 * scale), round(90 * scale))
        assert red_inside(resized, rboxes[0]) > 0.9
    for seed in range(6):
        out, aboxes, _ = training.augment(image, boxes, torch.Generator().manual_seed(seed))
        assert out.shape == image.shape and red_inside(out, aboxes[0]) > 0.9
        outside = out.clone()
        x0, y0, x1, y1 = (round(v) for v in aboxes[0].tolist())
        outside[:, y0:y1, x0:x1] = 0
        assert (outside[0].float() > outside[1].float() + 50).sum() == 0  # no red left outside the box


def test_crops_keep_boxes_on_their_pixels_and_drop_faces_cut_off():
    image, boxes = picture_with_a_red_box()  # 60 x 90, the red box at x 10..30, y 20..45
    labels = torch.tensor([2])
    for seed in range(12):
        gen = torch.Generator().manual_seed(seed)
        out, cboxes, clabels = training.augment(image, boxes, gen, labels, short_side=120, crop=64)
        assert out.shape == (3, 64, 64)  # resized to 120 x 180, then a window holding the face
        assert clabels.tolist() == [2] and red_inside(out, cboxes[0]) > 0.9
        assert (cboxes >= 0).all() and (cboxes <= 64).all()
    kept = training.random_crop(image, boxes, labels, 200, torch.Generator())  # bigger than the photo: all of it
    assert kept[0].shape == image.shape and torch.equal(kept[1], boxes)
    cut = training.random_crop(image[:, :, :15], boxes, labels, 15, torch.Generator())  # a quarter of the face
    assert len(cut[1]) == 0 and len(cut[2]) == 0


@needs_data
def test_split_is_stratified_deterministic_and_disjoint():
    records = load_annotations(ROOT)
    parts = split(records)
    stems = {k: [r["stem"] for r in v] for k, v in parts.items()}
    assert stems == {k: [r["stem"] for r in v] for k, v in split(records).items()}
    assert sum(map(len, stems.values())) == 853 and len(set().union(*stems.values())) == 853
    assert 120 <= len(stems["val"]) <= 140 and 120 <= len(stems["test"]) <= 140
    for part in parts.values():
        assert sum((r["labels"] == 3).sum().item() for r in part) >= 10  # mask_weared_incorrect in each


def test_photos_with_the_rare_class_are_repeated():
    records = [{"labels": torch.tensor(labels)} for labels in ([1, 1], [2, 3], [3], [2])]
    order = training.epoch_order(records, 3, torch.Generator().manual_seed(0))
    assert sorted(order) == [0, 1, 1, 1, 2, 2, 2, 3]


def test_boxes_are_mapped_back_to_the_original_size():
    boxes = torch.tensor([[0.0, 0, 320, 240], [160, 120, 400, 250]])
    out = rescale_boxes(boxes, (320, 240), (6000, 4500))
    assert out[0].tolist() == [0, 0, 6000, 4500] and out[1].tolist() == [3000, 2250, 6000, 4500]


class WholePicture:
    """A stand-in detector: one confident face over the whole input, one unsure face in its
    top-left quarter."""

    def __call__(self, images):
        h, w = images[0].shape[1:]
        return [{"boxes": torch.tensor([[0.0, 0, w, h], [0, 0, w / 2, h / 2]]), "labels": torch.tensor([1, 3]),
                 "scores": torch.tensor([0.9, 0.3])}]


@pytest.fixture
def fake_model(monkeypatch):
    monkeypatch.setattr(detection, "load_model", lambda backbone: WholePicture())


def test_detect_maps_boxes_of_a_huge_photo_back(fake_model, tmp_path):
    path = tmp_path / "huge.jpg"
    Image.new("RGB", (6000, 4000), (90, 120, 150)).save(path)
    found = detection.detect(str(path), 0.5)
    assert found == [{"box": [0, 0, 6000, 4000], "label": "with_mask", "score": 0.9}]
    low = detection.detect(str(path), 0.2)
    assert [d["label"] for d in low] == ["with_mask", "mask_weared_incorrect"] and low[1]["box"] == [0, 0, 3000, 2000]


@pytest.mark.parametrize("picture", [
    np.full((64, 80), 128, dtype=np.uint8),                                     # grayscale
    np.dstack([np.full((40, 50, 3), 200, np.uint8), np.zeros((40, 50), np.uint8)]),  # fully transparent
    np.random.default_rng(0).random((40, 60, 3)),                               # floats in [0, 1]
])
def test_detect_accepts_awkward_pictures(fake_model, picture):
    found = detection.detect(picture)
    assert found[0]["box"] == [0, 0, picture.shape[1], picture.shape[0]]


def test_detect_refuses_bad_input_clearly(fake_model, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    for bad, message in [(None, "No picture"), (str(text), "not a picture"),
                         (np.zeros((4, 4, 3), np.uint8), "too small"), (np.zeros((9, 9, 7), np.uint8), "shape")]:
        with pytest.raises(BadInput, match=message):
            detection.detect(bad)
    for threshold in (float("nan"), 1.5, "high", None):
        with pytest.raises(BadInput, match="threshold"):
            detection.detect(np.zeros((20, 20, 3), np.uint8), threshold)


def test_labels_never_cover_each_other():
    """A crowd of touching faces: each label goes above, below or inside its box where it
    covers no label placed before; where none is free the box goes unlabelled."""
    boxes = [[x, 100, x + 40, 150] for x in range(0, 400, 42)] + [[0, 0, 30, 20]]
    spots = detection.place_labels(boxes, [(90, 20)] * len(boxes), (400, 300))
    shown = [r for r in spots if r is not None]
    assert len(shown) >= 3 and spots[0] == (0, 80, 90, 100)  # the first (most confident) above its box
    for i, a in enumerate(shown):
        assert 0 <= a[0] and a[2] <= 400 and 0 <= a[1] and a[3] <= 300
        for b in shown[i + 1:]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)
    assert spots[-1] == (0, 20, 90, 40)  # at the top edge: below its box
    # drawn: the best-scored face is labelled first, in its class's colour
    faces = [{"box": [10 + 60 * i, 40, 60 + 60 * i, 100], "label": "without_mask", "score": 0.5 + i / 100} for i in range(5)]
    drawn = np.asarray(detection.draw(Image.new("RGB", (320, 160), "white"), faces))
    red = (drawn[..., 0] > 200) & (drawn[..., 1] < 60) & (drawn[..., 2] < 60)
    assert red.any() and drawn.shape[:2] == (480, 960)


def test_the_tab_says_what_it_found_or_how_to_train(fake_model, monkeypatch, tmp_path):
    picture = np.full((50, 70, 3), 180, np.uint8)
    drawn, text, rows = detection.detect_and_draw(picture, 0.5)
    # drawn enlarged (960 px on the longer side), so the label is readable in the page
    assert drawn.size == (960, 686) and "1 with_mask" in text and rows[0][:2] == ["with_mask", 0.9]
    assert "no faces" in detection.detect_and_draw(picture, 0.95)[1]
    monkeypatch.undo()
    monkeypatch.setattr(checkpoints, "CHECKPOINTS", tmp_path)  # nothing trained there
    detection.load_model.cache_clear()
    _, text, rows = detection.detect_and_draw(picture, 0.5)
    assert "python -m train.detection" in text and rows == []


@pytest.mark.slow
@needs_data
def test_tiny_training_run_then_eval_and_its_model_card(monkeypatch, tmp_path):
    args = ["--limit", "4", "--min-size", "64", "--eval-sizes", "64", "--batch-size", "2", "--checkpoint-dir", str(tmp_path)]
    trained = training.main(["--epochs", "1", *args])
    folder = tmp_path / "detection_efficientnet"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert {"model.safetensors", "config.json"} <= {p.name for p in folder.iterdir()}
    assert metrics["history"][0]["epoch"] == 1 and "val_map50" in metrics["history"][0]
    assert metrics["command"].startswith("python -m train.detection") and metrics["seed"] == 0
    assert set(metrics["pr_curves50"]) <= set(CLASSES) and metrics["split"] == {"train": 4, "val": 4, "test": 4}
    by_size = metrics["misses_by_size_at_0_5"]
    assert sum(v["faces"] for v in by_size.values()) == metrics["test_faces"]
    assert sum(v["missed"] for v in by_size.values()) == metrics["errors_at_0_5"]["missed"]
    evaluated = training.main(["--eval", *args])
    assert evaluated["test_map50"] == trained["test_map50"] and evaluated["test_map"] == metrics["test_map"]
    model = FaceMaskDetector.from_pretrained(str(folder))
    assert model.min_size == 64
    monkeypatch.setattr(checkpoints, "CHECKPOINTS", tmp_path)
    text, rows, pr, curves, failures = detection.model_card()
    assert "mAP@0.5" in text and [r[0] for r in rows] == list(CLASSES)
    compared = detection.comparison()  # only the detector trained there
    assert len(compared) == 1 and compared[0][0] == detection.DETECTORS["efficientnet"]
    assert compared[0][1] == round(metrics["test_map50"], 3) and len(compared[0]) == len(detection.COMPARISON_HEADERS)
    assert pr is not None and curves is not None and len(failures) == 4


@pytest.mark.slow
@needs_data
def test_tiny_training_run_on_crops_validating_late(monkeypatch, tmp_path):
    result = training.main(["--epochs", "2", "--val-from", "2", "--limit", "4", "--min-size", "96", "--eval-sizes", "96", "--train-crop", "64",
                            "--fpn-width", "32", "--head-size", "128", "--batch-size", "2", "--checkpoint-dir", str(tmp_path)])
    metrics = json.loads((tmp_path / "detection_efficientnet" / "metrics.json").read_text())
    assert metrics["hyperparameters"]["train_crop"] == 64 and metrics["test_map50"] == result["test_map50"]
    config = json.loads((tmp_path / "detection_efficientnet" / "config.json").read_text())
    assert (config["min_size"], config["width"], config["representation_size"]) == (96, 32, 128)
    # epoch 1 was not validated, so it cannot be the model kept; the card still draws the curves
    assert metrics["history"][0]["val_map50"] is None and metrics["history"][1]["val_map50"] is not None
    assert metrics["best_epoch"] == 2 and metrics["val_map50"] == metrics["history"][1]["val_map50"]
    monkeypatch.setattr(checkpoints, "CHECKPOINTS", tmp_path)
    text, rows, pr, curves, failures = detection.model_card()
    assert "mAP@0.5" in text and curves is not None


def test_tiny_stride_4_run_keeps_the_evaluation_size_validation_chose(tmp_path):
    training.main(["--epochs", "1", "--limit", "4", "--min-size", "96", "--train-crop", "64", "--stride4",
                   "--eval-sizes", "96", "128", "--fpn-width", "32", "--head-size", "128", "--batch-size", "2",
                   "--checkpoint-dir", str(tmp_path)])
    metrics = json.loads((tmp_path / "detection_efficientnet" / "metrics.json").read_text())
    config = json.loads((tmp_path / "detection_efficientnet" / "config.json").read_text())
    by_size = {int(k): v for k, v in metrics["val_map50_by_eval_size"].items()}
    assert set(by_size) == {96, 128} and config["stride4"] is True
    chosen = max(by_size, key=lambda size: (by_size[size], -size))
    assert config["min_size"] == metrics["eval_size"] == chosen and config["max_size"] == 2 * chosen
    assert metrics["hyperparameters"]["eval_sizes"] == [96, 128]


def test_backbone_crops_centre_the_face_with_context():
    from train import detection_backbone as backbone

    photo = torch.zeros(3, 100, 200, dtype=torch.uint8)
    photo[:, 40:60, 90:110] = 255  # a 20-px white "face"
    out = backbone.crop(photo, (90, 40, 110, 60))
    assert out.shape == (3, 64, 64)
    assert out[:, 24:40, 24:40].min() >= 250 and out[:, :8].max() <= 5  # the face fills the middle half
    edge = backbone.crop(photo, (0, 0, 20, 20))  # reaching past the photo: grey outside it
    assert edge[:, 2, 2].tolist() == [124, 124, 124]


@pytest.mark.slow
@needs_data
def test_backbone_pretraining_then_detector_starts_from_it(tmp_path):
    from train import detection_backbone as backbone

    common = ["--limit", "4", "--checkpoint-dir", str(tmp_path)]
    trained = backbone.main(["--epochs", "1", "--batch-size", "16", "--crops-per-epoch", "32", *common])
    assert backbone.main(["--eval", *common])["val_accuracy"] == trained["val_accuracy"]
    metrics = json.loads((tmp_path / "detection_backbone" / "metrics.json").read_text())
    assert metrics["train_crops"]["without_mask"] >= 80 and metrics["train_crops"]["background"] > 0  # LFW's faces too
    detector = training.main(["--backbone", "mobilenet_v3", "--epochs", "1", "--min-size", "64", "--eval-sizes", "64", "--batch-size", "2",
                              *common])
    assert "test_map50" in detector
    config = json.loads((tmp_path / "detection_mobilenet_v3" / "metrics.json").read_text())["hyperparameters"]
    assert config["backbone_init"] is True


@needs_data
def test_endpoint_of_the_tab(fake_model, tmp_path):
    """The tab's upload event as the app wires it (in-process; tests/test_bad_input.py sends
    every endpoint nasty input through gradio_client against a running app)."""
    from app import build_app

    demo = build_app(["detection"])
    path = tmp_path / "photo.png"
    Image.new("RGB", (120, 90), (10, 120, 200)).save(path)
    drawn, text, table = demo(str(path), 0.5, "mobilenet_v3", api_name="detection_upload")
    assert "with_mask" in text and Image.open(drawn).size == (960, 720)


# Floors: what each committed detector measures. The ImageNet one meets the issue's without_mask
# AP@0.5 >= 0.55, mAP@0.5 >= 0.65 and mAP >= 0.35 (asserted below).
TARGETS = {"efficientnet": {"test_map50": 0.71, "test_map": 0.39, "without_mask": 0.59},
           "mobilenet_v3": {"test_map50": 0.45, "test_map": 0.23, "without_mask": 0.36}}


@functools.cache
def evaluated(backbone: str) -> dict:
    """`python -m train.detection --backbone <backbone> --eval`, once per session."""
    if checkpoints.find(checkpoint_name(backbone)) is None:
        pytest.skip(f"no detector trained yet ({train_command(backbone)})")
    return training.main(["--backbone", backbone, "--eval"])


@pytest.mark.slow
@needs_data
@pytest.mark.parametrize("backbone", [
    "efficientnet",
    # the earlier detector's --eval on the other xdist worker: the two evaluations take minutes each
    pytest.param("mobilenet_v3", marks=pytest.mark.xdist_group("detection_mobilenet_v3"))])
def test_committed_detector_reproduces_its_metrics(backbone):
    """--eval re-measures the committed detector on the test split: the same numbers as
    recorded, and no change may make it worse than its floor."""
    result, committed = evaluated(backbone), checkpoints.load_metrics(checkpoint_name(backbone))
    assert result["test_images"] == 128 and abs(result["test_map50"] - committed["test_map50"]) < 1e-6
    assert result["per_class_ap50"] == pytest.approx(committed["per_class_ap50"], abs=1e-6)
    assert result["test_map"] == pytest.approx(committed["test_map"], abs=1e-6)
    assert result["per_class_ap"] == pytest.approx(committed["per_class_ap"], abs=1e-6)
    assert result["errors_at_0_5"] == committed["errors_at_0_5"]
    assert result["misses_by_size_at_0_5"] == committed["misses_by_size_at_0_5"]
    floor = TARGETS[backbone]
    assert result["test_map50"] >= floor["test_map50"] and result["test_map"] >= floor["test_map"], result
    assert result["per_class_ap50"]["without_mask"] >= floor["without_mask"], result


@pytest.mark.slow
@needs_data
def test_imagenet_detector_reaches_the_issues_map_targets():
    result = evaluated("efficientnet")
    assert result["test_map50"] >= 0.65 and result["test_map"] >= 0.35, result


@pytest.mark.slow
@needs_data
@pytest.mark.skipif(checkpoints.find("detection_backbone") is None,
                    reason="no backbone pre-trained yet (python -m train.detection_backbone)")
def test_committed_backbone_reproduces_its_crop_accuracy():
    from train import detection_backbone as backbone

    committed = checkpoints.load_metrics("detection_backbone")
    result = backbone.main(["--eval"])
    assert result["val_accuracy"] == pytest.approx(committed["val_accuracy"], abs=1e-6)
    assert result["val_accuracy"] >= 0.85, result
