"""Face verification: ConvNeXt shapes, center loss, the identity-disjoint LFW split, pair
evaluation on made-up scores, a tiny train-then-eval cycle, and the tab's verify()."""
import functools
import json

import numpy as np
import pytest
import torch
from PIL import Image

from core import checkpoints, data
from core.errors import BadInput
from models.faces import (CenterLoss, ConvNeXtBlock, FaceNet, build_gallery, center_optimizer, checkpoint_name,
                          load_gallery, train_command)
from train import faces as training
from train.faces import Pair

has_lfw = data.mirror_dir() is not None or (data.data_dir() / "lfw" / "images").exists()
needs_lfw = pytest.mark.skipif(not has_lfw, reason="LFW not configured (set DLP_DATA_MIRROR)")


def test_checkpoint_names_and_train_commands():
    assert (checkpoint_name(0.01), train_command(0.01)) == ("faces/center", "python -m train.faces --center-loss 0.01")
    assert (checkpoint_name(0), train_command(0)) == ("faces/plain", "python -m train.faces --center-loss 0")
    from demos import faces

    assert faces.OVERVIEW.command == train_command(0.01)


def test_convnext_block_keeps_shape_and_starts_near_identity():
    block = ConvNeXtBlock(16, drop_path=0.5).eval()
    x = torch.randn(2, 16, 9, 9)
    y = block(x)
    assert y.shape == x.shape
    assert (y - x).abs().max() < 1e-3  # layer scale starts at 1e-6


def test_facenet_shapes():
    net = FaceNet(num_classes=7, dims=(8, 16, 16, 32), depths=(1, 1, 2, 1), embedding_dim=12, image_size=32).eval()
    e, logits = net(torch.randn(3, 3, 32, 32))
    assert e.shape == (3, 12) and logits.shape == (3, 7)
    assert net.features(torch.randn(3, 3, 32, 32)).shape == (3, 32, 2, 2)  # stem /2, then three halvings


def test_drop_path_drops_whole_samples_in_training_only():
    block = ConvNeXtBlock(4, drop_path=0.999)
    block.gamma.data.fill_(1.0)
    x = torch.randn(64, 4, 5, 5)
    torch.manual_seed(0)
    kept = ((block.train()(x) - x).abs().amax(dim=(1, 2, 3)) > 0).sum()
    assert kept < 5  # nearly every residual branch dropped
    assert ((block.eval()(x) - x).abs().amax(dim=(1, 2, 3)) > 0).all()


def test_center_loss_pulls_features_to_centres_and_centres_to_features():
    loss_fn = CenterLoss(num_classes=3, dim=4)
    loss_fn.centers.data = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0]])
    labels = torch.tensor([0, 0, 2])
    features = torch.randn(3, 4, requires_grad=True)
    loss = loss_fn(features, labels)
    loss.backward()
    centres = loss_fn.centers.detach()[labels]
    assert torch.allclose(features.grad, (features - centres).detach() / 3)  # the gradient points away from the centre
    moved = features.detach() - 0.5 * features.grad
    assert ((moved - centres).norm(dim=1) < (features.detach() - centres).norm(dim=1)).all()

    before = loss_fn.centers.detach().clone()
    center_optimizer(loss_fn, lr=0.5).step()
    after = loss_fn.centers.detach()
    mean0 = features.detach()[:2].mean(0)
    assert (after[0] - mean0).norm() < (before[0] - mean0).norm()
    assert (after[2] - features.detach()[2]).norm() < (before[2] - features.detach()[2]).norm()
    assert torch.equal(after[1], before[1])  # no feature of class 1: its centre stays


def test_identity_disjoint_split_on_made_up_people():
    counts = {"Ann": 6, "Bob": 5, "Cy": 4, "Di": 2, "Ed": 9}
    test_pairs = [Pair("Ann", 1, "Ann", 2, True), Pair("Bob", 1, "Di", 1, False)]
    people = training.training_people(counts, test_pairs, min_images=4)
    assert people == ["Cy", "Ed"]
    dev = [Pair("Cy", 1, "Cy", 2, True), Pair("Di", 1, "Di", 2, True), Pair("Di", 1, "Ed", 3, False),
           Pair("Ann", 1, "Di", 2, False)]
    assert training.unseen_pairs(dev, people) == [dev[1], dev[3]]


def test_read_pairs(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_text("2\nAnn\t1\t3\nBob_Lee\t2\t4\nAnn\t1\tBob_Lee\t4\nCy\t2\tDi\t1\n")
    pairs = training.read_pairs(path)
    assert pairs == [("Ann", 1, "Ann", 3, True), ("Bob_Lee", 2, "Bob_Lee", 4, True),
                     ("Ann", 1, "Bob_Lee", 4, False), ("Cy", 2, "Di", 1, False)]
    assert (pairs[2].person_b, pairs[2].photo_b, pairs[2].same) == ("Bob_Lee", 4, False)


@needs_lfw
def test_no_test_person_is_trained_on_or_sets_the_threshold():
    base = data.lfw_dir()
    index = training.photo_index(base)
    counts = {}
    for person, _ in index:
        counts[person] = counts.get(person, 0) + 1
    test_pairs = training.read_pairs(base / "pairsDevTest.txt")
    people = training.training_people(counts, test_pairs, 4)
    threshold_pairs = training.unseen_pairs(training.read_pairs(base / "pairsDevTrain.txt"), people)
    assert len(test_pairs) == 1000 and len(people) == 453
    assert not set(people) & training.people_in(test_pairs)
    assert not set(people) & training.people_in(threshold_pairs)
    assert sum(p.same for p in threshold_pairs) == 517 and len(threshold_pairs) == 1400
    assert all((p.person_a, p.photo_a) in index and (p.person_b, p.photo_b) in index for p in test_pairs + threshold_pairs)


def test_threshold_choice_and_accuracy_on_separable_scores():
    scores = [0.9, 0.8, 0.6, 0.5, 0.2, 0.1]
    same = [True, True, True, False, False, False]
    t = training.choose_threshold(scores, same)
    assert t == pytest.approx(0.55)
    m = training.pair_metrics(scores, same, t)
    assert m["accuracy"] == 1.0 and m["auc"] == 1.0 and m["tar_at_far_1e-2"] == 1.0


def test_threshold_choice_with_one_overlap():
    scores = [0.9, 0.3, 0.7, 0.4, 0.2]
    same = [True, True, False, False, False]
    t = training.choose_threshold(scores, same)
    assert t == pytest.approx(0.8)  # 4 of 5 right; 0.25 would get only 3
    assert training.pair_metrics(scores, same, t)["accuracy"] == pytest.approx(0.8)


def test_auc_and_tar_at_far_with_known_answers():
    negatives = np.linspace(0, 0.5, 100)
    positives = np.array([0.45, 0.6, 0.7, 0.8])
    scores = np.concatenate([positives, negatives])
    same = np.arange(len(scores)) < 4
    m = training.pair_metrics(scores, same, threshold=0.55)
    # 0.45 beats the 90 negatives below it; the others beat all 100
    assert m["auc"] == pytest.approx((3 * 100 + 90) / 400)
    # one false accept in 100 is allowed at FAR 1e-2: the threshold can fall to 0.5, which 3 of 4 pass
    assert m["tar_at_far_1e-2"] == pytest.approx(0.75)
    assert m["accuracy"] == pytest.approx(103 / 104)


TINY = ["--epochs", "1", "--limit", "64", "--batch-size", "16", "--image-size", "32", "--dims", "8", "16", "16", "32",
        "--depths", "1", "1", "1", "1", "--embedding-dim", "16"]


@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("faces")
    trained = training.main([*TINY, "--checkpoint-dir", str(root)])
    return root, trained


@pytest.mark.slow
@needs_lfw
def test_tiny_training_run_then_eval(tiny_checkpoints, capsys, monkeypatch):
    root, trained = tiny_checkpoints
    folder = root / "faces" / "center"
    assert {"model.safetensors", "config.json", "metrics.json", "analysis.json"} <= {p.name for p in folder.iterdir()}
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["train_images"] == 64 and len(metrics["history"]) == 1
    assert metrics["command"].startswith("python -m train.faces") and metrics["hyperparameters"]["center_loss"] == 0.01
    assert 0 <= metrics["test_accuracy"] <= 1 and 0 <= metrics["test_auc"] <= 1
    analysis = json.loads((folder / "analysis.json").read_text())
    assert len(analysis["projection"]["x"]) == len(analysis["projection"]["label"]) > 0 and analysis["roc"]["fpr"]
    evaluated = training.main(["--eval", "--limit", "64", "--checkpoint-dir", str(root)])
    assert evaluated["test_accuracy"] == trained["test_accuracy"] and evaluated["test_auc"] == trained["test_auc"]
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["threshold"] == trained["threshold"]
    from demos import faces  # the tab runs on what the train script saved (32x32 faces here, not 64x64)

    monkeypatch.setattr(faces, "CHECKPOINT_ROOT", root)
    result = faces.verify(str(faces.ASTRONAUT), str(faces.ASTRONAUT))
    assert result["similarity"] == pytest.approx(1.0, abs=1e-4) and result["decision"] == "same person"
    assert result["threshold"] == pytest.approx(trained["threshold"], abs=1e-4)


@pytest.fixture
def tab(monkeypatch):
    """The tab on the committed checkpoints (the slow tier also runs it on a tiny one trained here)."""
    from demos import faces

    monkeypatch.setattr(faces, "CHECKPOINT_ROOT", None)
    return faces


def test_verify_two_copies_of_one_photo(tab):
    result = tab.verify(str(tab.ASTRONAUT), str(tab.ASTRONAUT))
    assert result["similarity"] == pytest.approx(1.0, abs=1e-4)
    assert result["decision"] == "same person" and result["notes"] == []
    assert set(result) >= {"similarity", "decision", "threshold"}


def test_verify_notes_which_face_of_several_it_used(tab):
    face = Image.open(tab.ASTRONAUT).convert("RGB")
    two = Image.new("RGB", (1024, 512))
    two.paste(face, (0, 0))
    two.paste(face, (512, 0))
    result = tab.verify(two, face)
    assert len(result["notes"]) == 1 and "used the largest" in result["notes"][0]


def test_no_verdict_without_a_face(tab):
    """A photo without a face gets a message naming it, never a verdict on some other square."""
    grey = np.full((90, 120), 128, dtype=np.uint8)
    with pytest.raises(tab.NoFace, match="No face found in the second photo, so there is no answer"):
        tab.verify(str(tab.ASTRONAUT), grey)
    with pytest.raises(BadInput, match="No face found in the first photo or the second photo"):
        tab.verify(grey, grey)
    with pytest.raises(BadInput, match="No face found in the photo"):
        tab.who_is_this(grey)
    *photos, face_a, face_b, text = tab.compare_in_tab(grey, str(tab.ASTRONAUT))
    assert face_a is None and face_b is None  # the previous answer's crops go
    assert text.startswith("### No answer") and "first photo" in text and "person" not in text.lower()


def test_the_tab_empties_a_refused_photo_and_says_why_once(tab, tmp_path):
    text_file = tmp_path / "notes.png"
    text_file.write_text("not an image")
    photo_a, photo_b, face_a, face_b, text = tab.compare_in_tab(str(tab.ASTRONAUT), str(text_file))
    assert photo_b is None and photo_a == tab.gr.update()  # the refused one leaves the preview, the other stays
    assert (face_a, face_b) == (None, None) and text.count("Could not read the second photo") == 1
    *_, text = tab.compare_in_tab(str(tab.ASTRONAUT), str(tab.ASTRONAUT))
    assert text.startswith("### Same person")


def test_uncertain_band_on_made_up_scores():
    # below the threshold 0.5: 0.45 and 0.4 are wrong, 0.35 right, 0.1 and 0.0 right;
    # at or above it: 0.55 wrong, 0.6 and 0.9 right
    scores = [0.0, 0.1, 0.35, 0.4, 0.45, 0.55, 0.6, 0.9]
    same = [False, False, False, True, True, False, True, True]
    low, high = training.choose_uncertain_band(scores, same, 0.5, max_error=1 / 3)
    # taking in 0.45 and 0.4 (both wrong) gains 2 - 2/3; taking in 0.35 (right) too would lose 1/3
    assert low == pytest.approx(0.375)
    assert high == pytest.approx(0.575)  # 0.55 (wrong) in, 0.6 (right) out
    m = training.band_metrics(scores, same, 0.5, (low, high))
    assert m["coverage"] == pytest.approx(5 / 8) and m["accuracy_outside_band"] == 1.0
    assert m["accuracy_inside_band"] == 0.0
    # no wrong answers: no band
    assert training.choose_uncertain_band(scores, [s >= 0.5 for s in scores], 0.5) == (0.5, 0.5)


def _pair_at(tab, monkeypatch, similarity: float):
    """verify() on two photos whose embeddings are made to have this cosine similarity."""
    vectors = iter([torch.tensor([[1.0, 0.0]]), torch.tensor([[similarity, (1 - similarity ** 2) ** 0.5]])])
    monkeypatch.setattr(tab, "face_embedding", lambda crop, kind: next(vectors))
    return tab.verify(str(tab.ASTRONAUT), str(tab.ASTRONAUT))


def test_a_pair_near_the_threshold_is_uncertain(tab, monkeypatch):
    band = tab.band("center")
    assert band["low"] < tab.threshold("center") < band["high"]
    # the Obama and Bush pair: 0.426 against the threshold 0.400
    result = _pair_at(tab, monkeypatch, 0.426)
    assert result["decision"] == "uncertain" and result["same_person"] is None
    assert result["uncertain_band"] == [round(band["low"], 4), round(band["high"], 4)]
    assert _pair_at(tab, monkeypatch, band["high"] + 0.01)["decision"] == "same person"
    assert _pair_at(tab, monkeypatch, band["low"] - 0.01)["decision"] == "different people"
    assert _pair_at(tab, monkeypatch, band["low"] + 0.001)["decision"] == "uncertain"
    vectors = iter([torch.tensor([[1.0, 0.0]]), torch.tensor([[0.426, (1 - 0.426 ** 2) ** 0.5]])])
    monkeypatch.setattr(tab, "face_embedding", lambda crop, kind: next(vectors))
    *_, text = tab.compare(str(tab.ASTRONAUT), str(tab.ASTRONAUT))
    assert text.startswith("### Uncertain") and "Same person" not in text and "leans to *same person*" in text


def test_committed_bands_were_chosen_on_validation_pairs():
    for center_loss in (0.01, 0):
        path = checkpoints.find(checkpoint_name(center_loss))
        band = json.loads((path / "band.json").read_text())
        assert band["threshold"] == pytest.approx(checkpoints.load_metrics(checkpoint_name(center_loss))["threshold"])
        assert band["low"] < band["threshold"] < band["high"]
        assert "validation" in band["chosen_on"] and band["max_error"] == pytest.approx(1 / 3)


@pytest.mark.slow
@needs_lfw
def test_committed_band_recomputed_from_the_validation_pairs():
    """The band in band.json is what choose_uncertain_band gives on the validation pairs'
    scores, recomputed now by --eval (the test pairs are not looked at)."""
    result = evaluated(0.01)
    band = json.loads((checkpoints.find(checkpoint_name(0.01)) / "band.json").read_text())
    assert (result["threshold"], result["band_low"], result["band_high"]) == \
        pytest.approx((band["threshold"], band["low"], band["high"]), abs=1e-5)
    # the band's validation answers were wrong more than once in three
    assert result["validation_accuracy_inside_band"] < 2 / 3
    assert band["validation_coverage"] == pytest.approx(result["validation_band_coverage"], abs=1e-6)


@pytest.mark.parametrize("bad, message", [
    (None, "No first photo"), (np.zeros((12, 40, 3), np.uint8), "only 40x12"), (np.zeros((40, 40, 7), np.uint8), "shape"),
])
def test_verify_refuses_unusable_input(tab, bad, message):
    with pytest.raises(BadInput, match=message):
        tab.verify(bad, str(tab.ASTRONAUT))


def test_verify_refuses_files_that_are_not_usable_pictures(tab, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(BadInput, match="Could not read the second photo"):
        tab.verify(str(tab.ASTRONAUT), str(text))
    huge = tmp_path / "huge.png"
    Image.new("L", (8000, 8000)).save(huge, compress_level=1)
    with pytest.raises(BadInput, match="megapixels"):
        tab.verify(str(huge), str(tab.ASTRONAUT))


def test_tab_builds_with_and_without_checkpoints(tab, tmp_path, monkeypatch):
    import gradio as gr

    with gr.Blocks() as demo:
        tab.build()
    assert {"faces_compare", "faces_who_is_this"} <= {fn.api_name for fn in demo.fns.values()}
    monkeypatch.setattr(tab, "CHECKPOINT_ROOT", tmp_path)
    with gr.Blocks() as empty:
        tab.build()
    texts = " ".join(str(getattr(b, "value", "")) for b in empty.blocks.values())
    assert "python -m train.faces --center-loss 0.01" in texts
    with pytest.raises(checkpoints.MissingCheckpoint):
        tab.verify(str(tab.ASTRONAUT), str(tab.ASTRONAUT))


# ---- the committed models --------------------------------------------------------------------

@functools.cache
def evaluated(center_loss: float) -> dict:
    """`python -m train.faces --eval`, once per model and test session."""
    return training.main(["--center-loss", str(center_loss), "--eval"])


@pytest.mark.slow
@needs_lfw
@pytest.mark.parametrize("center_loss", [0.01, 0])
def test_committed_model_reproduces_its_metrics(center_loss):
    """Re-measured now on pairsDevTest (people never trained on); the issue's target is 80%."""
    committed = checkpoints.load_metrics(checkpoint_name(center_loss))
    result = evaluated(center_loss)
    assert result["test_pairs"] == 1000
    assert result["test_accuracy"] == pytest.approx(committed["test_accuracy"], abs=1e-6)
    assert result["test_auc"] == pytest.approx(committed["test_auc"], abs=1e-6)
    assert result["test_accuracy"] >= 0.80, result


def test_verify_from_several_threads_at_once(tab):
    """Gradio runs events in worker threads; OpenCV's cascade must not be shared between them."""
    import concurrent.futures

    face = Image.open(tab.ASTRONAUT).convert("RGB")
    sizes = [256, 512, 1024, 2048, 384, 768] * 4  # different sizes: the cascade keeps per-size scale data

    def compare(side):
        photo = face.resize((side, side))
        return tab.verify(photo, photo)

    with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(compare, sizes))
    assert all(r["decision"] == "same person" for r in results)


# ---- who is this: the committed gallery ------------------------------------------------------

@pytest.mark.parametrize("center_loss", [0.01, 0])
def test_committed_gallery_matches_its_checkpoint(center_loss, tmp_path):
    """gallery.safetensors is the committed weights' embedding of LFW (re-embedded here for
    three people when the data is configured)."""
    path = checkpoints.find(checkpoint_name(center_loss))
    gallery = load_gallery(path)
    assert len(gallery["names"]) == len(gallery["portraits"]) == len(gallery["means"]) == 158
    assert torch.allclose(gallery["means"].norm(dim=1), torch.ones(158), atol=1e-5)
    if not has_lfw:
        return
    images = data.lfw_dir() / "images"
    some = [0, 70, 157]
    for k in some:
        (tmp_path / gallery["names"][k]).symlink_to(images / gallery["names"][k])
    model = checkpoints.load(FaceNet, checkpoint_name(center_loss), "")
    again = build_gallery(model, tmp_path)
    assert again["names"] == [gallery["names"][k] for k in some]
    assert again["portraits"] == [gallery["portraits"][k] for k in some]
    assert torch.allclose(again["means"], gallery["means"][some], atol=1e-4)


@needs_lfw
def test_who_is_this_finds_a_gallery_person_from_an_unseen_photo():
    """A photo of a gallery person that is not one of the ten their gallery entry averages."""
    from demos import faces

    images = data.lfw_dir() / "images"
    photo = sorted((images / "Colin_Powell").glob("*.jpg"))[20]
    names = [name for name, _ in faces.who_is_this(str(photo))]
    assert "Colin Powell" in names, names
    crop, shown, note = faces.search(str(photo))
    assert len(shown) == 5 and shown[0][1].startswith(names[0]) and "nearest" in note.lower()


def test_who_is_this_without_the_data_names_people_without_photos(monkeypatch, tmp_path):
    from demos import faces

    monkeypatch.delenv("DLP_DATA_MIRROR", raising=False)
    monkeypatch.setenv("DLP_DATA_DIR", str(tmp_path))
    assert faces.gallery_folder() is None
    matches = faces.who_is_this(str(faces.ASTRONAUT))
    assert len(matches) == 5 and all(-1 <= s <= 1 for _, s in matches)
    crop, shown, note = faces.search(str(faces.ASTRONAUT))
    assert shown == [] and matches[0][0] in note
