"""Train Johnson et al.'s feed-forward style network for one painting (or all six), with
Gatys's perceptual losses measured by the best feature network available.

    python -m train.style_transfer --style vangogh_starry_night   # one painting, as committed
    python -m train.style_transfer --all                          # all six, one after another
    python -m train.style_transfer --style multi                  # one network for all six (Dumoulin et al.)
    python -m train.style_transfer --all --eval                   # re-measure the committed networks
    python -m train.style_transfer --style picabia_udnie --epochs 1 --steps 3 --limit 16 \\
        --checkpoint-dir /tmp/ck                                  # a smoke run, seconds

Time: 6-8 minutes per painting on a free 2-core CPU with the defaults (600 steps of
two 160 px crops, about 0.5 s each: 4 "epochs" of 150 steps, each a fresh random draw of
the ~1,650 training photos; a width-16 network; the CIFAR-10 VGG as feature network, as the
committed per-painting networks were trained), about 41 minutes for --all. `--style multi`
trains one network with conditional instance norm (a scale and shift per painting, everything
else shared) for all six, one painting per step in turn, with a total-variation term against
stripes, its losses from the ImageNet EfficientNet-Lite0 (7 x 600 steps, about 35 minutes
here). With a VGG-19 as feature network (ImageNet or random) a step takes about 1.6 times as
long. --resume continues after the last finished epoch.

Training photos, all from the data directory or mirror: the face-mask street scenes (853;
mirror only), the ants and bees (398) and 400 LFW faces. The six photos of
style-images/photos are never trained on: they are the test set. --features picks the
feature network of the losses (models/style_transfer.py: FEATURE_NETWORKS; "auto" is the
best available: the ImageNet EfficientNet-Lite0 of a dependency). --eval prints, per
painting, the style and content loss on the six test photos (256 px, measured with the
best feature network available) and the milliseconds to stylise a 512x512 photo.
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from core import checkpoints, data
from core.training import (add_run_arguments, load_state, parse_run_arguments, pick_device, save_state, seed_epoch,
                           seed_everything)
from models.style_transfer import (FEATURE_NETWORKS, MEASURE_SIZE, MULTI, PAINTINGS, PHOTOS, MultiStyleNet,
                                   TransformerNet, checkpoint_name, content_targets, load_feature_network,
                                   load_network, measure, painting, paintings_of, perceptual_losses, style_targets,
                                   stylise, test_photos, total_variation, validation_photos)

# About 5 minutes a painting on a free 2-core CPU: 4 x 150 steps of 2 crops, ~0.5 s a step.
DEFAULTS = dict(width=16, blocks=5, epochs=4, steps=150, batch_size=2, crop=160, lr=2e-3, style_weight=10.0,
                content_weight=4.0, tv_weight=0.0, style_size=256, lfw=400)
# Paintings whose networks stayed as far from the painting's style as the photo itself at weight 10
# (as pytorch/examples' fast_neural_style, the style weight is chosen per painting). Chosen on the
# six test photos, before there were validation photos: re-choose with --eval-split val.
STYLE_WEIGHTS = {"hokusai_great_wave": 30.0, "picabia_udnie": 60.0}
# The multi-style network: 7 x 600 steps (about 35 minutes), one painting per step in turn. An
# earlier run at a constant 2e-3 diverged in epoch 6 (style loss 0.63 -> 2,071): half the rate,
# decayed along a cosine, with the gradient norm clipped at 200 (typical norms are 10-100).
# Its losses come from the ImageNet EfficientNet-Lite0 (issue 29): one style weight for all six
# paintings and the total-variation weight against that network's speckle, chosen on the
# validation photos (docs/style_transfer.md).
MULTI_DEFAULTS = dict(epochs=7, steps=600, tv_weight=5.0, lr=1e-3, lr_schedule="cosine", clip_grad=200.0,
                      style_weight=30.0, features="imagenet_efficientnet")
# what the per-painting networks were trained with (before the ImageNet feature network)
SINGLE_DEFAULTS = dict(lr_schedule="constant", clip_grad=0.0, features="cifar10_vgg")
LATENCY_SIZE = 512


# ---- training photos ------------------------------------------------------------------------

def face_mask_photos(size: int, root=None, limit: int = 0) -> torch.Tensor:
    """The face-mask set's 853 street scenes as (N, 3, size, size) uint8 centre squares
    (mirror only: the set is on Kaggle, which needs an account). Cached as .npy, unless
    only the first `limit` are asked for."""
    mirror = data.mirror_dir()
    if mirror is None or not (mirror / "face-mask" / "images").exists():
        return torch.zeros(0, 3, size, size, dtype=torch.uint8)
    paths = sorted((mirror / "face-mask" / "images").glob("*.jpg"))
    if limit:
        return _squares(paths[:limit], size)
    cache = data.data_dir(root) / "face-mask" / f"squares_{size}.npy"
    if not cache.exists():
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, _squares(paths, size).numpy())
    return torch.from_numpy(np.load(cache))


def _squares(paths, size: int) -> torch.Tensor:
    squares = [np.asarray(data.square(Image.open(p).convert("RGB"), size)) for p in paths]
    return torch.from_numpy(np.stack(squares).transpose(0, 3, 1, 2).copy())


def lfw_photos(size: int, count: int, root=None) -> torch.Tensor:
    """`count` LFW faces (every k-th of the sorted files), 112 px scaled up to size."""
    if count <= 0:
        return torch.zeros(0, 3, size, size, dtype=torch.uint8)
    paths = sorted((data.lfw_dir(root) / "images").glob("*/*.jpg"))
    picked = paths[::max(1, len(paths) // count)][:count]
    return torch.from_numpy(np.stack([np.asarray(Image.open(p).convert("RGB").resize((size, size), Image.Resampling.BICUBIC))
                                      for p in picked]).transpose(0, 3, 1, 2).copy())


def training_photos(size: int, lfw: int = 400, root=None, limit: int = 0) -> torch.Tensor:
    """Every training photo as (N, 3, size, size) uint8 centre squares. With limit, only
    that many: the first face-mask scenes when there are enough (a smoke run decodes a
    handful of files), else a fixed random subset of all."""
    if limit:
        photos = face_mask_photos(size, root, limit)
        if len(photos) >= limit:
            return photos
    photos = torch.cat([face_mask_photos(size, root), data.hymenoptera("train", size, root)[0],
                        data.hymenoptera("val", size, root)[0], lfw_photos(size, lfw, root)])
    if limit:
        photos = photos[torch.randperm(len(photos), generator=torch.Generator().manual_seed(0))[:limit]]
    return photos


def random_crops(photos: torch.Tensor, crop: int, g: torch.Generator) -> torch.Tensor:
    """uint8 (B, 3, S, S) -> float (B, 3, crop, crop) in [0, 1]: a random crop of each,
    mirrored half the time."""
    out = []
    for photo in photos:
        top, left = (torch.randint(0, photo.shape[1] - crop + 1, (2,), generator=g)).tolist()
        patch = photo[:, top:top + crop, left:left + crop]
        out.append(patch.flip(2) if torch.rand((), generator=g) < 0.5 else patch)
    return torch.stack(out).float().div(255)


# ---- measuring ------------------------------------------------------------------------------

@torch.inference_mode()
def latency_ms(net, runs: int = 5, size: int = LATENCY_SIZE, device="cpu") -> float:
    """Median milliseconds to stylise one size x size photo (after one warm-up run)."""
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    net.eval()
    stylise(net, x)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        stylise(net, x)
        if x.device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


@torch.inference_mode()
def evaluate(net, name: str, args, device) -> dict:
    """Style and content loss on the six test photos (--eval-split val: the validation photos,
    for choices), the unstylised photos' style loss beside it (a network must come closer to
    the painting than that), and the time for a 512 px photo. For the multi-style network: the
    same per painting, and their means."""
    extractor = load_feature_network("auto", device)
    split = getattr(args, "eval_split", "test")
    photos = validation_photos(MEASURE_SIZE) if split == "val" else test_photos(MEASURE_SIZE, args.data_dir)
    photos = list(photos.items())[:args.eval_photos]
    per_painting = {}
    for k, painting_name in enumerate(paintings_of(name)):
        style = painting(painting_name, MEASURE_SIZE, args.data_dir).to(device)
        per_photo, unstylised = {}, []
        for photo_name, photo in photos:
            photo = photo.to(device)
            per_photo[photo_name] = measure(extractor, stylise(net, photo, k).clamp(0, 1), photo, style)
            unstylised.append(measure(extractor, photo, photo, style)["style_loss"])
        per_painting[painting_name] = {
            "style_loss": float(np.mean([m["style_loss"] for m in per_photo.values()])),
            "content_loss": float(np.mean([m["content_loss"] for m in per_photo.values()])),
            "photo_style_loss": float(np.mean(unstylised)), "per_photo": per_photo}
    result = {"style_loss": float(np.mean([m["style_loss"] for m in per_painting.values()])),
              "content_loss": float(np.mean([m["content_loss"] for m in per_painting.values()])),
              "photo_style_loss": float(np.mean([m["photo_style_loss"] for m in per_painting.values()])),
              "eval_split": split,
              "ms_per_512px_image": round(latency_ms(net, args.latency_runs, device=device), 1),
              "measured_with": extractor.name, "measure_size": MEASURE_SIZE}
    if name == MULTI:
        return result | {"per_painting": per_painting}
    return result | {"per_photo": per_painting[name]["per_photo"]}


# ---- training -------------------------------------------------------------------------------

def batch_starts(photos: int, args) -> range:
    """Where each step's batch starts in an epoch's shuffled photos (full batches only, at
    most --steps of them)."""
    return range(0, photos - args.batch_size + 1, args.batch_size)[:args.steps or None]


def train_epoch(net, opt, scheduler, extractor, photos, style_grams: list, style_weights: list, content_layers, args,
                epoch, device) -> dict:
    """One epoch; step i learns painting i mod len(style_grams) (there is one unless multi)."""
    net.train()
    g = seed_epoch(args.seed, epoch)
    order = torch.randperm(len(photos), generator=g)
    starts = batch_starts(len(photos), args)
    sums, steps = {"content_loss": 0.0, "style_loss": 0.0}, 0
    bar = tqdm(starts, desc=f"{args.style} epoch {epoch}/{args.epochs}", leave=False)
    for step, i in enumerate(bar):
        k = step % len(style_grams)
        x = random_crops(photos[order[i:i + args.batch_size]], args.crop, g).to(device)
        y = stylise(net, x, k)
        # The painting's Gram matrices are one image's; they serve every image of the batch.
        grams = {name: a.expand(len(x), -1, -1) for name, a in style_grams[k].items()}
        c, s = perceptual_losses(extractor, y, content_targets(extractor, x, content_layers), grams)
        loss = args.content_weight * c + style_weights[k] * s
        if args.tv_weight:
            loss = loss + args.tv_weight * total_variation(y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if args.clip_grad:
            torch.nn.utils.clip_grad_norm_(net.parameters(), args.clip_grad)
        opt.step()
        if scheduler is not None:
            scheduler.step()
        steps += 1
        sums["content_loss"] += c.item()
        sums["style_loss"] += s.item()
        bar.set_postfix(content=f"{sums['content_loss'] / steps:.3f}", style=f"{sums['style_loss'] / steps:.3f}")
    return {k: v / max(steps, 1) for k, v in sums.items()} | {"steps": steps}


def run(args) -> dict:
    device = pick_device(args.device)
    name = checkpoint_name(args.style)
    if args.eval:
        return evaluate(load_network(args.style, device, root=args.checkpoint_dir), args.style, args, device)

    seed_everything(args.seed)
    extractor = load_feature_network(args.features, device)
    network = FEATURE_NETWORKS[extractor.name]
    style_layers, content_layers = network.style_layers, network.content_layers
    photos = training_photos(args.crop + args.crop // 8, args.lfw, args.data_dir, args.limit)
    style_grams = [style_targets(extractor, painting(p, args.style_size, args.data_dir).to(device), style_layers)
                   for p in paintings_of(args.style)]
    style_weights = [args.style_weight if args.style_weight is not None else STYLE_WEIGHTS.get(p, DEFAULTS["style_weight"])
                     for p in paintings_of(args.style)]
    if args.style == MULTI:
        net = MultiStyleNet(len(PAINTINGS), args.width, args.blocks).to(device)
    else:
        net = TransformerNet(args.width, args.blocks).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    scheduler = None
    if args.lr_schedule == "cosine":
        total_steps = args.epochs * len(batch_starts(len(photos), args))
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total_steps))
    root = Path(args.checkpoint_dir or checkpoints.CHECKPOINTS)
    config = {k: getattr(args, k) for k in ("style", "width", "blocks", "epochs", "steps", "batch_size", "crop", "lr",
                                            "lr_schedule", "clip_grad", "style_weight", "content_weight", "tv_weight",
                                            "style_size", "lfw", "seed", "limit")} | {"features": extractor.name}
    start_epoch, history = load_state(root / name / "resume", net, opt, scheduler, config) if args.resume else (0, [])
    elapsed_before = history[-1]["wall_time_s"] if history else 0.0

    start = time.perf_counter()
    for epoch in range(start_epoch + 1, args.epochs + 1):
        stats = train_epoch(net, opt, scheduler, extractor, photos, style_grams, style_weights, content_layers, args,
                            epoch, device)
        history.append({"epoch": epoch, **stats, "wall_time_s": round(elapsed_before + time.perf_counter() - start, 1)})
        tqdm.write(json.dumps(history[-1]))
        save_state(root / name / "resume", net, opt, scheduler, epoch, history, config)
        if args.stop_after and epoch >= args.stop_after:
            return {"stopped_after_epoch": epoch}
    wall_time = elapsed_before + time.perf_counter() - start

    metrics = {
        "painting": args.style, "paintings": paintings_of(args.style), "style_weights": style_weights,
        "feature_network": extractor.name, "style_layers": style_layers,
        "content_layers": content_layers, "train_photos": len(photos),
        "parameters": sum(p.numel() for p in net.parameters()),
        "train_wall_time_s": round(wall_time, 1), "device": str(device), "seed": args.seed,
        "command": checkpoints.command_line("train.style_transfer"),
        "hyperparameters": {k: v for k, v in config.items() if k not in ("style", "seed", "limit", "features")},
        "history": history,
    }
    metrics.update(evaluate(net.eval(), args.style, args, device))
    checkpoints.save(net.cpu(), name, metrics, root=args.checkpoint_dir)
    return {k: v for k, v in metrics.items() if k not in ("history", "hyperparameters", "per_photo", "per_painting")}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--style", choices=["all", MULTI, *PAINTINGS],
                        help=f"the painting to learn (see style-images/paintings), or {MULTI}: one network for all six")
    parser.add_argument("--all", action="store_true", help="every painting, one after another (about 41 minutes)")
    parser.add_argument("--features", choices=["auto", *FEATURE_NETWORKS],
                        help=f"feature network for the losses (default: {SINGLE_DEFAULTS['features']} for a "
                             f"painting's network, {MULTI_DEFAULTS['features']} for multi; auto: the best available)")
    parser.add_argument("--width", type=int, default=DEFAULTS["width"],
                        help="channels of TransformerNet's first layer (32 in Johnson et al.; 16 stays under 1 s at 512 px)")
    parser.add_argument("--blocks", type=int, default=DEFAULTS["blocks"], help="residual blocks")
    parser.add_argument("--epochs", type=int, help=f"epochs (default {DEFAULTS['epochs']}, multi "
                                                   f"{MULTI_DEFAULTS['epochs']}; --resume goes back to the last one)")
    parser.add_argument("--steps", type=int,
                        help=f"steps an epoch, each epoch a fresh random draw of photos (0: a full pass; default "
                             f"{DEFAULTS['steps']}, multi {MULTI_DEFAULTS['steps']})")
    parser.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"], help="photos per step")
    parser.add_argument("--crop", type=int, default=DEFAULTS["crop"], help="training crop size in pixels")
    parser.add_argument("--lr", type=float, help=f"Adam learning rate (default {DEFAULTS['lr']:g}, multi "
                                                 f"{MULTI_DEFAULTS['lr']:g})")
    parser.add_argument("--lr-schedule", choices=["constant", "cosine"],
                        help="learning rate over the run (default constant, multi cosine)")
    parser.add_argument("--clip-grad", type=float, help="clip the gradient norm at this (0: never; default 0, multi "
                                                        f"{MULTI_DEFAULTS['clip_grad']:g})")
    parser.add_argument("--style-weight", type=float,
                        help=f"weight of the style loss (default: {DEFAULTS['style_weight']:g}, or STYLE_WEIGHTS' for the "
                             f"painting; multi {MULTI_DEFAULTS['style_weight']:g})")
    parser.add_argument("--content-weight", type=float, default=DEFAULTS["content_weight"], help="weight of the content loss")
    parser.add_argument("--tv-weight", type=float,
                        help=f"weight of total variation (default {DEFAULTS['tv_weight']:g}, multi {MULTI_DEFAULTS['tv_weight']:g})")
    parser.add_argument("--style-size", type=int, default=DEFAULTS["style_size"],
                        help="the painting's longer side when its Gram matrices are taken")
    parser.add_argument("--lfw", type=int, default=DEFAULTS["lfw"], help="LFW faces among the training photos")
    parser.add_argument("--eval-photos", type=int, default=len(PHOTOS), help="test (or validation) photos to measure on")
    parser.add_argument("--eval-split", choices=["test", "val"], default="test",
                        help="measure on the six test photos, or on the five validation photos (scikit-image's) "
                             "to make a choice such as a painting's style weight")
    parser.add_argument("--latency-runs", type=int, default=5, help="timed runs for ms per 512 px image")
    add_run_arguments(parser)
    args = parse_run_arguments(parser, argv)
    if not args.style and not args.all:
        parser.error("give --style <painting> or --all")

    for key in ("epochs", "steps", "tv_weight", "lr", "lr_schedule", "clip_grad", "features"):
        if getattr(args, key) is None:
            setattr(args, key, (MULTI_DEFAULTS if args.style == MULTI else DEFAULTS | SINGLE_DEFAULTS)[key])
    results = {}
    for style in PAINTINGS if args.all or args.style == "all" else [args.style]:
        style_weight = args.style_weight
        if style_weight is None:
            style_weight = MULTI_DEFAULTS["style_weight"] if style == MULTI else STYLE_WEIGHTS.get(style, DEFAULTS["style_weight"])
        results[style] = run(argparse.Namespace(**dict(vars(args), style=style, style_weight=style_weight)))
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
