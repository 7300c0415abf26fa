"""Train the three MNIST classifiers (bootcamp CNN, LeNet-style CNN, MLP).

    python -m train.mnist                 # train all three, as committed
    python -m train.mnist --arch cnn      # one of them
    python -m train.mnist --eval          # re-evaluate the committed checkpoints on the test set
    python -m train.mnist --arch mlp --epochs 1 --limit 512 --checkpoint-dir /tmp/ck   # a smoke run

The last 5,000 training images are held out for the per-epoch validation curve; the
test set is only touched once, after training. Augmentation (small affine moves and
random stroke thickness) is what keeps the CNN right on thick mouse-drawn digits.
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
                           seed_everything, with_defaults)
from models.mnist import ARCHS, MEAN, STD, checkpoint_name, normalize

# Per-architecture defaults that reproduce the committed checkpoints.
DEFAULTS = {
    "cnn": dict(epochs=15, lr=4e-3, batch_size=128, label_smoothing=0.05),
    # No label smoothing for LeNet: it is also the judge of the GANs' samples, and "labelled
    # with confidence >= 0.9" means little from a model trained never to exceed 0.955.
    "lenet": dict(epochs=15, lr=4e-3, batch_size=128, label_smoothing=0.0),
    "mlp": dict(epochs=40, lr=2e-3, batch_size=128, label_smoothing=0.05),
}
VAL_SIZE = 5000


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random affine (rotate, scale, shear, shift) and stroke thickness, on a (N, 1, 28, 28)
    batch of [0, 1] images."""
    n = x.shape[0]
    rand = lambda *shape: torch.rand(*shape, generator=gen)
    angle = (rand(n) - 0.5) * math.radians(30)
    scale = 0.85 + rand(n) * 0.3
    shear = (rand(n) - 0.5) * 0.3
    shift = (rand(n, 2) - 0.5) * (2 * 3 / 14)  # up to 3 pixels each way
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin + shear, shift[:, 0]], 1),
                         torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")
    # Stroke thickness: thicken a third of the batch (a 3x3 max is a dilation), thin a sixth.
    thick = F.max_pool2d(x, 3, stride=1, padding=1)
    thin = -F.max_pool2d(-x, 2, stride=1, padding=0)
    thin = F.pad(thin, (0, 1, 0, 1))
    choice = rand(n).view(n, 1, 1, 1)
    x = torch.where(choice < 1 / 3, thick, torch.where(choice > 5 / 6, thin, x))
    return x


def evaluate(model, images, labels, device, batch_size=1000):
    """Accuracy, mean loss and per-image probabilities on uint8 images."""
    model.eval()
    probs = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            x = normalize(images[i:i + batch_size]).to(device)
            probs.append(F.softmax(model(x).float(), dim=1).cpu())
    probs = torch.cat(probs)
    loss = F.nll_loss(probs.clamp_min(1e-12).log(), labels).item()
    accuracy = (probs.argmax(1) == labels).float().mean().item()
    return accuracy, loss, probs


def train_epoch(model, optimizer, scheduler, images, labels, args, epoch, device):
    model.train()
    gen = seed_epoch(args.seed, epoch)
    order = torch.randperm(len(images), generator=gen)
    total_loss = correct = seen = 0
    batches = range(0, len(images), args.batch_size)
    bar = tqdm(batches, desc=f"{args.arch} epoch {epoch}/{args.epochs}", leave=False)
    for i in bar:
        idx = order[i:i + args.batch_size]
        x = augment(images[idx].float().unsqueeze(1) / 255.0, gen)
        x = ((x - MEAN) / STD).to(device, memory_format=torch.channels_last)
        y = labels[idx].to(device)
        logits = model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=args.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total_loss += loss.item() * len(idx)
        correct += (logits.argmax(1) == y).sum().item()
        seen += len(idx)
        bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{correct / seen:.4f}")
    return total_loss / seen, correct / seen


def mistakes(images, labels, probs, limit=48) -> dict:
    """The first `limit` misclassified test images, for the tab's gallery."""
    wrong = (probs.argmax(1) != labels).nonzero().flatten()[:limit]
    return {"index": wrong, "images": images[wrong], "label": labels[wrong],
            "predicted": probs[wrong].argmax(1), "confidence": probs[wrong].max(1).values}


def run(arch: str, args) -> dict:
    """Train one architecture (or just evaluate it with --eval); returns its metrics."""
    device = pick_device(args.device)
    name = checkpoint_name(arch)
    test_x, test_y = data.mnist("test", root=args.data_dir)
    if args.eval:
        model = checkpoints.load(ARCHS[arch], name, f"python -m train.mnist --arch {arch}", device,
                                 root=args.checkpoint_dir)
        accuracy, loss, _ = evaluate(model, test_x, test_y, device)
        return {"test_accuracy": accuracy, "test_loss": loss, "test_images": len(test_y)}

    seed_everything(args.seed)
    train_x, train_y = data.mnist("train", root=args.data_dir)
    val_x, val_y = train_x[-VAL_SIZE:], train_y[-VAL_SIZE:]
    train_x, train_y = train_x[:-VAL_SIZE], train_y[:-VAL_SIZE]
    if args.limit:
        train_x, train_y = train_x[:args.limit], train_y[:args.limit]
        val_x, val_y, test_x, test_y = val_x[:args.limit], val_y[:args.limit], test_x[:args.limit], test_y[:args.limit]

    model = ARCHS[arch]().to(device, memory_format=torch.channels_last)  # faster convs on CPU too
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps = args.epochs * math.ceil(len(train_x) / args.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=steps)
    resume_dir = Path(args.checkpoint_dir or checkpoints.CHECKPOINTS) / name / "resume"
    config = {k: getattr(args, k) for k in ("arch", "epochs", "lr", "batch_size", "weight_decay", "label_smoothing",
                                            "seed", "limit")}
    start_epoch, history = load_state(resume_dir, model, optimizer, scheduler, config) if args.resume else (0, [])
    elapsed_before = history[-1]["wall_time_s"] if history else 0.0

    start = time.perf_counter()
    for epoch in range(start_epoch + 1, args.epochs + 1):
        train_loss, train_acc = train_epoch(model, optimizer, scheduler, train_x, train_y, args, epoch, device)
        val_acc, val_loss, _ = evaluate(model, val_x, val_y, device)
        history.append({"epoch": epoch, "train_loss": train_loss, "train_accuracy": train_acc,
                        "val_loss": val_loss, "val_accuracy": val_acc,
                        "wall_time_s": round(elapsed_before + time.perf_counter() - start, 1)})
        tqdm.write(json.dumps(history[-1]))
        save_state(resume_dir, model, optimizer, scheduler, epoch, history, config)
        if args.stop_after and epoch >= args.stop_after:
            return {"stopped_after_epoch": epoch}
    wall_time = elapsed_before + time.perf_counter() - start

    test_acc, test_loss, probs = evaluate(model, test_x, test_y, device)
    metrics = {
        "test_accuracy": test_acc, "test_loss": test_loss, "test_images": len(test_y),
        "train_images": len(train_x), "val_images": len(val_x),
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_wall_time_s": round(wall_time, 1), "device": str(device),
        "seed": args.seed, "command": checkpoints.command_line("train.mnist"),
        "hyperparameters": {k: getattr(args, k) for k in
                            ("epochs", "lr", "batch_size", "weight_decay", "label_smoothing")},
        "history": history,
    }
    path = checkpoints.save(model.cpu(), name, metrics, root=args.checkpoint_dir)
    wrong = mistakes(test_x, test_y, probs)
    save_file({k: v.contiguous() for k, v in wrong.items()}, str(path / "mistakes.safetensors"))
    return {k: metrics[k] for k in ("test_accuracy", "test_loss", "train_wall_time_s")}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="all", choices=["all", *ARCHS], help="which model (default: all three)")
    parser.add_argument("--epochs", type=int, help="epochs (default: per architecture, see DEFAULTS)")
    parser.add_argument("--lr", type=float, help="peak learning rate of the one-cycle schedule")
    parser.add_argument("--batch-size", type=int, help="training batch size")
    parser.add_argument("--weight-decay", type=float, default=5e-4, help="AdamW weight decay")
    parser.add_argument("--label-smoothing", type=float, help="label smoothing (default: per architecture)")
    add_run_arguments(parser)
    args = parse_run_arguments(parser, argv)

    results = {}
    for arch in ARCHS if args.arch == "all" else [args.arch]:
        results[arch] = run(arch, with_defaults(args, "arch", arch, DEFAULTS))
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
