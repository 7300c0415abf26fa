"""Train the CIFAR-10 model zoo (see models/cifar10.py); `--arch` picks the model.

    python -m train.cifar10 --arch resnet20        # one model, as committed
    python -m train.cifar10 --arch all             # every model, one after another
    python -m train.cifar10 --arch resnet20 --eval # re-evaluate the committed checkpoint
    python -m train.cifar10 --arch cnn --tensorboard runs/   # also write TensorBoard events
    python -m train.cifar10 --arch vgg --epochs 1 --limit 512 --checkpoint-dir /tmp/ck   # a smoke run

Training uses all 50,000 training images; the test accuracy after every epoch is only a
curve (the model kept is the last epoch's, nothing is chosen by it). Recipe: random crop
(4-pixel reflect padding) and horizontal flip, SGD with Nesterov momentum and a one-cycle
schedule, label smoothing, weight decay; predictions average each image and its mirror
image. Channels-last memory and bfloat16 autocast where they are faster on this CPU (see
benchmarks/cifar10_training_speed.py). The logistic regression sees only airplanes and
automobiles; vgg_airbench also takes airbench94's optimiser settings and cutout (DEFAULTS).
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
from core.training import (add_run_arguments, bf16_is_fast, load_state, parse_run_arguments, pick_device, save_state,
                           seed_epoch, seed_everything, with_defaults)
from models.cifar10 import (ARCHITECTURES, BINARY_CLASSES, build_model, checkpoint_name, load_model, normalize, predict,
                            train_command)

# Per-architecture defaults that reproduce the committed checkpoints. Each was trained holding
# out VAL_IMAGES training images: its curve and every choice (docs/cifar10.md) use those, and the
# test split is read once, at the end. --val-images 0 trains on all 50,000 with the curve on the
# test split, as the first recipes were (checkpoints/cifar10/vgg_features still is one).
VAL_IMAGES = 5000
DEFAULTS = {
    # Linear models do better without crops (a shifted template is a blurred template).
    "logistic": dict(epochs=30, lr=0.01, batch_size=256, weight_decay=1e-3, label_smoothing=0.0, augment=False,
                     bf16=False, channels_last=False, val_images=VAL_IMAGES),
    "softmax": dict(epochs=20, lr=0.01, batch_size=256, weight_decay=1e-3, label_smoothing=0.0, augment=False,
                    bf16=False, channels_last=False, val_images=VAL_IMAGES),
    "mlp": dict(epochs=30, lr=0.1, batch_size=256, weight_decay=5e-4, label_smoothing=0.1, augment=True,
                bf16=False, channels_last=False, val_images=VAL_IMAGES),
    "cnn": dict(epochs=10, lr=0.2, batch_size=256, weight_decay=5e-4, label_smoothing=0.1, augment=True,
                bf16=True, channels_last=False, val_images=VAL_IMAGES),
    "vgg": dict(epochs=12, lr=0.4, batch_size=512, weight_decay=5e-4, label_smoothing=0.2, augment=True,
                bf16=True, channels_last=True, val_images=VAL_IMAGES),
    # airbench94's hyperparameters (its lr 11.5 and weight decay 0.0153 per 1024 examples, for a mean loss),
    # run three times as long, with airbench96's cutout against the overfitting of long runs.
    "vgg_airbench": dict(epochs=30, lr=1.5, batch_size=1024, weight_decay=0.00133, label_smoothing=0.2, augment=True,
                         bf16=True, channels_last=True, momentum=0.85, bias_lr_scale=64, crop_padding=4, cutout=8,
                         val_images=VAL_IMAGES),
    "resnet": dict(epochs=20, lr=0.2, batch_size=256, weight_decay=5e-4, label_smoothing=0.1, augment=True,
                   bf16=True, channels_last=True, val_images=VAL_IMAGES),
    "inception": dict(epochs=20, lr=0.2, batch_size=256, weight_decay=5e-4, label_smoothing=0.1, augment=True,
                      bf16=True, channels_last=True, val_images=VAL_IMAGES),
    "mobilenet": dict(epochs=20, lr=0.2, batch_size=256, weight_decay=5e-4, label_smoothing=0.1, augment=True,
                      bf16=True, channels_last=True, val_images=VAL_IMAGES),
    "plain20": dict(epochs=30, lr=0.2, batch_size=256, weight_decay=5e-4, label_smoothing=0.1, augment=True,
                    bf16=True, channels_last=True, val_images=VAL_IMAGES),
    "resnet20": dict(epochs=30, lr=0.2, batch_size=256, weight_decay=5e-4, label_smoothing=0.1, augment=True,
                     bf16=True, channels_last=True, val_images=VAL_IMAGES),
    "se_resnet20": dict(epochs=30, lr=0.2, batch_size=256, weight_decay=5e-4, label_smoothing=0.1, augment=True,
                        bf16=True, channels_last=True, val_images=VAL_IMAGES),
    "densenet_bc": dict(epochs=15, lr=0.2, batch_size=256, weight_decay=5e-4, label_smoothing=0.1, augment=True,
                        bf16=True, channels_last=True, val_images=VAL_IMAGES),
    # trained by train/cifar10_efficientnet.py; evaluated here as the others
    "efficientnet": dict(bf16=False, channels_last=True),
}

def load_split(split: str, arch: str, args):
    """(images, labels) of "train", "val" (args.val_images held out of the training split by a
    fixed draw) or "test"; "train" is what is left."""
    images, labels = data.cifar10("test" if split == "test" else "train", root=args.data_dir)
    if arch == "logistic":
        keep = (labels == BINARY_CLASSES[0]) | (labels == BINARY_CLASSES[1])
        images, labels = images[keep], labels[keep]
    if args.limit:  # a fixed random subset (the mirror's files are sorted by class)
        keep = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))[:args.limit]
        images, labels = images[keep], labels[keep]
    if split != "test" and args.val_images:
        held_out = min(args.val_images, len(labels) // 5)
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(1))
        keep = order[:held_out] if split == "val" else order[held_out:]
        images, labels = images[keep], labels[keep]
    return images, labels


def augment(images_uint8: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop after reflect padding, and a horizontal flip for half the batch."""
    n = len(images_uint8)
    padded = F.pad(images_uint8, (pad, pad, pad, pad), mode="reflect")
    dx, dy = torch.randint(0, 2 * pad + 1, (2, n), generator=gen)
    rows = (dy[:, None] + torch.arange(32))[:, None, :, None]  # (N, 1, 32, 1)
    cols = (dx[:, None] + torch.arange(32))[:, None, None, :]  # (N, 1, 1, 32)
    out = padded[torch.arange(n)[:, None, None, None], torch.arange(3)[None, :, None, None], rows, cols]
    flip = torch.rand(n, generator=gen) < 0.5
    out[flip] = out[flip].flip(3)
    return out


def cutout(images: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """Zero (the mean, after normalisation) a random size x size square of each image."""
    n, _, h, w = images.shape
    y0, x0 = torch.randint(0, h - size + 1, (n,), generator=gen), torch.randint(0, w - size + 1, (n,), generator=gen)
    rows = (torch.arange(h)[None] >= y0[:, None]) & (torch.arange(h)[None] < y0[:, None] + size)  # (N, H)
    cols = (torch.arange(w)[None] >= x0[:, None]) & (torch.arange(w)[None] < x0[:, None] + size)
    mask = (rows[:, :, None] & cols[:, None, :])[:, None].to(images.device)
    return images.masked_fill(mask, 0.0)


def loss_fn(logits, labels, label_smoothing: float):
    if logits.dim() == 1:  # the binary logistic regression
        return F.binary_cross_entropy_with_logits(logits.float(), labels.float())
    return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)


def to_binary_labels(labels: torch.Tensor, arch: str) -> torch.Tensor:
    return (labels == BINARY_CLASSES[1]).long() if arch == "logistic" else labels


def evaluate(model, images, labels, arch, device, bf16=False, channels_last=True) -> dict:
    probs = predict(model, images, device, bf16, channels_last=channels_last)
    labels = to_binary_labels(labels, arch)
    predicted = probs.argmax(1)
    k = probs.shape[1]
    confusion = torch.zeros(k, k, dtype=torch.long)
    confusion.index_put_((labels, predicted), torch.ones_like(labels), accumulate=True)
    wrong = (predicted != labels).nonzero().flatten()
    worst = wrong[probs[wrong].max(1).values.argsort(descending=True)][:24]
    return {
        "test_accuracy": (predicted == labels).float().mean().item(),
        "test_loss": F.nll_loss(probs.clamp_min(1e-12).log(), labels).item(),
        "test_images": len(labels),
        "per_class_accuracy": (confusion.diag() / confusion.sum(1).clamp_min(1)).tolist(),
        "confusion_matrix": confusion.tolist(),
        # indices into the test split (of the binary subset for "logistic"), most confident first
        "confident_mistakes": [{"index": int(i), "label": int(labels[i]), "predicted": int(predicted[i]),
                                "confidence": round(probs[i].max().item(), 4)} for i in worst],
    }


def one_cycle(total_steps: int, warmup: float = 0.25):
    """Learning-rate factor per step: a linear rise over the first quarter, then a linear
    fall to zero at the end."""
    rise = max(1, round(warmup * total_steps))
    return lambda step: min((step + 1) / rise, max(0.0, (total_steps - step) / max(1, total_steps - rise)))


def make_optimizer(model, args, steps_per_epoch: int):
    # No weight decay on batch-norm parameters and biases (they only set scales and offsets).
    decay = [p for p in model.parameters() if p.dim() > 1 and p.requires_grad]
    no_decay = [p for p in model.parameters() if p.dim() <= 1 and p.requires_grad]
    # airbench trains the batch-norm shifts with a far larger learning rate (64x) than the weights.
    optimizer = torch.optim.SGD([{"params": decay, "weight_decay": args.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0, "lr": args.lr * (args.bias_lr_scale or 1)}],
                                lr=args.lr, momentum=args.momentum or 0.9, nesterov=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, one_cycle(args.epochs * steps_per_epoch))
    return optimizer, scheduler


def train_epoch(model, optimizer, scheduler, images, labels, args, epoch, device, should_stop=None,
                on_batch=None) -> dict:
    """One pass over the training images; `should_stop()` (the lab's cancel) ends it early;
    `on_batch(fraction of the epoch done, batch loss, batch accuracy)` follows it live."""
    model.train()
    gen = seed_epoch(args.seed, epoch)
    order = torch.randperm(len(images), generator=gen)
    total_loss = correct = seen = 0
    bar = tqdm(range(0, len(images), args.batch_size), desc=f"{args.arch} epoch {epoch}/{args.epochs}", leave=False)
    for i in bar:
        idx = order[i:i + args.batch_size]
        if len(idx) < 2:  # batch norm needs two images
            continue
        x = augment(images[idx], gen, args.crop_padding or 4) if args.augment else images[idx]
        x = normalize(x.to(device))
        if args.augment and args.cutout:
            x = cutout(x, args.cutout, gen)
        x = x.contiguous(memory_format=torch.channels_last if args.channels_last else torch.contiguous_format)
        y = labels[idx].to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            logits = model(x)
        loss = loss_fn(logits, y, args.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total_loss += loss.item() * len(idx)
        predicted = (logits > 0).long() if logits.dim() == 1 else logits.argmax(1)
        batch_correct = (predicted == y).sum().item()
        correct += batch_correct
        seen += len(idx)
        bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}")
        if on_batch is not None:
            on_batch(min(1.0, (i + len(idx)) / len(images)), loss.item(), batch_correct / len(idx))
        if should_stop is not None and should_stop():
            break
    return {"train_loss": total_loss / max(seen, 1), "train_accuracy": correct / max(seen, 1)}


def run(args) -> dict:
    """Train one architecture (or just evaluate it with --eval); returns its metrics."""
    arch, device = args.arch, pick_device(args.device)
    name = checkpoint_name(arch)
    test_x, test_y = load_split("test", arch, args)
    # The reported accuracy is measured in float32 on a CPU (what the app runs); only the
    # per-epoch curve uses bf16 where the CPU has native kernels (3x faster evaluation here).
    final_bf16 = args.bf16 and device.type != "cpu"
    if args.eval:
        model = load_model(arch, device, root=args.checkpoint_dir)
        return evaluate(model, test_x, test_y, arch, device, final_bf16, args.channels_last)

    if args.bf16 and not bf16_is_fast(device):
        tqdm.write(f"{arch}: no native bfloat16 on this {device.type}; training in float32 (bf16 would be ~10x slower)")
        args.bf16 = False
    seed_everything(args.seed)
    train_x, train_y = load_split("train", arch, args)
    train_y = to_binary_labels(train_y, arch)
    # the per-epoch curve: the held-out validation images, or (--val-images 0, the first
    # recipes) the test split
    curve_split = "val" if args.val_images else "test"
    curve_x, curve_y = load_split(curve_split, arch, args) if args.val_images else (test_x, test_y)
    model = build_model(arch).to(device, memory_format=torch.channels_last if args.channels_last else torch.contiguous_format)
    if getattr(model, "whiten", False):  # the VGG's fixed whitening stem is computed, not learned
        model.init_whitening(normalize(train_x[:5000]).to(device))
    steps_per_epoch = math.ceil(len(train_x) / args.batch_size)
    optimizer, scheduler = make_optimizer(model, args, steps_per_epoch)
    resume_dir = Path(args.checkpoint_dir or checkpoints.CHECKPOINTS) / name / "resume"
    config = {k: getattr(args, k) for k in ("arch", "epochs", "lr", "batch_size", "weight_decay", "label_smoothing",
                                            "augment", "bf16", "channels_last", "momentum", "bias_lr_scale",
                                            "crop_padding", "cutout", "seed", "limit", "val_images")}
    start_epoch, history = load_state(resume_dir, model, optimizer, scheduler, config) if args.resume else (0, [])
    elapsed_before = history[-1]["wall_time_s"] if history else 0.0
    writer = None
    if args.tensorboard:
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(str(Path(args.tensorboard) / arch))

    start = time.perf_counter()
    for epoch in range(start_epoch + 1, args.epochs + 1):
        stats = train_epoch(model, optimizer, scheduler, train_x, train_y, args, epoch, device)
        measured = evaluate(model, curve_x, curve_y, arch, device, args.bf16, args.channels_last)
        history.append({"epoch": epoch, **stats, f"{curve_split}_loss": measured["test_loss"],
                        f"{curve_split}_accuracy": measured["test_accuracy"],
                        "wall_time_s": round(elapsed_before + time.perf_counter() - start, 1)})
        tqdm.write(json.dumps(history[-1]))
        if writer is not None:
            for key in ("train_loss", "train_accuracy", f"{curve_split}_loss", f"{curve_split}_accuracy"):
                writer.add_scalar(key.replace("_", "/", 1), history[-1][key], epoch)
            for pname, p in model.named_parameters():
                writer.add_histogram(pname, p.detach().float().cpu(), epoch)
            writer.flush()
        save_state(resume_dir, model, optimizer, scheduler, epoch, history, config)
        if args.stop_after and epoch >= args.stop_after:
            return {"stopped_after_epoch": epoch}
    wall_time = elapsed_before + time.perf_counter() - start
    if writer is not None:
        writer.close()

    if args.skip_test:  # a candidate for a choice: only the validation split is measured
        measured = {"val_accuracy": history[-1]["val_accuracy"], "val_loss": history[-1]["val_loss"]}
    else:
        measured = evaluate(model, test_x, test_y, arch, device, final_bf16, args.channels_last)
    metrics = {
        **measured,
        "train_images": len(train_x), "val_images": len(curve_y) if args.val_images else 0,
        "parameters": sum(p.numel() for p in model.parameters()),
        "seed_accuracy": ARCHITECTURES[arch].seed_accuracy,
        "data": "CIFAR-10 JPEG copy (quality ~75)" if data.mirror_dir() else "CIFAR-10 (binary version)",
        "train_wall_time_s": round(wall_time, 1), "device": str(device), "seed": args.seed,
        "command": checkpoints.command_line("train.cifar10"),
        "hyperparameters": {k: getattr(args, k) for k in config if k not in ("arch", "seed", "limit")},
        "history": history,
    }
    path = checkpoints.save(model.cpu(), name, metrics, root=args.checkpoint_dir)
    if args.skip_test:
        return {k: metrics[k] for k in ("val_accuracy", "val_loss", "train_wall_time_s")}
    save_mistakes(path, metrics, test_x)
    return {k: metrics[k] for k in ("test_accuracy", "test_loss", "train_wall_time_s")}


def save_mistakes(path: Path, metrics: dict, test_x: torch.Tensor) -> None:
    worst = torch.tensor([m["index"] for m in metrics["confident_mistakes"]], dtype=torch.long)
    save_file({"images": test_x[worst].contiguous(), "index": worst}, str(path / "mistakes.safetensors"))


def report_test(args) -> dict:
    """Read the test split once for a candidate that was kept on its validation accuracy
    (trained with --skip-test), and write the result into its metrics.json."""
    arch, device = args.arch, pick_device(args.device)
    path = checkpoints.find(checkpoint_name(arch), args.checkpoint_dir)
    metrics = json.loads((path / "metrics.json").read_text())
    if "test_accuracy" in metrics:
        raise SystemExit(f"{path} already has a test accuracy: the test split is read once")
    test_x, test_y = load_split("test", arch, args)
    model = load_model(arch, device, root=args.checkpoint_dir)
    metrics = {**evaluate(model, test_x, test_y, arch, device, False, args.channels_last), **metrics,
               "test_command": checkpoints.command_line("train.cifar10")}
    (path / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    save_mistakes(path, metrics, test_x)
    return {k: metrics[k] for k in ("test_accuracy", "test_loss", "val_accuracy", "train_wall_time_s")}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="all", choices=["all", *ARCHITECTURES], help="which model (default: all)")
    parser.add_argument("--epochs", type=int, help="epochs (default: per architecture, see DEFAULTS)")
    parser.add_argument("--lr", type=float, help="peak learning rate of the one-cycle schedule")
    parser.add_argument("--batch-size", type=int, help="training batch size")
    parser.add_argument("--weight-decay", type=float, help="SGD weight decay on weights (not on norms and biases)")
    parser.add_argument("--label-smoothing", type=float, help="label smoothing")
    parser.add_argument("--momentum", type=float, help="Nesterov momentum (default 0.9)")
    parser.add_argument("--bias-lr-scale", type=float, help="learning-rate multiplier for norms and biases (default 1)")
    parser.add_argument("--crop-padding", type=int, help="pixels of reflect padding for the random crop (default 4)")
    parser.add_argument("--cutout", type=int, help="side of the square cutout erases from each training image (default 0: none)")
    parser.add_argument("--augment", type=lambda s: s.lower() in ("1", "true", "yes", "on"),
                        help="random crop + flip on/off (default: on)")
    parser.add_argument("--bf16", type=lambda s: s.lower() in ("1", "true", "yes", "on"),
                        help="bfloat16 autocast on/off (default: per architecture, whichever is faster on this CPU)")
    parser.add_argument("--channels-last", type=lambda s: s.lower() in ("1", "true", "yes", "on"),
                        help="channels-last memory on/off (default: per architecture, whichever is faster)")
    parser.add_argument("--val-images", type=int,
                        help=f"training images held out for the per-epoch curve and every choice (a new model: "
                             f"{VAL_IMAGES}; the committed recipes: 0, their curve is on the test split)")
    parser.add_argument("--tensorboard", metavar="DIR", help="write TensorBoard scalars and histograms to DIR/<arch>")
    parser.add_argument("--record-check", action="store_true",
                        help="with --eval --limit N: store the accuracy re-measured on that fixed subset of the test "
                             "split in metrics.json as \"check\" (what the tests re-measure in a fraction of the time)")
    parser.add_argument("--skip-test", action="store_true",
                        help="a candidate run for a choice made on validation: the test split is not read")
    parser.add_argument("--report-test", action="store_true",
                        help="read the test split once for the kept --skip-test candidate in --checkpoint-dir "
                             "and write its test metrics into its metrics.json")
    add_run_arguments(parser)
    args = parse_run_arguments(parser, argv)

    if args.record_check and not (args.eval and args.limit):
        parser.error("--record-check needs --eval and --limit")
    if args.arch != "all" and ARCHITECTURES[args.arch].pretrained and not args.eval:
        parser.error(f"{train_command(args.arch)} trains {args.arch} (on ImageNet features)")
    results = {}
    for arch in ARCHITECTURES if args.arch == "all" else [args.arch]:
        if ARCHITECTURES[arch].pretrained and not args.eval:
            tqdm.write(f"{arch}: not trained here; {train_command(arch)} trains it")
            continue
        if args.eval and args.arch == "all" and checkpoints.find(checkpoint_name(arch), args.checkpoint_dir) is None:
            tqdm.write(f"{arch}: no checkpoint to evaluate ({train_command(arch)} trains it)")
            continue
        arch_args = with_defaults(args, "arch", arch, DEFAULTS)
        if args.skip_test and not arch_args.val_images:
            parser.error("--skip-test needs --val-images (the choice is made on them)")
        results[arch] = report_test(arch_args) if args.report_test else run(arch_args)
        if args.record_check:
            checkpoints.record_check(checkpoint_name(arch), {k: results[arch][k] for k in ("test_images", "test_accuracy")},
                                     f"python -m train.cifar10 --arch {arch} --eval --limit {args.limit}", args.checkpoint_dir)
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
