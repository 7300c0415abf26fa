"""Transfer learning: freezing really freezes, heads train, bring-your-own-classes end to
end, the experiments' smoke run, and the committed results."""
import json
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from conftest import run_cli, running_app
from core import checkpoints, labs
from core.errors import BadInput
from demos import transfer
from demos.examples.draw_digits import draw_digit
from models import transfer as models_transfer
from models.transfer import (BACKBONES, MissingImageNet, TransferNet, build, checkpoint_name, same_parameters,
                             train_command)
from train import transfer as training

needs_resnet20 = pytest.mark.skipif(not checkpoints.find("cifar10/resnet20"), reason="CIFAR-10 ResNet-20 not committed")


def test_checkpoint_names_and_commands():
    assert checkpoint_name("digits") == "transfer/digits"
    assert checkpoint_name("ants", "cifar10_resnet20") == "transfer/ants"
    assert checkpoint_name("ants", "imagenet_resnet18") == "transfer/ants_imagenet"
    assert BACKBONES["digits04_cnn"].checkpoint == "transfer/digits04_cnn"
    assert BACKBONES["cifar10_vgg"].checkpoint == "cifar10/vgg"
    assert BACKBONES["cifar10_vgg"].command == "python -m train.cifar10 --arch vgg"
    assert train_command("digits") == "python -m train.transfer --experiment digits"
    assert train_command("ants", "imagenet_resnet18") == \
        "python -m train.transfer --experiment ants --ants-backbone imagenet_resnet18"


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
    head = transfer.fit_head(examples)
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
    """The size study's first row (1 labelled digit a class, 3 draws, each strategy) rerun as
    `python -m train.transfer --experiment digits` ran it, on the committed digits 0-4 backbone."""
    if not checkpoints.find("transfer/digits"):
        pytest.skip("digits experiment not committed")
    from core.training import seed_everything

    metrics = checkpoints.load_metrics("transfer/digits")
    args = SimpleNamespace(data_dir=None, limit=0, checkpoint_dir=None)
    train, test = training.digits_5_to_9("train", args), training.digits_5_to_9("test", args)
    seed_everything(metrics["seed"])  # as run_digits does before its size study
    row = training.size_study(metrics["backbone"], train, test, (1,), metrics["steps"], metrics["repeats"], args,
                              torch.device("cpu"))["1"]
    for strategy, committed in metrics["examples_per_class"]["1"].items():
        assert abs(row[strategy]["mean"] - committed["mean"]) <= 0.01, (strategy, row[strategy], committed)


# ---- torchvision's ImageNet ResNet-18, when torch's cache holds it ------------------------------

@pytest.fixture
def fake_imagenet_cache(tmp_path, monkeypatch):
    """A torch hub directory holding a ResNet-18 state_dict under torchvision's file name
    (random weights: nothing can be downloaded here; only the loading path is tested)."""
    from torchvision.models import resnet18

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path))
    torch.manual_seed(0)
    state = resnet18().state_dict()
    models_transfer.imagenet_weights_file().parent.mkdir(parents=True)
    torch.save(state, models_transfer.imagenet_weights_file())
    models_transfer.backbone.cache_clear()
    yield state
    models_transfer.backbone.cache_clear()


def test_imagenet_backbone_is_offered_only_when_cached(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path))
    assert "imagenet_resnet18" not in transfer.available_backbones()
    assert transfer.default_backbone() != "imagenet_resnet18"
    with pytest.raises(BadInput, match="not in torch's cache"):
        transfer.fit_head({"a": [np.zeros((40, 40, 3), np.uint8)], "b": [np.ones((40, 40, 3), np.uint8)]},
                          "imagenet_resnet18")
    with pytest.raises(MissingImageNet):
        build("imagenet_resnet18", "frozen", 2)
    with pytest.raises(SystemExit, match="not in torch's cache"):
        training.main(["--experiment", "ants", "--ants-backbone", "imagenet_resnet18", "--limit", "8",
                       "--checkpoint-dir", str(tmp_path / "ck")])


def test_imagenet_backbone_loads_from_the_cache_and_stays_frozen(fake_imagenet_cache):
    assert transfer.available_backbones()[-1] == "imagenet_resnet18"
    assert transfer.default_backbone() == "imagenet_resnet18"
    model = build("imagenet_resnet18", "frozen", 2)
    assert torch.equal(model.features[0].weight, fake_imagenet_cache["conv1.weight"])
    assert torch.equal(model.features[7][1].bn2.running_var, fake_imagenet_cache["layer4.1.bn2.running_var"])
    before = [p.clone() for p in model.features.parameters()]
    images = torch.randint(0, 256, (4, 3, 232, 232), dtype=torch.uint8)
    for _ in training.fit(model, "frozen", images, torch.tensor([0, 1, 0, 1]), steps=2, seed=0, batch_size=4):
        pass
    assert all(torch.equal(a, b) for a, b in zip(before, model.features.parameters()))
    assert model.embed(training.prepare("imagenet", images, None)).shape == (4, 512)


def test_bring_your_own_classes_on_imagenet_features(fake_imagenet_cache):
    red = [Image.new("RGB", (300, 200), (200 + k, 20, 20)) for k in range(3)]
    blue = [Image.new("RGB", (120, 160), (20, 20, 200 + k)) for k in range(3)]
    head = transfer.fit_head({"red": red, "blue": blue}, "imagenet_resnet18")
    assert head.backbone == "imagenet_resnet18" and head.weight.shape == (2, 512)
    probs = transfer.predict(head, np.full((50, 50, 3), (210, 25, 25), np.uint8))
    assert set(probs) == {"red", "blue"} and abs(sum(probs.values()) - 1) < 1e-5


@pytest.mark.slow
def test_ants_experiment_on_imagenet_features_smoke(fake_imagenet_cache, tmp_path, monkeypatch):
    """The whole experiment on ImageNet features (at 48 pixels, not 224, and one size: a smoke run)."""
    monkeypatch.setitem(training.SIZES, "ants", (5,))
    result = training.main(["--experiment", "ants", "--ants-backbone", "imagenet_resnet18", "--limit", "8",
                            "--ants-size", "48",
                            "--steps", "2", "--repeats", "1", "--curve-epochs", "1", "--checkpoint-dir", str(tmp_path)])
    assert set(result["ants"]["val_accuracy_per_epoch"]) == {"frozen", "finetune", "scratch"}
    metrics = json.loads((tmp_path / "transfer" / "ants_imagenet" / "metrics.json").read_text())
    assert metrics["backbone"] == "imagenet_resnet18" and metrics["image_size"] == 48


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
    assert counts == "Drawings added: class 1: 1"
    (inputs,) = drawings["1"]
    assert set(inputs) == {BACKBONES[b].input for b in transfer.available_backbones()}
    assert all(t.dtype == torch.float16 for t in inputs.values())
    assert state_bytes(drawings) < 40_000  # 28x28 for the digit CNN, 3x64x64 for the photo backbones


def test_drawings_per_class_are_capped_with_a_message_naming_the_limit():
    drawings = {}
    for k in range(transfer.MAX_IMAGES_PER_CLASS):
        drawings, _ = transfer.add_drawing(drawings, {"composite": ink(300, k % 5)}, "2")
    with pytest.raises(BadInput, match=f"Class 2 already has {transfer.MAX_IMAGES_PER_CLASS} drawings"):
        transfer.add_drawing(drawings, {"composite": ink(2000)}, "2")
    drawings, _ = transfer.add_drawing(drawings, {"composite": ink(300)}, "3")  # other classes still take some
    # the most a session can hold: every class full
    assert state_bytes(drawings) / len(sum(drawings.values(), [])) * transfer.MAX_CLASSES * \
        transfer.MAX_IMAGES_PER_CLASS < 4_000_000


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


def wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


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
