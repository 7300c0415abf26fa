"""Train the semi-supervised GAN (models/sgan.py) on MNIST with a few labelled digits, and
the same classifier on those labels alone for comparison. Run through train.gan:

    python -m train.gan --model sgan                   # 100 labels (10 a class), as committed
    python -m train.gan --model sgan --sweep           # also 20, 50, 1,000 labels and the baselines
    python -m train.gan --model sgan --eval            # test accuracy of the committed model(s)
    python -m train.gan --model sgan --epochs 1 --limit 2000 --checkpoint-dir /tmp/ck   # a smoke run

Of the 60,000 training digits, VAL_IMAGES are held out (seeded) as the validation split;
the labelled digits are drawn from the rest, the same number of each digit, and every
digit of the rest is an unlabelled one too. Each run keeps the weights of its epoch with
the best validation accuracy; the 10,000 test digits are read once, at the end.

The supervised baseline is the same classifier (with the same noise) trained with
cross-entropy on the labelled digits only, for as many steps, kept the same way.
"""
import argparse
import copy
import json
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from core import checkpoints, data
from core.training import load_state, pick_device, save_state, seed_epoch, seed_everything
from models.sgan import (LABEL_COUNTS, SWEEP, SemiSupervisedGAN, checkpoint_name, train_command, discriminator_loss,
                         feature_matching_loss, load_classifier, predict, save_classifier, to_input)

DEFAULTS = dict(epochs=30, lr=0.003, batch_size=100, labels=100)
VAL_IMAGES = 1000


def split(args) -> dict:
    """{"labelled": (x, y), "unlabelled": x, "val": (x, y)}: uint8 digits, seeded."""
    images, labels = data.mnist("train", root=args.data_dir)
    if args.limit:
        images, labels = images[:args.limit], labels[:args.limit]
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(args.seed))
    val_size = min(VAL_IMAGES, len(images) // 10)
    val, rest = order[:val_size], order[val_size:]
    per_class = max(1, args.labels // 10)
    chosen = torch.cat([rest[labels[rest] == d][:per_class] for d in range(10)]) if args.labels < len(rest) else rest
    return {"labelled": (images[chosen], labels[chosen]), "unlabelled": images[rest], "val": (images[val], labels[val])}


def accuracy(model, images, labels) -> float:
    return (predict(model, images).argmax(1) == labels).float().mean().item()


def learning_rate(args, epoch: int) -> float:
    """Constant for the first half, then down linearly to 0 (the paper's linear decay)."""
    half = args.epochs / 2
    return args.lr if epoch <= half else args.lr * (args.epochs - epoch + 1) / (args.epochs - half + 1)


def labelled_batches(labelled_x, labelled_y, steps: int, batch_size: int, g: torch.Generator):
    """steps batches cycling through the labelled digits in shuffled order (20 labels give
    batches of five copies of each)."""
    repeats = -(-steps * batch_size // len(labelled_x))
    order = torch.cat([torch.randperm(len(labelled_x), generator=g) for _ in range(repeats)])
    for i in range(steps):
        idx = order[i * batch_size:(i + 1) * batch_size]
        yield to_input(labelled_x[idx]), labelled_y[idx]


def train_epoch(model, opt_d, opt_g, parts, args, epoch, semi_supervised: bool, device) -> dict:
    g = seed_epoch(args.seed, epoch)
    for opt in (opt_d, opt_g):
        for group in opt.param_groups:
            group["lr"] = learning_rate(args, epoch)
    unlabelled = parts["unlabelled"][torch.randperm(len(parts["unlabelled"]), generator=g)]
    steps = len(unlabelled) // args.batch_size
    sums = {"supervised": 0.0, "unsupervised": 0.0, "feature_matching": 0.0}
    model.train()
    bar = tqdm(zip(range(steps), labelled_batches(*parts["labelled"], steps, args.batch_size, g)), total=steps,
               desc=f"{'sgan' if semi_supervised else 'supervised'} {args.labels} labels, epoch {epoch}/{args.epochs}",
               leave=False)
    for step, (x_lab, y_lab) in bar:
        x_lab, y_lab = x_lab.to(device), y_lab.to(device)
        if not semi_supervised:
            loss = torch.nn.functional.cross_entropy(model.classifier(x_lab)[0], y_lab)
            opt_d.zero_grad(set_to_none=True)
            loss.backward()
            opt_d.step()
            sums["supervised"] += loss.item()
            continue
        x_unl = to_input(unlabelled[step * args.batch_size:(step + 1) * args.batch_size]).to(device)
        z = torch.randn(args.batch_size, model.generator.latent_dim, device=device)
        fake = model.generator(z)
        # one pass for the three batches (the classifier has no batch norm, so this is the same)
        logits, features = model.classifier(torch.cat([x_lab, x_unl, fake.detach()]))
        logits_lab, logits_unl, logits_fake = logits.split(args.batch_size)
        supervised, unsupervised = discriminator_loss(logits_lab, y_lab, logits_unl, logits_fake)
        opt_d.zero_grad(set_to_none=True)
        (supervised + unsupervised).backward()
        opt_d.step()
        # the generator's step: only its weights move (opt_g); the target is the real batch's
        # features from the pass above
        real_features = features[args.batch_size:2 * args.batch_size].detach()
        z = torch.randn(args.batch_size, model.generator.latent_dim, device=device)
        matching = feature_matching_loss(real_features, model.classifier(model.generator(z))[1])
        opt_g.zero_grad(set_to_none=True)
        matching.backward()
        opt_g.step()
        for k, v in (("supervised", supervised), ("unsupervised", unsupervised), ("feature_matching", matching)):
            sums[k] += v.item()
        bar.set_postfix(sup=f"{sums['supervised'] / (step + 1):.3f}", unsup=f"{sums['unsupervised'] / (step + 1):.3f}")
    return {k: round(v / max(1, steps), 5) for k, v in sums.items() if semi_supervised or k == "supervised"}


def train_one(args, semi_supervised: bool, device, resume_dir: Path | None = None) -> tuple[SemiSupervisedGAN, dict]:
    """One run at args.labels labels; returns the model at its best validation epoch and its record."""
    seed_everything(args.seed)
    parts = split(args)
    model = SemiSupervisedGAN().to(device)
    opt_d = torch.optim.Adam(model.classifier.parameters(), lr=args.lr, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(model.generator.parameters(), lr=args.lr, betas=(0.5, 0.999))
    config = {k: getattr(args, k) for k in ("epochs", "lr", "batch_size", "labels", "seed", "limit")} | {
        "semi_supervised": semi_supervised}
    start_epoch, history = 0, []
    if resume_dir is not None and args.resume:
        start_epoch, history = load_state(resume_dir / "classifier", model, opt_d, None, config)
        if start_epoch and load_state(resume_dir / "generator", model, opt_g, None, config)[0] != start_epoch:
            raise SystemExit(f"Cannot resume {resume_dir}: its classifier and generator are from different epochs.")
    best = (max(h["val_accuracy"] for h in history), None) if history else (-1.0, None)
    if history:
        best = (best[0], load_file(str(resume_dir / "best.safetensors")))
    elapsed_before = history[-1]["wall_time_s"] if history else 0.0
    start = time.perf_counter()
    for epoch in range(start_epoch + 1, args.epochs + 1):
        stats = train_epoch(model, opt_d, opt_g, parts, args, epoch, semi_supervised, device)
        val = accuracy(model, *parts["val"])
        history.append({"epoch": epoch, **stats, "val_accuracy": round(val, 4),
                        "wall_time_s": round(elapsed_before + time.perf_counter() - start, 1)})
        tqdm.write(json.dumps(history[-1]))
        if val > best[0]:
            best = (val, copy.deepcopy(model.state_dict()))
        if resume_dir is not None:  # the best first: a crash after it leaves the last epoch to redo, not a stale best
            resume_dir.mkdir(parents=True, exist_ok=True)
            save_file({k: v.contiguous() for k, v in best[1].items()}, str(resume_dir / "best.safetensors"))
            save_state(resume_dir / "classifier", model, opt_d, None, epoch, history, config)
            save_state(resume_dir / "generator", model, opt_g, None, epoch, history, config)
        if args.stop_after and epoch >= args.stop_after:
            raise SystemExit(f"stopped after epoch {epoch} (--stop-after)")
    model.load_state_dict(best[1])
    kept = max(history, key=lambda h: h["val_accuracy"])
    record = {"labels": len(parts["labelled"][0]), "val_images": len(parts["val"][0]), "unlabelled": len(parts["unlabelled"]) if semi_supervised else 0,
              "val_accuracy": kept["val_accuracy"], "epoch_kept": kept["epoch"], "history": history,
              "train_wall_time_s": round(elapsed_before + time.perf_counter() - start, 1)}
    return model.eval(), record


def test_split(args):
    images, labels = data.mnist("test", root=args.data_dir)
    return (images[:args.limit], labels[:args.limit]) if args.limit else (images, labels)


def evaluate(args) -> dict:
    """Test accuracy of the committed model and of every classifier of its sweep."""
    path = checkpoints.find(checkpoint_name(), args.checkpoint_dir)
    if path is None:
        raise checkpoints.MissingCheckpoint(checkpoint_name(), train_command())
    model = checkpoints.load(SemiSupervisedGAN, checkpoint_name(), train_command(), root=args.checkpoint_dir)
    images, labels = test_split(args)
    result = {"test_accuracy": round(accuracy(model, images, labels), 4), "test_images": len(images)}
    sweep = {p.stem: round(accuracy(load_classifier(p), images, labels), 4) for p in sorted((path / SWEEP).glob("*.safetensors"))}
    return result | ({"sweep": sweep} if sweep else {})


def run(args) -> dict:
    device = pick_device(args.device)
    if args.eval:
        return evaluate(args)
    root = Path(args.checkpoint_dir or checkpoints.CHECKPOINTS)
    test_x, test_y = test_split(args)
    model, record = train_one(args, True, device, resume_dir=root / checkpoint_name() / "resume")
    record["test_accuracy"] = round(accuracy(model, test_x, test_y), 4)
    baseline, base_record = train_one(args, False, device)
    if args.sweep:  # the 100-label baseline is one of the curve's classifiers
        path = root / checkpoint_name() / SWEEP / f"supervised_{args.labels}.safetensors"
        save_classifier(baseline, path)
        baseline = load_classifier(path)
    metrics = {"model": "sgan", "labels": record["labels"], "test_accuracy": record["test_accuracy"],
               "test_images": len(test_x), "val_accuracy": record["val_accuracy"], "val_images": record["val_images"],
               "epoch_kept": record["epoch_kept"], "unlabelled": record["unlabelled"],
               "supervised_only": {"test_accuracy": round(accuracy(baseline, test_x, test_y), 4),
                                   "val_accuracy": base_record["val_accuracy"], "epoch_kept": base_record["epoch_kept"]},
               "generator_parameters": sum(p.numel() for p in model.generator.parameters()),
               "classifier_parameters": sum(p.numel() for p in model.classifier.parameters()),
               "train_wall_time_s": record["train_wall_time_s"], "device": str(device), "seed": args.seed,
               "command": checkpoints.command_line("train.gan"),
               "hyperparameters": {k: getattr(args, k) for k in ("epochs", "lr", "batch_size", "labels")},
               "history": record["history"], "supervised_only_history": base_record["history"]}
    if args.sweep:
        metrics["sweep"] = sweep(args, device, root / checkpoint_name() / SWEEP, (test_x, test_y), record, metrics)
    checkpoints.save(model.cpu(), checkpoint_name(), metrics, root=args.checkpoint_dir)
    return {k: v for k, v in metrics.items() if not k.endswith("history")}


def sweep(args, device, folder: Path, test, record_100: dict, metrics_100: dict) -> list[dict]:
    """Accuracy against the number of labels, SGAN and supervised only; all labels for the
    baseline's ceiling. Each point's classifier is kept in `folder` for --eval."""
    rows = [{"labels": args.labels, "method": "sgan", "test_accuracy": metrics_100["test_accuracy"],
             "val_accuracy": record_100["val_accuracy"], "train_wall_time_s": record_100["train_wall_time_s"]},
            {"labels": args.labels, "method": "supervised", **{k: metrics_100["supervised_only"][k]
                                                               for k in ("test_accuracy", "val_accuracy")}}]
    for labels in [n for n in LABEL_COUNTS if n != args.labels] + [0]:
        for semi in ([True, False] if labels else [False]):
            point = argparse.Namespace(**dict(vars(args), labels=labels or 10 ** 9))
            model, record = train_one(point, semi, device)
            path = folder / f"{'sgan' if semi else 'supervised'}_{labels or 'all'}.safetensors"
            save_classifier(model, path)
            model = load_classifier(path)  # measured as --eval will measure it: in float16
            rows.append({"labels": record["labels"], "method": "sgan" if semi else "supervised",
                         "test_accuracy": round(accuracy(model, *test), 4), "val_accuracy": record["val_accuracy"],
                         "train_wall_time_s": record["train_wall_time_s"]})
            tqdm.write(json.dumps(rows[-1]))
    return rows


def add_arguments(parser) -> None:
    parser.add_argument("--labels", type=int, help=f"sgan: labelled digits, 10 a class (default {DEFAULTS['labels']})")
    parser.add_argument("--sweep", action="store_true",
                        help=f"sgan: also train at {', '.join(map(str, LABEL_COUNTS))} labels and all, both ways")
