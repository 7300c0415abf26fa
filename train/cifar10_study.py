"""The course's study on its small CNN, and the training lab's training function.

    python -m train.cifar10_study             # every variant; writes checkpoints/cifar10/study.json
    python -m train.cifar10_study --epochs 1 --train-images 500 --out /tmp/study.json   # a smoke run

Each variant changes one thing of the baseline (ReLU, He initialisation, Adam, crop + flip
augmentation, batch norm, one conv per stage) and trains the course's 3-layer CNN for the
same short budget on the same 20,000 training images; the table reports accuracy on all
10,000 test images. The course's own numbers are given where it reported one.
"""
import argparse
import json
import math
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from tqdm import tqdm

from core import checkpoints, data
from core.training import bf16_is_fast
from core.errors import BadInput
from models.cifar10 import OPTIMIZERS, STUDY, SimpleCNN, init_weights, load_model
from train import cifar10 as training

LAB_BATCH = 128


def lab_train(activation="relu", initializer="he", optimizer="adam", augment=True, batch_norm=True, frozen_stages=0,
              epochs=5, train_images=10000, seed=0, should_stop=None, convs_per_stage=1, test_images=2000,
              on_batch=None):
    """Train the course's small CNN (the "cnn" architecture) on a CIFAR-10 subset; yields
    the history (a list of per-epoch dicts) after every epoch, tested on `test_images` test images.
    `should_stop()` is asked after every batch; when it says True the run ends there.
    `on_batch(epoch, loss, accuracy)` is told each batch's training loss and accuracy, with
    the epoch as a fraction (1.5: halfway through the second).

    frozen_stages > 0 restores the committed "cnn" checkpoint, freezes its first conv
    stages and retrains the rest (the course's "freezing layers and restoring
    checkpoints"); that network has ReLU and batch norm, so those settings are used."""
    if activation not in ("relu", "sigmoid", "tanh"):
        raise BadInput(f"activation must be relu, sigmoid or tanh, not {activation!r}")
    if optimizer not in OPTIMIZERS:
        raise BadInput(f"optimizer must be one of {OPTIMIZERS}, not {optimizer!r}")
    if not 0 <= int(frozen_stages) <= 3:
        raise BadInput("frozen stages must be 0 to 3")
    if not 1 <= int(epochs) <= 20 or not 500 <= int(train_images) <= 50_000:
        raise BadInput("epochs must be 1..20 and training images 500..50,000")
    epochs, train_images, frozen_stages = int(epochs), int(train_images), int(frozen_stages)
    torch.manual_seed(seed)
    try:
        train_x, train_y = data.cifar10("train")
        test_x, test_y = data.cifar10("test")
    except Exception as e:
        raise BadInput(f"The lab needs the CIFAR-10 data and could not get it ({e}).") from e
    order = torch.randperm(len(train_y), generator=torch.Generator().manual_seed(seed))
    train_x, train_y = train_x[order[:train_images]], train_y[order[:train_images]]
    keep = torch.randperm(len(test_y), generator=torch.Generator().manual_seed(1))[:test_images]
    test_x, test_y = test_x[keep], test_y[keep]

    if frozen_stages:
        net = SimpleCNN()
        net.load_state_dict(load_model("cnn").state_dict())
        for layer in frozen_layers(net, frozen_stages):
            layer.requires_grad_(False)
            if isinstance(layer, torch.nn.BatchNorm2d):
                layer.momentum = 0.0  # keep the restored statistics
    else:
        net = SimpleCNN(activation=activation, batch_norm=batch_norm, convs_per_stage=convs_per_stage)
        init_weights(net, initializer)
    params = [p for p in net.parameters() if p.requires_grad]
    lr = {"adam": 2e-3, "momentum": 0.05, "sgd": 0.05}[optimizer]
    opt = (torch.optim.Adam(params, lr=lr) if optimizer == "adam"
           else torch.optim.SGD(params, lr=lr, momentum=0.9 if optimizer == "momentum" else 0.0, weight_decay=5e-4))
    steps_per_epoch = math.ceil(train_images / LAB_BATCH)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, training.one_cycle(epochs * steps_per_epoch))
    # bf16 autocast trains this CNN about 2.5x faster where the CPU has native kernels
    args = SimpleNamespace(seed=seed, batch_size=LAB_BATCH, augment=augment, bf16=bf16_is_fast(torch.device("cpu")),
                           channels_last=False, label_smoothing=0.0, arch="lab", epochs=epochs, crop_padding=4, cutout=0)
    history, start = [], time.perf_counter()
    for epoch in range(1, epochs + 1):
        follow = None if on_batch is None else lambda done, loss, acc, epoch=epoch: on_batch(epoch - 1 + done, loss, acc)
        stats = training.train_epoch(net, opt, sched, train_x, train_y, args, epoch, torch.device("cpu"), should_stop,
                                     follow)
        if should_stop is not None and should_stop():
            return  # stopped within the epoch (checked every batch): the history keeps the finished epochs
        test = training.evaluate(net, test_x, test_y, "lab", torch.device("cpu"), channels_last=False)
        history.append({"epoch": epoch, **stats, "test_loss": test["test_loss"], "test_accuracy": test["test_accuracy"],
                        "wall_time_s": round(time.perf_counter() - start, 1)})
        yield history
        if should_stop is not None and should_stop():
            return


def frozen_layers(net: SimpleCNN, stages: int) -> list:
    """The layers of the first `stages` conv stages (each ends with a max-pool)."""
    layers, done = [], 0
    for layer in net.features:
        if done >= stages:
            break
        layers.append(layer)
        done += isinstance(layer, torch.nn.MaxPool2d)
    return layers


# (name, the lab's settings, the course's number or None)
VARIANTS = [
    ("baseline: ReLU, He, Adam, augmentation, batch norm", {}, None),
    ("activation sigmoid", {"activation": "sigmoid"}, None),
    ("activation tanh", {"activation": "tanh"}, None),
    ("initializer xavier", {"initializer": "xavier"}, None),
    ("initializer normal (std 0.01)", {"initializer": "normal"}, None),
    ("initializer truncated normal (std 0.05)", {"initializer": "truncated_normal"}, None),
    ("optimizer SGD with momentum", {"optimizer": "momentum"}, None),
    ("optimizer plain SGD", {"optimizer": "sgd"}, None),
    ("no augmentation", {"augment": False}, None),
    ("no batch norm", {"batch_norm": False}, None),
    ("deeper (two convs per stage) + batch norm", {"convs_per_stage": 2}, 0.8245),
    ("first two stages frozen, restored from the committed CNN", {"frozen_stages": 2}, None),
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=6, help="epochs per variant")
    parser.add_argument("--train-images", type=int, default=20000, help="training images per variant")
    parser.add_argument("--out", default=str(STUDY), help="where the table goes")
    args = parser.parse_args(argv)
    runs = []
    for name, settings, seed_accuracy in tqdm(VARIANTS, desc="study"):
        start = time.perf_counter()
        for history in lab_train(epochs=args.epochs, train_images=args.train_images, test_images=10000, **settings):
            tqdm.write(f"{name}: {json.dumps(history[-1])}")
        runs.append({"variant": name, "settings": settings, "test_accuracy": history[-1]["test_accuracy"],
                     "seed_accuracy": seed_accuracy, "train_wall_time_s": round(time.perf_counter() - start, 1),
                     "history": history})
    result = {"epochs": args.epochs, "train_images": args.train_images, "test_images": 10000,
              "command": checkpoints.command_line("train.cifar10_study"), "runs": runs}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps({r["variant"]: r["test_accuracy"] for r in runs}))
    return result


if __name__ == "__main__":
    main()
