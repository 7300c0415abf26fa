"""The semi-supervised GAN: its losses, its data split, a whole train-evaluate cycle, the
committed classifier re-measured, and the GAN tab's functions for it."""
import argparse

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core import checkpoints
from core.errors import BadInput
from models import sgan
from train import sgan as train_sgan
from conftest import run_cli


def test_discriminator_loss_is_the_gan_loss_of_d_equal_z_over_z_plus_1():
    """With the fake class's logit fixed at 0, D(x) = Z / (Z + 1) = sigmoid(logsumexp(logits)):
    the unsupervised loss is binary cross-entropy on that, real as 1 and fake as 0."""
    g = torch.Generator().manual_seed(0)
    lab, unl, fake = (torch.randn(8, 10, generator=g) * 3 for _ in range(3))
    y = torch.randint(0, 10, (8,), generator=g)
    supervised, unsupervised = sgan.discriminator_loss(lab, y, unl, fake)
    d_real, d_fake = unl.exp().sum(1) / (unl.exp().sum(1) + 1), fake.exp().sum(1) / (fake.exp().sum(1) + 1)
    expected = -(d_real.log().mean() + (1 - d_fake).log().mean())
    assert unsupervised.item() == pytest.approx(expected.item(), rel=1e-5)
    assert supervised.item() == pytest.approx(F.cross_entropy(lab, y).item())
    # no overflow where exp() would: logits of 200
    big = torch.full((2, 10), 200.0)
    assert torch.isfinite(torch.stack(sgan.discriminator_loss(big, y[:2], big, -big))).all()


def test_feature_matching_compares_batch_means_only():
    real = torch.randn(50, 250)
    assert sgan.feature_matching_loss(real, real[torch.randperm(50)]).item() == pytest.approx(0, abs=1e-10)
    assert sgan.feature_matching_loss(real, real + 1).item() == pytest.approx(1.0, rel=1e-5)


def test_the_networks_shapes_and_noise_only_while_training():
    model = sgan.SemiSupervisedGAN()
    fake = model.generator(torch.randn(4, sgan.LATENT_DIM))
    assert fake.shape == (4, 1, 28, 28) and 0 <= fake.min() and fake.max() <= 1
    logits, features = model.classifier(fake.detach())
    assert logits.shape == (4, 10) and features.shape == (4, 250)
    model.eval()
    x = torch.rand(3, 1, 28, 28)
    torch.testing.assert_close(model(x), model(x))  # no noise at evaluation
    model.train()
    assert not torch.allclose(model(x), model(x))  # Gaussian noise on every layer while training


def test_the_split_draws_ten_labels_a_class_and_keeps_validation_apart():
    args = argparse.Namespace(data_dir=None, limit=5000, seed=0, labels=100)
    parts = train_sgan.split(args)
    x, y = parts["labelled"]
    assert len(x) == 100 and torch.bincount(y, minlength=10).tolist() == [10] * 10
    val_x, _ = parts["val"]
    flat = lambda t: {bytes(row.numpy()) for row in t.view(len(t), -1)}  # noqa: E731
    assert len(val_x) == 500 and not flat(val_x) & flat(parts["unlabelled"])
    assert flat(x) <= flat(parts["unlabelled"])  # labelled digits are unlabelled ones too, as in the paper
    again = train_sgan.split(args)
    assert torch.equal(again["labelled"][1], y)


def test_labelled_batches_cycle_through_every_label():
    x = torch.zeros(20, 28, 28, dtype=torch.uint8)
    x[:, 0, 0] = torch.arange(20)  # each digit marked with its index
    batches = list(train_sgan.labelled_batches(x, torch.arange(20) % 10, 6, 10, torch.Generator().manual_seed(0)))
    assert len(batches) == 6 and all(b[0].shape == (10, 1, 28, 28) for b in batches)
    drawn = torch.cat([(b[0][:, 0, 0, 0] * 255).round().long() for b in batches])
    assert torch.bincount(drawn, minlength=20).tolist() == [3] * 20  # 60 draws of 20 digits: each 3 times
    assert torch.equal(torch.cat([b[1] for b in batches]), drawn % 10)  # each with its own label


@pytest.mark.slow  # about 40 s: two short runs and the --eval of their classifiers
def test_sgan_train_resume_and_eval_cycle(tmp_path):
    common = ["--model", "sgan", "--epochs", "2", "--limit", "2000", "--checkpoint-dir", str(tmp_path)]
    result = run_cli("train.gan", *common, "--sweep")
    assert result["labels"] == 100 and result["val_images"] == 200 and 1 <= result["epoch_kept"] <= 2
    assert {(r["method"], r["labels"]) for r in result["sweep"]} >= {("sgan", 20), ("supervised", 1000),
                                                                     ("supervised", 1800)}
    evaluated = run_cli("train.gan", "--model", "sgan", "--eval", "--limit", "2000", "--checkpoint-dir", str(tmp_path))
    assert evaluated["test_accuracy"] == result["test_accuracy"]
    rows = {f"{r['method']}_{r['labels'] if r['labels'] in sgan.LABEL_COUNTS else 'all'}": r["test_accuracy"]
            for r in result["sweep"] if not (r["method"] == "sgan" and r["labels"] == 100)}
    assert evaluated["sweep"] == rows
    # an interrupted run resumes where it stopped and ends where an unbroken one ends
    other = tmp_path / "resumed"
    common = ["--model", "sgan", "--epochs", "2", "--limit", "2000", "--checkpoint-dir", str(other)]
    from conftest import run_cli_failing
    run_cli_failing("train.gan", *common, "--stop-after", "1")
    resumed = run_cli("train.gan", *common, "--resume")
    assert resumed["test_accuracy"] == result["test_accuracy"]


def committed_or_skip():
    if checkpoints.find(sgan.checkpoint_name()) is None:
        pytest.skip("no committed semi-supervised GAN: python -m train.gan --model sgan --sweep")


@pytest.mark.slow
def test_committed_sgan_is_re_measured_and_beats_its_labels_alone():
    """--eval on the 10,000 test digits gives what metrics.json says, for the model and every
    point of its curve; with the GAN, 100 labels do far better than the 100 labels alone."""
    committed_or_skip()
    m = checkpoints.load_metrics(sgan.checkpoint_name())
    measured = run_cli("train.gan", "--model", "sgan", "--eval")
    assert measured["test_images"] == 10000
    assert measured["test_accuracy"] == pytest.approx(m["test_accuracy"], abs=1e-4)
    for row in m["sweep"]:
        name = f"{row['method']}_{row['labels'] if row['labels'] in sgan.LABEL_COUNTS else 'all'}"
        if name != "sgan_100":
            assert measured["sweep"][name] == pytest.approx(row["test_accuracy"], abs=1e-4), name
    assert measured["test_accuracy"] > measured["sweep"]["supervised_100"] + 0.05
    assert measured["sweep"]["sgan_20"] > measured["sweep"]["supervised_20"]


@pytest.mark.slow
def test_committed_sgan_reaches_the_issues_95_percent():
    committed_or_skip()
    from core import data

    images, labels = data.mnist("test")
    accuracy = (sgan.predict(sgan.load(), images).argmax(1) == labels).float().mean().item()
    assert accuracy >= 0.95


# ---- the GAN tab's part -----------------------------------------------------------------------

def test_the_tab_classifies_a_drawing_with_both_and_says_when_the_canvas_is_empty():
    committed_or_skip()
    from demos import gan

    canvas = np.full((280, 280, 4), 0, np.uint8)
    canvas[60:220, 130:150, 3] = 255  # a vertical bar: a one
    semi, alone = gan.sgan_classify(canvas)
    assert set(semi) == set(alone) == {str(d) for d in range(10)}
    assert sum(semi.values()) == pytest.approx(1, abs=1e-4)
    assert max(semi, key=semi.get) == "1"
    assert gan.show_sgan(np.zeros((280, 280, 4), np.uint8))[2].startswith("The canvas is empty")
    with pytest.raises(BadInput):
        gan.sgan_classify(np.zeros((280, 280, 4), np.uint8))


def test_the_tab_samples_and_draws_its_curve():
    committed_or_skip()
    from demos import gan

    a, b = gan.sgan_samples(3), gan.sgan_samples(3)
    assert a.size == b.size and np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(gan.sgan_samples(4)))
    with pytest.raises(BadInput):
        gan.sgan_samples(-1)
    fig = gan.sgan_curve()
    lines = fig.axes[0].get_lines()
    assert len(lines) == 3  # GAN, labels alone, all labels
    assert "100 labelled digits" in gan.sgan_card()
