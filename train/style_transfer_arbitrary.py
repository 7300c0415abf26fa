"""Train the AdaIN network that stylises a photo with any painting in one pass (Huang and
Belongie 2017; models/style_transfer.py: AdaINNet, encoder the ImageNet EfficientNet-Lite0).

    python -m train.style_transfer_arbitrary            # as committed
    python -m train.style_transfer_arbitrary --eval     # re-measure the committed network
    python -m train.style_transfer_arbitrary --epochs 1 --steps 2 --limit 16 --checkpoint-dir /tmp/ck   # seconds

Only the decoder learns. Each step takes a batch of photo crops and as many style crops, and
the decoder's picture is judged by the encoder itself: its features at the deepest AdaIN
layers must be the AdaIN targets (content), its channel means and spreads at five layers the
style crop's (style). Six paintings are too few to learn "any painting", so the style crops
come from everything the data has, varied: four of the six paintings and the nine of
style-images/more-paintings, at scales from a quarter of the picture to all of it, with
their hue turned and their saturation changed half the time; the textures the project
draws (stained glass and brush strokes, a new layout each time); and the training photos
themselves. HELD_OUT_PAINTINGS (The Great Wave, Composition VII) are never seen: with the
validation photos they make the per-epoch curve, and with the test photos the unseen half
of --eval.

--eval prints the style and content loss (measured as train.style_transfer does, with the
ImageNet EfficientNet's Gram matrices) of the six test photos with the seen and the held-out
paintings, the unstylised photos' style loss beside them, and the milliseconds for a 512 px
photo.
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm
from torchvision.transforms.v2 import functional as TF

from core import checkpoints
from core.training import (add_run_arguments, load_state, parse_run_arguments, pick_device, save_state, seed_epoch,
                           seed_everything)
from models.style_transfer import (ADAIN_LAYERS, ADAIN_STYLE_SIZE, ARBITRARY, HELD_OUT_PAINTINGS, MEASURE_SIZE,
                                   PAINTINGS, AdaINNet, brush_strokes, checkpoint_name,
                                   load_feature_network, mean_std, measure, more_paintings, painting, stained_glass,
                                   test_photos, validation_photos)
from train.style_transfer import random_crops, training_photos

DEFAULTS = dict(width=64, epochs=8, steps=300, batch_size=8, crop=192, lr=1e-3, style_weight=10.0, content_weight=1.0,
                style_size=512, lfw=400)
STYLE_LAYERS = ("stem", "block0", "block2", "block4", "block7")
CONTENT_LAYERS = ("block4", "block7")
LATENCY_SIZE = 512


# ---- style crops ----------------------------------------------------------------------------

def style_pictures(size: int, root=None, limit: int = 0) -> list[torch.Tensor]:
    """The paintings to train on, uint8 (3, H, W) with the longer side `size`: the six but
    HELD_OUT_PAINTINGS, and more-paintings (when the data has them)."""
    seen = [p for p in PAINTINGS if p not in HELD_OUT_PAINTINGS]
    pictures = [painting(p, size, root) for p in seen] + more_paintings(size, root)
    pictures = [(p[0] * 255).round().byte() for p in pictures]
    return pictures[:limit] if limit else pictures


def random_texture(size: int, g: torch.Generator) -> torch.Tensor:
    """Stained glass or brush strokes with a fresh layout: uint8 (3, size, size)."""
    seed = int(torch.randint(0, 2 ** 31 - 1, (), generator=g))
    picture = (stained_glass if seed % 2 else brush_strokes)(size=size, seed=seed)
    return torch.from_numpy(np.asarray(picture).copy()).permute(2, 0, 1)


def style_crop(picture: torch.Tensor, crop: int, g: torch.Generator) -> torch.Tensor:
    """A square from a quarter of the picture's shorter side to all of it, resized to crop,
    flipped half the time, and half the time its hue turned and saturation changed:
    float (3, crop, crop) in [0, 1]."""
    h, w = picture.shape[1:]
    side = int(min(h, w) * float(torch.empty(()).uniform_(0.25, 1.0, generator=g)))
    top = int(torch.randint(0, h - side + 1, (), generator=g))
    left = int(torch.randint(0, w - side + 1, (), generator=g))
    patch = picture[:, top:top + side, left:left + side].float().div(255).unsqueeze(0)
    patch = F.interpolate(patch, size=(crop, crop), mode="bilinear", antialias=True, align_corners=False)[0]
    if torch.rand((), generator=g) < 0.5:
        patch = patch.flip(2)
    if torch.rand((), generator=g) < 0.5:
        patch = TF.adjust_hue(patch, float(torch.empty(()).uniform_(-0.5, 0.5, generator=g)))
        patch = TF.adjust_saturation(patch, float(torch.empty(()).uniform_(0.5, 1.5, generator=g)))
    return patch.clamp(0, 1)


def style_batch(paintings: list, photos: torch.Tensor, n: int, crop: int, g: torch.Generator) -> torch.Tensor:
    """n style crops: 70% paintings, 15% drawn textures, 15% training photos."""
    out = []
    for _ in range(n):
        r = float(torch.rand((), generator=g))
        if r < 0.7 or not len(photos):
            source = paintings[int(torch.randint(0, len(paintings), (), generator=g))]
        elif r < 0.85:
            source = random_texture(2 * crop, g)
        else:
            source = photos[int(torch.randint(0, len(photos), (), generator=g))]
        out.append(style_crop(source, crop, g))
    return torch.stack(out)


# ---- losses and measuring ---------------------------------------------------------------------

def adain_losses(net: AdaINNet, photos: torch.Tensor, styles: torch.Tensor):
    """(content loss, style loss, output) of one batch, as Huang and Belongie's: the output's
    features against the AdaIN targets, and its channel means and spreads against the style's."""
    with torch.no_grad():
        style_feats = net.encoder(styles, STYLE_LAYERS)
        statistics = {k: mean_std(style_feats[k]) for k in ADAIN_LAYERS}
        targets = net.targets(photos, statistics)
    output = net.decode(targets)
    feats = net.encoder(output, STYLE_LAYERS)
    content = torch.stack([F.mse_loss(feats[k], targets[k]) for k in CONTENT_LAYERS]).sum()
    style = 0.0
    for k in STYLE_LAYERS:
        (m, s), (tm, ts) = mean_std(feats[k]), mean_std(style_feats[k])
        style = style + F.mse_loss(m, tm) + F.mse_loss(s, ts)
    return content, style, output


@torch.inference_mode()
def measure_pairs(net: AdaINNet, photos: dict, painting_names, judge, device, size: int = MEASURE_SIZE, root=None):
    """Mean Gram-matrix style loss and content loss (models.style_transfer.measure) of every
    photo with every painting, and the unstylised photos' style loss."""
    rows, unstylised = [], []
    for name in painting_names:
        style = painting(name, size, root).to(device)
        as_given = style if size == ADAIN_STYLE_SIZE else painting(name, ADAIN_STYLE_SIZE, root).to(device)
        statistics = net.style_statistics(as_given)
        for photo in photos.values():
            photo = photo.to(device)
            rows.append(measure(judge, net(photo, statistics).clamp(0, 1), photo, style))
            unstylised.append(measure(judge, photo, photo, style)["style_loss"])
    return {"style_loss": float(np.mean([r["style_loss"] for r in rows])),
            "content_loss": float(np.mean([r["content_loss"] for r in rows])),
            "photo_style_loss": float(np.mean(unstylised)), "pairs": len(rows)}


@torch.inference_mode()
def latency_ms(net: AdaINNet, runs: int = 5, size: int = LATENCY_SIZE, device="cpu") -> float:
    """Median milliseconds for one size x size photo with a painting at ADAIN_STYLE_SIZE (both
    encoded), channels-last as the tab runs it."""
    g = torch.Generator().manual_seed(0)
    photo = torch.rand(1, 3, size, size, generator=g).to(device, memory_format=torch.channels_last)
    style = torch.rand(1, 3, ADAIN_STYLE_SIZE, ADAIN_STYLE_SIZE * 3 // 4, generator=g).to(
        device, memory_format=torch.channels_last)
    net = net.to(memory_format=torch.channels_last)
    net(photo, style)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        net(photo, style)
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def evaluate(net: AdaINNet, args, device, split: str = "test") -> dict:
    """The seen and the held-out paintings on the test (or validation) photos."""
    judge = load_feature_network("imagenet_efficientnet", device)
    photos = validation_photos(MEASURE_SIZE) if split == "val" else test_photos(MEASURE_SIZE, args.data_dir)
    photos = dict(list(photos.items())[:args.eval_photos])
    seen = [p for p in PAINTINGS if p not in HELD_OUT_PAINTINGS]
    return {"eval_split": split, "measured_with": judge.name,
            "seen": measure_pairs(net, photos, seen, judge, device, root=args.data_dir),
            "held_out": measure_pairs(net, photos, HELD_OUT_PAINTINGS, judge, device, root=args.data_dir)}


# ---- training -------------------------------------------------------------------------------

def run(args) -> dict:
    device = pick_device(args.device)
    name = checkpoint_name(ARBITRARY)
    if args.eval:
        net = checkpoints.load(AdaINNet, name, "python -m train.style_transfer_arbitrary", device,
                               root=args.checkpoint_dir)
        return evaluate(net, args, device) | {"ms_per_512px_image": round(latency_ms(net, args.latency_runs,
                                                                                     device=device), 1)}
    seed_everything(args.seed)
    net = AdaINNet(args.width)
    imagenet = load_feature_network("imagenet_efficientnet")  # cached: the judge of evaluate() too
    net.encoder.body.load_state_dict(imagenet.body[:len(net.encoder.body)].state_dict())
    net.to(device)
    photos = training_photos(args.crop + args.crop // 8, args.lfw, args.data_dir, args.limit)
    paintings = style_pictures(args.style_size, args.data_dir)
    decoder = [p for n, p in net.named_parameters() if not n.startswith("encoder.")]
    opt = torch.optim.Adam(decoder, lr=args.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, args.epochs * args.steps))
    root = Path(args.checkpoint_dir or checkpoints.CHECKPOINTS)
    config = {k: getattr(args, k) for k in ("width", "epochs", "steps", "batch_size", "crop", "lr", "style_weight",
                                            "content_weight", "style_size", "lfw", "seed", "limit")}
    start_epoch, history = load_state(root / name / "resume", net, opt, scheduler, config) if args.resume else (0, [])
    elapsed_before = history[-1]["wall_time_s"] if history else 0.0

    start = time.perf_counter()
    for epoch in range(start_epoch + 1, args.epochs + 1):
        net.train()
        g = seed_epoch(args.seed, epoch)
        sums = {"content_loss": 0.0, "style_loss": 0.0}
        bar = tqdm(range(args.steps), desc=f"arbitrary epoch {epoch}/{args.epochs}", leave=False)
        for step in bar:
            x = random_crops(photos[torch.randint(0, len(photos), (args.batch_size,), generator=g)], args.crop, g)
            s = style_batch(paintings, photos, args.batch_size, args.crop, g)
            c, st, _ = adain_losses(net, x.to(device), s.to(device))
            loss = args.content_weight * c + args.style_weight * st
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            scheduler.step()
            sums["content_loss"] += c.item()
            sums["style_loss"] += st.item()
            bar.set_postfix(content=f"{sums['content_loss'] / (step + 1):.3f}",
                            style=f"{sums['style_loss'] / (step + 1):.3f}")
        net.eval()
        val = evaluate(net, args, device, split="val")
        history.append({"epoch": epoch, **{k: v / args.steps for k, v in sums.items()},
                        "val_seen": val["seen"], "val_held_out": val["held_out"],
                        "wall_time_s": round(elapsed_before + time.perf_counter() - start, 1)})
        tqdm.write(json.dumps(history[-1]))
        save_state(root / name / "resume", net, opt, scheduler, epoch, history, config)
    wall_time = elapsed_before + time.perf_counter() - start

    net.eval()
    metrics = {"held_out_paintings": list(HELD_OUT_PAINTINGS), "style_layers": list(STYLE_LAYERS),
               "content_layers": list(CONTENT_LAYERS), "adain_layers": list(ADAIN_LAYERS),
               "train_photos": len(photos), "style_pictures": len(paintings),
               "parameters": sum(p.numel() for p in decoder), "train_wall_time_s": round(wall_time, 1),
               "device": str(device), "seed": args.seed,
               "command": checkpoints.command_line("train.style_transfer_arbitrary"),
               "hyperparameters": {k: v for k, v in config.items() if k not in ("seed", "limit")}, "history": history,
               **evaluate(net, args, device),
               "ms_per_512px_image": round(latency_ms(net, args.latency_runs, device=device), 1)}
    checkpoints.save(net.cpu(), name, metrics, root=args.checkpoint_dir)
    return {k: v for k, v in metrics.items() if k not in ("history", "hyperparameters")}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=DEFAULTS["width"], help="the decoder's channels at 1/4 scale")
    parser.add_argument("--epochs", type=int, default=DEFAULTS["epochs"], help="epochs (a validation curve point each)")
    parser.add_argument("--steps", type=int, default=DEFAULTS["steps"], help="steps an epoch")
    parser.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"], help="photos (and style crops) a step")
    parser.add_argument("--crop", type=int, default=DEFAULTS["crop"], help="training crop size in pixels")
    parser.add_argument("--lr", type=float, default=DEFAULTS["lr"], help="Adam's peak learning rate (cosine decay)")
    parser.add_argument("--style-weight", type=float, default=DEFAULTS["style_weight"], help="weight of the style loss")
    parser.add_argument("--content-weight", type=float, default=DEFAULTS["content_weight"],
                        help="weight of the content loss")
    parser.add_argument("--style-size", type=int, default=DEFAULTS["style_size"],
                        help="the paintings' longer side before cropping")
    parser.add_argument("--lfw", type=int, default=DEFAULTS["lfw"], help="LFW faces among the training photos")
    parser.add_argument("--eval-photos", type=int, default=6, help="test (or validation) photos to measure on")
    parser.add_argument("--latency-runs", type=int, default=5, help="timed runs for ms per 512 px image")
    add_run_arguments(parser)
    args = parse_run_arguments(parser, argv)
    result = run(args)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
