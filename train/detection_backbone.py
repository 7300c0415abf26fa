"""Pre-train the face-mask detector's backbone on crops, since no ImageNet weights can be had here.

    python -m train.detection_backbone            # as committed (checkpoints/detection_backbone)
    python -m train.detection_backbone --eval     # crop accuracy on the validation photos' crops
    python -m train.detection --backbone mobilenet_v3   # then that detector starts from it

A MobileNetV3-Large (the detector's body) learns four classes of 64x64 crops: background,
with_mask, without_mask and mask_weared_incorrect. The faces come from the detector's
training split only, cut with as much context again as the face (so a face fills about half
the crop, near the 28 px a face has in the detector's input), and from LFW (13,233 faces,
all without masks); background crops are squares of the same sizes that overlap no face.
Validation crops come from the detector's validation split; the test split is never read.
"""
import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import box_iou
from tqdm import tqdm

from core import checkpoints, data
from core.training import add_run_arguments, parse_run_arguments, pick_device, seed_epoch, seed_everything
from models.detection import (CLASSES, CROPS_CHECKPOINT, CROPS_COMMAND, FaceCropClassifier, image_path, load_annotations,
                              load_image, split)

SIZE = 64
LABELS = ("background", *CLASSES)
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # the detector's own normalisation


def crop(image: torch.Tensor, box, size: int = SIZE) -> torch.Tensor:
    """A square around box (x0, y0, x1, y1) with the box's size again as context, uint8 (3, size, size);
    parts outside the photo are grey."""
    x0, y0, x1, y1 = box
    side = 2 * max(x1 - x0, y1 - y0, 4)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left, top = round(cx - side / 2), round(cy - side / 2)
    side = round(side)
    canvas = torch.full((3, side, side), 124, dtype=torch.uint8)
    h, w = image.shape[-2:]
    sx0, sy0, sx1, sy1 = max(left, 0), max(top, 0), min(left + side, w), min(top + side, h)
    if sx1 > sx0 and sy1 > sy0:
        canvas[:, sy0 - top:sy1 - top, sx0 - left:sx1 - left] = image[:, sy0:sy1, sx0:sx1]
    return F.interpolate(canvas[None].float(), size=(size, size), mode="bilinear", antialias=True)[0].round().byte()


def crops_of(records, root, rng: np.random.Generator, background_per_face: float = 1.0):
    """(N, 3, SIZE, SIZE) uint8 crops and (N,) labels: every face, and background squares."""
    images, labels = [], []
    for r in tqdm(records, desc="cutting crops", leave=False):
        photo = load_image(image_path(root, r["stem"]))
        h, w = photo.shape[-2:]
        for box, label in zip(r["boxes"].tolist(), r["labels"].tolist()):
            images.append(crop(photo, box))
            labels.append(label)
        sides = (r["boxes"][:, 2:] - r["boxes"][:, :2]).max(1).values.tolist() or [32.0]
        wanted, tries = round(background_per_face * max(len(sides), 1)), 0
        while wanted and tries < 50:
            tries += 1
            s = float(rng.choice(sides)) * rng.uniform(0.7, 1.5)
            x, y = rng.uniform(0, max(w - s, 1)), rng.uniform(0, max(h - s, 1))
            box = torch.tensor([[x, y, x + s, y + s]])
            if len(r["boxes"]) and box_iou(box, r["boxes"]).max() > 0.1:
                continue
            images.append(crop(photo, box[0].tolist()))
            labels.append(0)
            wanted -= 1
    return torch.stack(images), torch.tensor(labels)


def lfw_crops() -> tuple[torch.Tensor, torch.Tensor]:
    """LFW's faces (the centre of each deep-funneled photo is the face), as without_mask."""
    faces = data.lfw_faces(SIZE)
    return faces, torch.full((len(faces),), CLASSES.index("without_mask") + 1)


def normalize(x: torch.Tensor) -> torch.Tensor:
    return (x.float() / 255 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Flips, a random shift of up to 6 px (padding with edge pixels) and brightness/contrast."""
    n = len(x)
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip.view(n, 1, 1, 1), x.flip(3), x)
    dx, dy = (torch.randint(-6, 7, (2,), generator=gen)).tolist()
    x = F.pad(x, (6, 6, 6, 6), mode="replicate")[:, :, 6 + dy:6 + dy + SIZE, 6 + dx:6 + dx + SIZE]
    b = 1 + 0.3 * (2 * torch.rand(n, 1, 1, 1, generator=gen) - 1)
    c = 1 + 0.3 * (2 * torch.rand(n, 1, 1, 1, generator=gen) - 1)
    mean = x.mean((1, 2, 3), keepdim=True)
    return ((x - mean) * c + mean) * b


@torch.no_grad()
def accuracy(model, images, labels, device) -> dict:
    model.eval()
    predicted = torch.cat([model(normalize(images[i:i + 512]).to(device)).argmax(1).cpu()
                           for i in range(0, len(images), 512)])
    per_class = {name: (predicted[labels == k] == k).float().mean().item() for k, name in enumerate(LABELS)
                 if (labels == k).any()}
    return {"accuracy": (predicted == labels).float().mean().item(), "per_class_accuracy": per_class}


def run(args) -> dict:
    device = pick_device(args.device)
    root = data.face_mask_dir(args.data_dir)
    parts = split(load_annotations(root))
    if args.limit:
        parts = {k: v[:args.limit] for k, v in parts.items()}
    rng = np.random.default_rng(args.seed)
    val_x, val_y = crops_of(parts["val"], root, rng)
    if args.eval:
        model = checkpoints.load(FaceCropClassifier, CROPS_CHECKPOINT, CROPS_COMMAND,
                                 device, root=args.checkpoint_dir)
        return {"val_" + k: v for k, v in accuracy(model, val_x, val_y, device).items()}

    seed_everything(args.seed)
    train_x, train_y = crops_of(parts["train"], root, rng)
    if args.lfw:
        faces, labels = lfw_crops()
        keep = torch.randperm(len(faces))[:args.limit * 20 if args.limit else None]
        train_x, train_y = torch.cat([train_x, faces[keep]]), torch.cat([train_y, labels[keep]])
    # Each class is drawn equally often, but the rare one (90 faces) half as often: more would only repeat it.
    counts = torch.bincount(train_y, minlength=len(LABELS)).float()
    weights = (1 / counts.clamp_min(1))[train_y] * torch.tensor([1.0, 1.0, 1.0, 0.5])[train_y]
    model = FaceCropClassifier().to(device)
    steps = args.epochs * ((args.crops_per_epoch or len(train_x)) // args.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, args.lr, total_steps=max(steps, 1), pct_start=0.2)
    history, start = [], time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        model.train()
        gen = seed_epoch(args.seed, epoch)
        order = torch.multinomial(weights, args.crops_per_epoch or len(train_x), replacement=True, generator=gen)
        total, seen = 0.0, 0
        bar = tqdm(range(0, len(order) - args.batch_size + 1, args.batch_size), desc=f"backbone epoch {epoch}",
                   leave=False)
        for i in bar:
            idx = order[i:i + args.batch_size]
            x = normalize(augment(train_x[idx].float(), gen)).to(device)
            loss = F.cross_entropy(model(x), train_y[idx].to(device), label_smoothing=0.1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total, seen = total + loss.item() * len(idx), seen + len(idx)
            bar.set_postfix(loss=f"{total / seen:.3f}")
        val = accuracy(model, val_x, val_y, device)
        history.append({"epoch": epoch, "train_loss": round(total / max(seen, 1), 4),
                        "val_accuracy": round(val["accuracy"], 4), "wall_time_s": round(time.perf_counter() - start, 1)})
        tqdm.write(json.dumps(history[-1]))
    metrics = {"val_accuracy": val["accuracy"], "val_per_class_accuracy": val["per_class_accuracy"],
               "train_crops": {name: int((train_y == k).sum()) for k, name in enumerate(LABELS)},
               "val_crops": {name: int((val_y == k).sum()) for k, name in enumerate(LABELS)},
               "train_wall_time_s": round(time.perf_counter() - start, 1), "seed": args.seed,
               "command": checkpoints.command_line("train.detection_backbone"), "device": str(device),
               "hyperparameters": {"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
                                   "crops_per_epoch": args.crops_per_epoch, "lfw": args.lfw, "size": SIZE},
               "history": history}
    checkpoints.save(model.cpu(), CROPS_CHECKPOINT, metrics, root=args.checkpoint_dir)
    return {k: metrics[k] for k in ("val_accuracy", "val_per_class_accuracy", "train_wall_time_s")}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=12, help="epochs over the crops")
    parser.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate (one-cycle)")
    parser.add_argument("--batch-size", type=int, default=128, help="crops per step")
    parser.add_argument("--crops-per-epoch", type=int, default=8192,
                        help="crops drawn (class-balanced, with replacement) per epoch; 0: as many as there are")
    parser.add_argument("--lfw", action=argparse.BooleanOptionalAction, default=True,
                        help="add LFW's faces as without_mask crops (default: yes)")
    add_run_arguments(parser)
    args = parse_run_arguments(parser, argv)
    result = run(args)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
