"""Transfer learning experiments: reuse a trained network's features, against training
from scratch.

    python -m train.transfer --experiment digits   # digits 0-4 features -> digits 5-9
    python -m train.transfer --experiment ants     # CIFAR-10 ResNet-20 features -> ants vs bees
    python -m train.transfer --experiment all
    python -m train.transfer --experiment digits --eval   # re-evaluate the committed models
    python -m train.transfer --experiment digits --steps 5 --repeats 1 --limit 600 --checkpoint-dir /tmp/ck

Three strategies everywhere: "frozen" (the pretrained features stay fixed, only a new
linear head learns), "finetune" (start from the pretrained weights, everything learns)
and "scratch" (the same network from random weights). Each is trained for the same number
of steps on n labelled examples per class, n drawn with several seeds; the table gives the
mean accuracy on held-out images (MNIST's test digits 5-9; the ants/bees "val" split, as
in the seed).

digits: the bootcamp MNIST CNN is first trained on digits 0-4 only (checkpoint
transfer/digits04_cnn); its features are then reused for digits 5-9, which it never saw.
ants: the backbone is a committed CIFAR-10 network (--ants-backbone, default ResNet-20), at
64x64 pixels; curves of validation accuracy per epoch use all 245 training images. Where
torch's cache holds torchvision's ImageNet ResNet-18 (not here: nothing can be downloaded),
`--ants-backbone imagenet_resnet18 --ants-size 224` reruns the seed's own setting.
"""
import argparse
import json
import math
import statistics
import time
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from tqdm import tqdm

from core import checkpoints, data
from core.errors import BadInput
from core.training import add_run_arguments, parse_run_arguments, pick_device, seed_everything
from models.mnist import MEAN as MNIST_MEAN, STD as MNIST_STD, BootcampCNN
from models.transfer import (BACKBONES, EXPERIMENTS, STRATEGIES, MissingImageNet, TransferNet, build, checkpoint_name,
                             imagenet_available, load_model, normalize)
from train.mnist import augment as augment_digits

SIZES = {"digits": (1, 5, 10, 50), "ants": (5, 10, 25, None)}  # examples per class (None: all)
LEARNING_RATES = {"frozen": {"head": 1e-2}, "finetune": {"head": 1e-2, "features": 1e-3},
                  "scratch": {"head": 1e-2, "features": 2e-3}}


# ---- data ------------------------------------------------------------------------------------

def digits_5_to_9(split: str, args):
    images, labels = data.mnist(split, root=args.data_dir)
    keep = labels >= 5
    images, labels = images[keep], labels[keep] - 5
    if args.limit:
        images, labels = images[:args.limit], labels[:args.limit]
    return images, labels


def prepare(kind: str, images_uint8: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    """uint8 images -> a normalised batch, augmented when a generator is given: affine moves
    for digits; for photos (stored 8 pixels larger than they are seen, e.g. 72 for 64) a
    random crop and a flip, or the centre crop without a generator."""
    if kind == "gray":
        x = images_uint8.float().unsqueeze(1) / 255
        x = augment_digits(x, gen) if gen is not None else x
        return (x - MNIST_MEAN) / MNIST_STD
    size = images_uint8.shape[-1] - 8
    if gen is not None:
        n = len(images_uint8)
        dx, dy = torch.randint(0, 9, (2, n), generator=gen)
        x = torch.stack([images_uint8[i, :, dy[i]:dy[i] + size, dx[i]:dx[i] + size] for i in range(n)])
        flip = torch.rand(n, generator=gen) < 0.5
        x[flip] = x[flip].flip(3)
    else:
        x = images_uint8[:, :, 4:4 + size, 4:4 + size]
    return normalize(kind, x)


def pick_per_class(labels: torch.Tensor, n: int | None, seed: int) -> torch.Tensor:
    """Indices of n random examples of every class (all of them when n is None)."""
    gen = torch.Generator().manual_seed(seed)
    picked = []
    for c in labels.unique():
        idx = (labels == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        picked.append(idx if n is None else idx[:n])
    return torch.cat(picked)


# ---- one transfer run ------------------------------------------------------------------------

def fit(model: TransferNet, strategy: str, images, labels, steps: int, seed: int, batch_size: int = 64,
        val=None, epochs: int | None = None, should_stop=None):
    """Train with Adam (a cosine-decayed rate per parameter group). With `epochs`, passes
    over the data and yields the validation accuracy after each; otherwise `steps` batches.
    Yields (step or epoch, validation accuracy or None)."""
    kind, device = BACKBONES[model.backbone_name].input, next(model.parameters()).device
    rates = LEARNING_RATES[strategy]
    groups = [{"params": model.head.parameters(), "lr": rates["head"]}]
    if "features" in rates:
        groups.append({"params": model.features.parameters(), "lr": rates["features"]})
    optimizer = torch.optim.Adam(groups, weight_decay=1e-4)
    per_epoch = math.ceil(len(images) / batch_size)
    total = epochs * per_epoch if epochs else steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model.train()
    order, cursor = torch.randperm(len(images), generator=gen), 0
    for step in range(1, total + 1):
        if cursor >= len(order):
            order, cursor = torch.randperm(len(images), generator=gen), 0
        idx = order[cursor:cursor + batch_size]
        cursor += batch_size
        x = prepare(kind, images[idx], gen).to(device)
        loss = F.cross_entropy(model(x), labels[idx].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if epochs and step % per_epoch == 0:
            yield step // per_epoch, accuracy(model, *val) if val is not None else None
            model.train()
        if should_stop is not None and should_stop():
            return
    if not epochs:
        yield steps, None


@torch.no_grad()
def accuracy(model: TransferNet, images, labels, batch_size: int = 500) -> float:
    model.eval()
    kind, device = BACKBONES[model.backbone_name].input, next(model.parameters()).device
    correct = sum((model(prepare(kind, images[i:i + batch_size], None).to(device)).argmax(1).cpu()
                   == labels[i:i + batch_size]).sum().item()
                  for i in range(0, len(images), batch_size))
    return correct / len(labels)


def size_study(backbone, train, test, sizes, steps, repeats, args, device, batch_size=64) -> dict:
    """Mean test accuracy per strategy for each number of examples per class."""
    images, labels = train
    table = {}
    for n in sizes:
        key = "all" if n is None else str(n)
        table[key] = {}
        for strategy in STRATEGIES:
            scores = []
            for rep in range(1 if n is None else repeats):
                picked = pick_per_class(labels, n, seed=rep)
                model = build(backbone, strategy, int(labels.max()) + 1, args.checkpoint_dir, device)
                for _ in fit(model, strategy, images[picked], labels[picked], steps, seed=rep, batch_size=batch_size):
                    pass
                scores.append(accuracy(model, *test))
            table[key][strategy] = {"mean": statistics.mean(scores), "runs": scores}
            tqdm.write(f"{backbone} n={key} {strategy}: {statistics.mean(scores):.4f} {scores}")
    return table


def lab_train(experiment: str, strategy: str, per_class: int, epochs: int, backbone: str, image_size: int = 64,
              should_stop=None):
    """The tab's live training: one strategy on `per_class` examples of each class (seed 0),
    for `epochs` passes; yields the held-out accuracies so far after every epoch (digits:
    1,000 of MNIST's test digits 5-9; ants: the 153 validation photos at `image_size`)."""
    args = SimpleNamespace(data_dir=None, limit=0)
    try:
        if experiment == "ants":
            train, val = data.hymenoptera("train", image_size + 8), data.hymenoptera("val", image_size + 8)
        else:
            train, (val_images, val_labels) = digits_5_to_9("train", args), digits_5_to_9("test", args)
            keep = torch.randperm(len(val_labels), generator=torch.Generator().manual_seed(0))[:1000]
            val = (val_images[keep], val_labels[keep])
    except Exception as e:
        raise BadInput(f"This needs the {experiment} data and could not get it ({e}).") from e
    images, labels = train
    picked = pick_per_class(labels, per_class, seed=0)
    model = build(backbone, strategy, int(labels.max()) + 1)
    accs = []
    for _, acc in fit(model, strategy, images[picked], labels[picked], steps=0, seed=0, batch_size=32, val=val,
                      epochs=epochs, should_stop=should_stop):
        accs.append(acc)
        yield accs


# ---- the experiments ---------------------------------------------------------------------------

def pretrain_digits04(args, device) -> dict:
    """The bootcamp CNN on MNIST digits 0-4 only (its 10 outputs, 5 of them used)."""
    images, labels = data.mnist("train", root=args.data_dir)
    keep = labels < 5
    images, labels = images[keep], labels[keep]
    if args.limit:
        images, labels = images[:args.limit], labels[:args.limit]
    model = BootcampCNN().to(device)
    epochs, batch_size = args.pretrain_epochs, 128
    optimizer = torch.optim.AdamW(model.parameters(), lr=4e-3, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=4e-3, total_steps=epochs * math.ceil(len(images) / batch_size))
    gen = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(images), generator=gen)
        for i in tqdm(range(0, len(images), batch_size), desc=f"digits 0-4 epoch {epoch + 1}/{epochs}", leave=False):
            idx = order[i:i + batch_size]
            x = prepare("gray", images[idx], gen).to(device)
            loss = F.cross_entropy(model(x), labels[idx].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
    test_x, test_y = data.mnist("test", root=args.data_dir)
    keep = test_y < 5
    model.eval()
    with torch.no_grad():
        acc = (model(prepare("gray", test_x[keep], None)).argmax(1) == test_y[keep]).float().mean().item()
    metrics = {"task": "MNIST digits 0-4 only", "test_accuracy_digits_0_4": acc, "train_images": len(images),
               "epochs": epochs, "train_wall_time_s": round(time.perf_counter() - start, 1), "seed": args.seed,
               "command": checkpoints.command_line("train.transfer")}
    checkpoints.save(model.cpu(), BACKBONES["digits04_cnn"].checkpoint, metrics, root=args.checkpoint_dir)
    return metrics


def run_digits(args, device) -> dict:
    start = time.perf_counter()
    if not args.eval:
        pretrain = pretrain_digits04(args, device)
    train, test = digits_5_to_9("train", args), digits_5_to_9("test", args)
    name = checkpoint_name("digits")
    if args.eval:
        model = load_model("digits", device=device, root=args.checkpoint_dir)
        return {"frozen_10_per_class_test_accuracy": accuracy(model, *test), "test_images": len(test[1])}
    seed_everything(args.seed)
    backbone = EXPERIMENTS["digits"].backbone
    table = size_study(backbone, train, test, SIZES["digits"], args.steps, args.repeats, args, device)
    # The model kept: frozen features, a head fitted on 10 examples per class (seed 0).
    picked = pick_per_class(train[1], 10, seed=0)
    model = build(backbone, "frozen", 5, args.checkpoint_dir, device)
    for _ in fit(model, "frozen", train[0][picked], train[1][picked], args.steps, seed=0):
        pass
    metrics = {"experiment": "digits 0-4 features -> digits 5-9", "backbone": backbone, "pretraining": pretrain,
               "examples_per_class": table, "steps": args.steps, "repeats": args.repeats, "test_images": len(test[1]),
               "frozen_10_per_class_test_accuracy": accuracy(model, *test),
               "train_wall_time_s": round(time.perf_counter() - start, 1), "seed": args.seed,
               "command": checkpoints.command_line("train.transfer")}
    checkpoints.save(model.cpu(), name, metrics, root=args.checkpoint_dir)
    return {k: v for k, v in metrics.items() if k not in ("pretraining",)}


def run_ants(args, device) -> dict:
    start = time.perf_counter()
    imagenet = BACKBONES[args.ants_backbone].input == "imagenet"
    args.ants_size = args.ants_size or (224 if imagenet else 64)
    if imagenet and not args.eval and not imagenet_available():
        raise SystemExit(str(MissingImageNet()))
    train = data.hymenoptera("train", args.ants_size + 8, root=args.data_dir)
    val = data.hymenoptera("val", args.ants_size + 8, root=args.data_dir)
    if args.limit:
        train, val = (train[0][:args.limit], train[1][:args.limit]), (val[0][:args.limit], val[1][:args.limit])
    name = checkpoint_name("ants", args.ants_backbone)
    if args.eval:
        model = load_model("ants", args.ants_backbone, device, args.checkpoint_dir)
        return {"finetune_val_accuracy": accuracy(model, *val), "val_images": len(val[1])}
    seed_everything(args.seed)
    curves, models = {}, {}
    for strategy in STRATEGIES:
        model = build(args.ants_backbone, strategy, 2, args.checkpoint_dir, device)
        curves[strategy] = [acc for _, acc in fit(model, strategy, *train, steps=0, seed=0, batch_size=32,
                                                   val=val, epochs=args.curve_epochs)]
        models[strategy] = model
        tqdm.write(f"ants {strategy}: {curves[strategy]}")
    table = size_study(args.ants_backbone, train, val, SIZES["ants"], args.steps, args.repeats, args, device, batch_size=32)
    metrics = {"experiment": f"{args.ants_backbone} features -> ants vs bees ({args.ants_size}x{args.ants_size})",
               "backbone": args.ants_backbone, "image_size": args.ants_size,
               "val_accuracy_per_epoch": curves, "epochs": args.curve_epochs, "examples_per_class": table,
               "steps": args.steps, "repeats": args.repeats, "train_images": len(train[1]), "val_images": len(val[1]),
               "finetune_val_accuracy": curves["finetune"][-1],
               "seed_reference": {"pretrained_imagenet_resnet18_frozen": "0.93-0.95", "scratch": "0.46 rising to 0.71"},
               "train_wall_time_s": round(time.perf_counter() - start, 1), "seed": args.seed,
               "command": checkpoints.command_line("train.transfer")}
    checkpoints.save(models["finetune"].cpu(), name, metrics, root=args.checkpoint_dir)
    return {k: v for k, v in metrics.items() if k in ("val_accuracy_per_epoch", "examples_per_class", "train_wall_time_s")}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", default="all", choices=["all", "digits", "ants"])
    parser.add_argument("--steps", type=int, default=100, help="training steps per run of the size study")
    parser.add_argument("--repeats", type=int, default=3, help="random draws of the examples per size")
    parser.add_argument("--curve-epochs", type=int, default=15, help="epochs of the ants-vs-bees curves")
    parser.add_argument("--ants-backbone", default=EXPERIMENTS["ants"].backbone,
                        choices=[b for b in BACKBONES if BACKBONES[b].input in ("rgb", "imagenet")],
                        help="the network whose features the ants-vs-bees runs reuse (a CIFAR-10 one, or "
                             "imagenet_resnet18 where torch's cache holds it)")
    parser.add_argument("--ants-size", type=int, default=None,
                        help="ants-vs-bees images are seen at this size (default: 64, or 224 for ImageNet)")
    parser.add_argument("--pretrain-epochs", type=int, default=4, help="epochs of the digits 0-4 backbone")
    add_run_arguments(parser)
    args = parse_run_arguments(parser, argv)
    if args.resume or args.stop_after:
        parser.error("these experiments are many runs of seconds each: rerun them instead of --resume")
    device = pick_device(args.device)
    results = {}
    for experiment in ("digits", "ants") if args.experiment == "all" else (args.experiment,):
        results[experiment] = (run_digits if experiment == "digits" else run_ants)(args, device)
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
