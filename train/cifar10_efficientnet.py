"""CIFAR-10 on ImageNet features: the zoo's EfficientNet-Lite0 (models/cifar10.py,
PretrainedEfficientNet), started from the ImageNet-1k weights of models/efficientnet.py.

    python -m train.cifar10_efficientnet                  # as committed
    python -m train.cifar10 --arch efficientnet --eval    # re-evaluate the committed checkpoint
    python -m train.cifar10_efficientnet --limit 600 --epochs 1 --checkpoint-dir /tmp/ck   # a smoke run

Fine-tuning every layer at a useful input size does not fit this CPU's budget, so: the
32x32 images are upsampled to --size px; the stem and the first --frozen-stages stages keep
their ImageNet weights and run once over every image and its mirror image (their output is
kept in memory as float16); the remaining stages, the 1280-channel head and a new 10-class
layer train on that cache, with a random shift of up to one feature cell (16 pixels of the
upsampled image, 4 of the original) as augmentation. VAL_IMAGES training images are held out
for the per-epoch curve and every choice; the test split is read once, at the end, through
the whole network (models.cifar10.predict, as --eval measures it).
"""
import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tqdm import tqdm

from core import checkpoints, data
from core.training import (add_run_arguments, load_state, parse_run_arguments, pick_device, save_state, seed_epoch,
                           seed_everything)
from models.cifar10 import PretrainedEfficientNet, checkpoint_name, normalize
from models.efficientnet import PACKAGE, imagenet_state
from train.cifar10 import evaluate, load_split, one_cycle

ARCH = "efficientnet"
VAL_IMAGES = 5000


def pretrained_model(size: int, frozen_stages: int) -> PretrainedEfficientNet:
    """The network with ImageNet weights everywhere but the new 10-class layer."""
    model = PretrainedEfficientNet(size, frozen_stages)
    state = {k: v for k, v in imagenet_state().items() if not k.startswith("_fc.")}
    missing, unexpected = model.net.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith("_fc.") or k.endswith("num_batches_tracked") for k in missing), missing
    return model


@torch.no_grad()
def frozen_outputs(model, images_uint8, mirrored: bool = True, batch_size: int = 200, desc: str = "") -> list[torch.Tensor]:
    """The frozen part's output (float16) for the images, and (mirrored) for their mirror images."""
    model.eval()
    views = [[] for _ in range(1 + mirrored)]
    for i in tqdm(range(0, len(images_uint8), batch_size), desc=desc, leave=False):
        x = normalize(images_uint8[i:i + batch_size]).contiguous(memory_format=torch.channels_last)  # 1.5x faster here
        views[0].append(model.frozen_features(x).half())
        if mirrored:
            views[1].append(model.frozen_features(x.flip(3)).half())
    return [torch.cat(v) for v in views]


def shift(h: torch.Tensor, gen: torch.Generator, cells: int) -> torch.Tensor:
    """Move each feature map by up to `cells` in x and y (edges repeated): a random crop."""
    if cells == 0:
        return h
    n, c, height, width = h.shape
    padded = F.pad(h, (cells,) * 4, mode="replicate")
    dx, dy = torch.randint(0, 2 * cells + 1, (2, n), generator=gen)
    rows = (dy[:, None] + torch.arange(height))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(width))[:, None, None, :]
    return padded[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]


def train_epoch(model, optimizer, scheduler, cache, labels, args, epoch) -> dict:
    """One pass over the cached training outputs, each seen plain or mirrored at random."""
    model.train()
    gen = seed_epoch(args.seed, epoch)
    order = torch.randperm(len(labels), generator=gen)
    mirror = (torch.rand(len(labels), generator=gen) < 0.5) & (len(cache) == 2)
    total_loss = correct = seen = 0
    bar = tqdm(range(0, len(labels), args.batch_size), desc=f"{ARCH} epoch {epoch}/{args.epochs}", leave=False)
    for i in bar:
        idx = order[i:i + args.batch_size]
        if len(idx) < 2:  # batch norm needs two
            continue
        h = torch.where(mirror[idx, None, None, None], cache[-1][idx], cache[0][idx]).float()
        h = shift(h, gen, args.shift)
        y = labels[idx]
        logits = model.head(h)
        loss = F.cross_entropy(logits, y, label_smoothing=args.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total_loss += loss.item() * len(idx)
        correct += (logits.argmax(1) == y).sum().item()
        seen += len(idx)
        bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}")
    return {"train_loss": total_loss / max(seen, 1), "train_accuracy": correct / max(seen, 1)}


@torch.no_grad()
def evaluate_cached(model, cache, labels, batch_size: int = 500) -> dict:
    """Accuracy and loss from cached outputs, averaging each image and its mirror image."""
    model.eval()
    probs = torch.cat([(F.softmax(model.head(cache[0][i:i + batch_size].float()), 1)
                        + F.softmax(model.head(cache[1][i:i + batch_size].float()), 1)) / 2
                       for i in range(0, len(labels), batch_size)])
    return {"accuracy": (probs.argmax(1) == labels).float().mean().item(),
            "loss": F.nll_loss(probs.clamp_min(1e-12).log(), labels).item()}


def split_train(args):
    """(train images, labels), (validation images, labels): VAL_IMAGES held out by a fixed draw."""
    images, labels = data.cifar10("train", root=args.data_dir)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(1))
    if args.limit:
        order = order[:args.limit]
    held_out = min(args.val_images, len(order) // 5)
    val, train = order[:held_out], order[held_out:]
    return (images[train], labels[train]), (images[val], labels[val])


def run(args) -> dict:
    device = pick_device(args.device)
    if device.type != "cpu":
        tqdm.write(f"{ARCH}: trains on the CPU (the cache is in memory); {device} is not used")
    seed_everything(args.seed)
    (train_x, train_y), (val_x, val_y) = split_train(args)
    model = pretrained_model(args.size, args.frozen_stages)
    start = time.perf_counter()
    model = model.to(memory_format=torch.channels_last)
    train_cache = frozen_outputs(model, train_x, args.mirror_train, desc="frozen stages, training images")
    val_cache = frozen_outputs(model, val_x, desc="frozen stages, validation images")
    cache_s = time.perf_counter() - start
    tqdm.write(f"cached the frozen stages' outputs {tuple(train_cache[0].shape)} in {cache_s:.0f} s")

    trained = model.head_parameters()
    decay = [p for p in trained if p.dim() > 1]
    no_decay = [p for p in trained if p.dim() <= 1]
    optimizer = torch.optim.SGD([{"params": decay, "weight_decay": args.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, momentum=0.9, nesterov=True)
    steps_per_epoch = math.ceil(len(train_y) / args.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, one_cycle(args.epochs * steps_per_epoch, warmup=0.1))
    config = {k: getattr(args, k) for k in ("size", "frozen_stages", "epochs", "lr", "batch_size", "weight_decay",
                                            "label_smoothing", "shift", "mirror_train", "val_images", "seed", "limit")}
    resume_dir = Path(args.checkpoint_dir or checkpoints.CHECKPOINTS) / checkpoint_name(ARCH) / "resume"
    start_epoch, history = load_state(resume_dir, model, optimizer, scheduler, config) if args.resume else (0, [])
    elapsed_before = history[-1]["wall_time_s"] if history else cache_s
    start = time.perf_counter()
    for epoch in range(start_epoch + 1, args.epochs + 1):
        stats = train_epoch(model, optimizer, scheduler, train_cache, train_y, args, epoch)
        val = evaluate_cached(model, val_cache, val_y)
        history.append({"epoch": epoch, **stats, "val_loss": val["loss"], "val_accuracy": val["accuracy"],
                        "wall_time_s": round(elapsed_before + time.perf_counter() - start, 1)})
        tqdm.write(json.dumps(history[-1]))
        save_state(resume_dir, model, optimizer, scheduler, epoch, history, config)
        if args.stop_after and epoch >= args.stop_after:
            return {"stopped_after_epoch": epoch}
    wall_time = elapsed_before + time.perf_counter() - start

    test_x, test_y = load_split("test", ARCH, args)  # with --limit, the same fixed subset as train.cifar10's
    model = model.cpu().eval()
    metrics = {
        **evaluate(model, test_x, test_y, ARCH, torch.device("cpu"), channels_last=True),
        "train_images": len(train_y), "val_images": len(val_y), "val_accuracy": history[-1]["val_accuracy"],
        "parameters": sum(p.numel() for p in model.parameters()),
        "trained_parameters": sum(p.numel() for p in trained),
        "pretrained": f"ImageNet-1k weights of EfficientNet-Lite0 ({PACKAGE})",
        "seed_accuracy": None,
        "data": "CIFAR-10 JPEG copy (quality ~75)" if data.mirror_dir() else "CIFAR-10 (binary version)",
        "cache_wall_time_s": round(cache_s, 1), "train_wall_time_s": round(wall_time, 1), "device": "cpu",
        "seed": args.seed, "command": checkpoints.command_line("train.cifar10_efficientnet"),
        "hyperparameters": {k: v for k, v in config.items() if k not in ("seed", "limit")},
        "history": history,
    }
    path = checkpoints.save(model, checkpoint_name(ARCH), metrics, root=args.checkpoint_dir)
    worst = torch.tensor([m["index"] for m in metrics["confident_mistakes"]], dtype=torch.long)
    save_file({"images": test_x[worst].contiguous(), "index": worst}, str(path / "mistakes.safetensors"))
    return {k: metrics[k] for k in ("test_accuracy", "test_loss", "val_accuracy", "train_wall_time_s")}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128, help="input size the 32x32 images are upsampled to")
    parser.add_argument("--frozen-stages", type=int, default=5, choices=range(1, 8),
                        help="stages (of seven) that keep their ImageNet weights and are computed once")
    parser.add_argument("--epochs", type=int, default=8, help="passes over the training images")
    parser.add_argument("--lr", type=float, default=0.05, help="peak learning rate of the one-cycle schedule")
    parser.add_argument("--batch-size", type=int, default=128, help="training batch size")
    parser.add_argument("--weight-decay", type=float, default=5e-4, help="SGD weight decay (not on norms and biases)")
    parser.add_argument("--label-smoothing", type=float, default=0.1, help="label smoothing")
    parser.add_argument("--shift", type=int, default=1, help="random shift of the cached feature maps, in cells")
    parser.add_argument("--mirror-train", action=argparse.BooleanOptionalAction, default=False,
                        help="also cache the training images' mirror images and train on both (twice the caching time)")
    parser.add_argument("--val-images", type=int, default=VAL_IMAGES, help="training images held out for every choice")
    add_run_arguments(parser)
    args = parse_run_arguments(parser, argv)
    if args.eval:
        parser.error(f"evaluate with: python -m train.cifar10 --arch {ARCH} --eval")
    result = run(args)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
