"""Train the face-verification ConvNeXt (models/faces.py) on LFW, with and without center loss.

    python -m train.faces --center-loss 0.01   # checkpoints/faces/center, as committed
    python -m train.faces --center-loss 0      # checkpoints/faces/plain: the comparison
    python -m train.faces --center-loss 0.01 --eval   # re-evaluate the committed checkpoint
    python -m train.faces --epochs 1 --limit 400 --checkpoint-dir /tmp/ck   # a smoke run
    python -m train.faces --center-loss 0.01 --gallery   # rebuild the tab's who-is-this gallery
    python -m train.faces --center-loss 0.01 --band      # re-choose the committed checkpoint's uncertain band

No person is both trained on and evaluated. The test pairs are LFW's pairsDevTest.txt
(500 same, 500 different). Training uses everyone else with at least --min-images
photos (453 people, 5,135 photos at 4). The similarity threshold is chosen on the pairs
of pairsDevTrain.txt in which neither person is a training identity (517 same, 883
different), so it, too, is set on people the model has never seen. So is the "uncertain"
band round it (band.json, --band): where those validation answers were wrong at least
once in three times, the tab gives no verdict.

Recipe: identity classification with cross-entropy (label smoothing 0.2) plus
--center-loss x center loss on the embedding (the centres have their own SGD, lr 0.5, as in
Wen et al.); flips, small scale/shift/rotation jitter, colour jitter and some grey; AdamW
with a one-cycle schedule. A pair's score is the cosine similarity of the embeddings (each
the sum of a face's and its mirror image's).
"""
import argparse
import json
import math
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from core import checkpoints, data
from core.training import (add_run_arguments, load_state, parse_run_arguments, pick_device, save_state, seed_epoch,
                           seed_everything)
from models.faces import (CenterLoss, FaceNet, build_gallery, center_optimizer, checkpoint_name, cosine_similarity,
                          embed, load_facenet, normalize, save_gallery)

DEFAULTS = dict(epochs=30, lr=2e-3, batch_size=128, weight_decay=0.05, label_smoothing=0.2, center_lr=0.5,
                min_images=4, image_size=64, dims=(32, 64, 128, 256), depths=(1, 1, 3, 1), embedding_dim=128,
                drop_path=0.1)
# The uncertain band holds the validation pairs near the threshold that were decided wrong
# more often than this (at least one answer in three wrong: a verdict there is close to a guess).
MAX_UNCERTAIN_ERROR = 1 / 3
PROJECTION_PEOPLE, PROJECTION_PHOTOS = 12, 25  # the test people with the most photos, at most 25 photos each


# ---- LFW: photos, pairs, the identity-disjoint split --------------------------------------

class Pair(NamedTuple):
    """One line of an LFW pair list: photo number `photo_a` of `person_a` against `photo_b` of `person_b`."""
    person_a: str
    photo_a: int
    person_b: str
    photo_b: int
    same: bool


class Projection(NamedTuple):
    """The photos the t-SNE map shows: the people, and each photo's row and person (index into people)."""
    people: list[str]
    rows: list[int]
    labels: list[int]


def photo_index(base: Path) -> dict[tuple[str, int], int]:
    """(person, photo number) -> row in data.lfw_faces (which is in sorted path order)."""
    paths = sorted((base / "images").glob("*/*.jpg"))
    return {(p.parent.name, int(p.stem.rsplit("_", 1)[1])): i for i, p in enumerate(paths)}


def read_pairs(path: Path) -> list[Pair]:
    """LFW pair lists (pairs.txt, pairsDev*.txt). A line of three fields is a same pair, of
    four a different pair; header lines are skipped."""
    pairs = []
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if len(parts) == 3:
            pairs.append(Pair(parts[0], int(parts[1]), parts[0], int(parts[2]), True))
        elif len(parts) == 4:
            pairs.append(Pair(parts[0], int(parts[1]), parts[2], int(parts[3]), False))
    return pairs


def people_in(pairs: list[Pair]) -> set[str]:
    return {p.person_a for p in pairs} | {p.person_b for p in pairs}


def training_people(photo_counts: dict[str, int], test_pairs, min_images: int) -> list[str]:
    """Everyone with at least min_images photos who is in no test pair, sorted."""
    excluded = people_in(test_pairs)
    return sorted(p for p, n in photo_counts.items() if n >= min_images and p not in excluded)


def unseen_pairs(pairs: list[Pair], train_people) -> list[Pair]:
    """The pairs in which neither person is a training identity."""
    train_people = set(train_people)
    return [p for p in pairs if p.person_a not in train_people and p.person_b not in train_people]


def load_split(args):
    """Training photos' rows and labels, the threshold pairs, the test pairs, and the
    faces (N, 3, S, S) uint8 they index (with --limit, only the photos used are decoded)."""
    base = data.lfw_dir(args.data_dir)
    index = photo_index(base)
    counts = {}
    for person, _ in index:
        counts[person] = counts.get(person, 0) + 1
    test_pairs = read_pairs(base / "pairsDevTest.txt")
    people = training_people(counts, test_pairs, args.min_images)
    threshold_pairs = unseen_pairs(read_pairs(base / "pairsDevTrain.txt"), people)
    label_of = {person: k for k, person in enumerate(people)}
    rows = [(row, label_of[person]) for (person, _), row in index.items() if person in label_of]
    if args.limit:  # the first people's photos, and a fixed random sample of each pair list
        rows = rows[:args.limit]
        rng = np.random.default_rng(0)
        test_pairs = [test_pairs[i] for i in sorted(rng.permutation(len(test_pairs))[:args.limit // 4])]
        threshold_pairs = [threshold_pairs[i] for i in sorted(rng.permutation(len(threshold_pairs))[:args.limit // 4])]
    train_rows = torch.tensor([r for r, _ in rows])
    labels = torch.tensor([y for _, y in rows])
    shown = projection_photos(counts, index, test_pairs, 2 if args.limit else PROJECTION_PHOTOS)
    needed = set(train_rows.tolist()) | set(shown.rows) \
        | {index[(p.person_a, p.photo_a)] for p in test_pairs + threshold_pairs} \
        | {index[(p.person_b, p.photo_b)] for p in test_pairs + threshold_pairs}
    faces = load_faces(base, args.image_size, sorted(needed) if args.limit else None)
    return dict(faces=faces, index=index, train_rows=train_rows, labels=labels, people=people, projection=shown,
                num_classes=int(labels.max()) + 1, threshold_pairs=threshold_pairs, test_pairs=test_pairs)


def load_faces(base: Path, size: int, rows=None) -> torch.Tensor:
    """All faces (cached by data.lfw_faces), or, given rows, only those decoded (the rest zero)."""
    if rows is None:
        return data.lfw_faces(size, root=base.parent)
    from PIL import Image

    paths = sorted((base / "images").glob("*/*.jpg"))
    faces = torch.zeros(len(paths), 3, size, size, dtype=torch.uint8)
    for r in rows:
        image = Image.open(paths[r]).convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
        faces[r] = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)
    return faces


# ---- augmentation and embeddings ------------------------------------------------------------

def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Normalised faces (N, 3, S, S) -> the same, mirrored half the time, scaled by 0.9-1.1,
    shifted by up to 6%, turned by up to 8 degrees; brightness, contrast and saturation
    jittered by up to 20-30%, and one in ten made grey (uploads are sometimes grey)."""
    n = len(x)
    u = torch.rand(n, 8, generator=gen)
    scale = 0.9 + 0.2 * u[:, 0]
    angle = math.radians(8) * (2 * u[:, 1] - 1)
    flip = torch.where(u[:, 2] < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, 0.12 * u[:, 3] - 0.06], 1),
                         torch.stack([sin * flip, cos, 0.12 * u[:, 4] - 0.06], 1)], 1)  # (N, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    grey = x.mean(1, keepdim=True)
    saturation = torch.where(u[:, 5] < 0.1, 0.0, 0.7 + 0.6 * u[:, 5])[:, None, None, None]
    x = grey + saturation * (x - grey)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    contrast, brightness = (0.8 + 0.4 * u[:, 6])[:, None, None, None], (0.8 * u[:, 7] - 0.4)[:, None, None, None]
    return mean + contrast * (x - mean) + brightness


def pair_scores(model, faces, index, pairs, device, flip: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarities and same/different labels of the pairs."""
    a = [index[(p.person_a, p.photo_a)] for p in pairs]
    b = [index[(p.person_b, p.photo_b)] for p in pairs]
    rows = sorted(set(a) | set(b))
    where = {r: k for k, r in enumerate(rows)}
    e = embed(model, faces[rows], device, flip=flip)
    scores = cosine_similarity(e[[where[r] for r in a]], e[[where[r] for r in b]]).numpy()
    return scores, np.array([p.same for p in pairs], dtype=bool)


# ---- pair evaluation ------------------------------------------------------------------------

def choose_threshold(scores, same) -> float:
    """The similarity threshold (say "same" at or above it) with the best accuracy on these
    pairs: the midpoint between two neighbouring scores that gets most pairs right."""
    scores, same = np.asarray(scores, dtype=np.float64), np.asarray(same, dtype=bool)
    order = np.argsort(scores)
    s, y = scores[order], same[order]
    # Threshold just above s[k] for k = -1..n-1: the k+1 lowest say "different".
    right = np.concatenate([[0], np.cumsum(~y)]) + np.concatenate([np.cumsum(y[::-1])[::-1], [0]])
    k = int(np.argmax(right)) - 1
    if k < 0:
        return float(s[0] - 1e-6)
    if k == len(s) - 1:
        return float(s[-1] + 1e-6)
    return float((s[k] + s[k + 1]) / 2)


def choose_uncertain_band(scores, same, threshold: float, max_error: float = MAX_UNCERTAIN_ERROR) -> tuple[float, float]:
    """The band [low, high) round the threshold in which the answer is "uncertain", chosen on
    these pairs. Each edge moves out from the threshold as far as maximises the number of
    wrong answers in the band minus max_error per pair in it: so the pairs inside were
    decided wrong more often than max_error, and those just outside it less often."""
    scores, same = np.asarray(scores, dtype=np.float64), np.asarray(same, dtype=bool)
    edges = []
    for side in (-1, 1):  # below the threshold ("different"), then at or above it ("same")
        mine = scores < threshold if side < 0 else scores >= threshold
        s, wrong = scores[mine], (same[mine] if side < 0 else ~same[mine])
        order = np.argsort(side * s)  # nearest the threshold first
        s, wrong = s[order], wrong[order]
        gain = np.concatenate([[0.0], np.cumsum(wrong - max_error)])
        k = int(np.argmax(gain))  # how many of the nearest pairs the band takes in (the fewest on a tie)
        if k == 0:
            edges.append(float(threshold))
        elif k == len(s):
            edges.append(float(s[-1] + side * 1e-6))
        else:
            edges.append(float((s[k - 1] + s[k]) / 2))
    return edges[0], edges[1]


def band_metrics(scores, same, threshold: float, band: tuple[float, float]) -> dict:
    """How many pairs get a verdict outside the band (coverage), and how many of those are right."""
    scores, same = np.asarray(scores, dtype=np.float64), np.asarray(same, dtype=bool)
    sure = (scores < band[0]) | (scores >= band[1])
    right = (scores >= threshold) == same
    return {"coverage": float(sure.mean()), "accuracy_outside_band": float(right[sure].mean()) if sure.any() else 0.0,
            "accuracy_inside_band": float(right[~sure].mean()) if (~sure).any() else None}


def uncertain_band(model, split, device) -> dict:
    """The threshold and the uncertain band, both chosen on the validation (threshold) pairs;
    what they give there, and once on the test pairs. Written to band.json."""
    scores, same = pair_scores(model, split["faces"], split["index"], split["threshold_pairs"], device)
    threshold = choose_threshold(scores, same)
    low, high = choose_uncertain_band(scores, same, threshold)
    test = band_metrics(*pair_scores(model, split["faces"], split["index"], split["test_pairs"], device), threshold,
                        (low, high))
    return {"threshold": threshold, "low": low, "high": high, "max_error": MAX_UNCERTAIN_ERROR,
            "chosen_on": f"{len(same)} pairsDevTrain pairs of people not trained on (validation); not the test pairs",
            "rule": "each edge moves out from the threshold as far as maximises (wrong answers - max_error x pairs) "
                    "inside the band",
            **{f"validation_{k}": v for k, v in band_metrics(scores, same, threshold, (low, high)).items()},
            **{f"test_{k}": v for k, v in test.items()},
            "command": checkpoints.command_line("train.faces")}


def tar_at_far(fpr, tpr, far: float) -> float:
    """The share of same pairs accepted when at most `far` of different pairs are."""
    ok = np.asarray(fpr) <= far + 1e-12
    return float(np.max(np.asarray(tpr)[ok])) if ok.any() else 0.0


def pair_metrics(scores, same, threshold: float) -> dict:
    """Accuracy at a given threshold, ROC AUC, TAR at FAR 1e-2 and 1e-3, and the ROC curve."""
    from sklearn.metrics import roc_auc_score, roc_curve

    scores, same = np.asarray(scores, dtype=np.float64), np.asarray(same, dtype=bool)
    fpr, tpr, _ = roc_curve(same, scores)
    return {"accuracy": float(((scores >= threshold) == same).mean()), "threshold": float(threshold),
            "auc": float(roc_auc_score(same, scores)), "tar_at_far_1e-2": tar_at_far(fpr, tpr, 1e-2),
            "tar_at_far_1e-3": tar_at_far(fpr, tpr, 1e-3), "pairs": int(len(same)), "same_pairs": int(same.sum()),
            "mean_same": float(scores[same].mean()), "mean_different": float(scores[~same].mean()),
            "roc": {"fpr": [round(v, 4) for v in fpr.tolist()], "tpr": [round(v, 4) for v in tpr.tolist()]}}


def evaluate(model, split, device) -> dict:
    """Threshold (and the uncertain band) from the unseen DevTrain pairs, metrics on the DevTest pairs."""
    scores, same = pair_scores(model, split["faces"], split["index"], split["threshold_pairs"], device)
    threshold = choose_threshold(scores, same)
    low, high = choose_uncertain_band(scores, same, threshold)  # band.json's, recomputed from the same scores
    band = band_metrics(scores, same, threshold, (low, high))
    test = pair_metrics(*pair_scores(model, split["faces"], split["index"], split["test_pairs"], device), threshold)
    return {"test_accuracy": test["accuracy"], "threshold": threshold, "test_auc": test["auc"],
            "band_low": low, "band_high": high, "validation_band_coverage": band["coverage"],
            "validation_accuracy_inside_band": band["accuracy_inside_band"],
            "test_tar_at_far_1e-2": test["tar_at_far_1e-2"], "test_tar_at_far_1e-3": test["tar_at_far_1e-3"],
            "test_pairs": test["pairs"], "threshold_pairs": len(same),
            "test_mean_similarity_same": test["mean_same"], "test_mean_similarity_different": test["mean_different"],
            "threshold_pairs_accuracy": float(((scores >= threshold) == same).mean()), "roc": test["roc"]}


def projection_photos(counts, index, test_pairs, photos: int = PROJECTION_PHOTOS) -> Projection:
    """The photos (at most `photos` each) of the PROJECTION_PEOPLE test people with the most."""
    people = sorted(people_in(test_pairs), key=lambda p: (-counts[p], p))[:PROJECTION_PEOPLE]
    rows, labels = [], []
    for k, person in enumerate(people):
        mine = sorted(r for (q, _), r in index.items() if q == person)[:photos]
        rows += mine
        labels += [k] * len(mine)
    return Projection(people, rows, labels)


def projection(model, split, device) -> dict:
    """A 2-D t-SNE map of the embeddings of the test people with the most photos."""
    from sklearn.manifold import TSNE

    people, rows, labels = split["projection"]
    e = F.normalize(embed(model, split["faces"][rows], device), dim=1).numpy()
    if len(e) < 5:
        return {"people": people, "x": [], "y": [], "label": []}
    xy = TSNE(2, perplexity=min(30, len(e) - 1), init="pca", random_state=0, metric="cosine").fit_transform(e)
    return {"people": people, "x": np.round(xy[:, 0], 3).tolist(), "y": np.round(xy[:, 1], 3).tolist(), "label": labels}


# ---- training -------------------------------------------------------------------------------

def one_cycle(total_steps: int, warmup: float = 0.15):
    """Learning-rate factor per step: a linear rise, then a cosine fall to zero."""
    rise = max(1, round(warmup * total_steps))
    return lambda step: (step + 1) / rise if step < rise else \
        0.5 * (1 + math.cos(math.pi * min(1.0, (step - rise) / max(1, total_steps - rise))))


def train_epoch(net, center, optimizer, center_opt, scheduler, split, args, epoch, device) -> dict:
    net.train()
    gen = seed_epoch(args.seed, epoch)
    rows, labels = split["train_rows"], split["labels"]
    order = torch.randperm(len(rows), generator=gen)
    sums = {"loss": 0.0, "cross_entropy": 0.0, "center_loss": 0.0, "correct": 0}
    seen = 0
    bar = tqdm(range(0, len(rows), args.batch_size), desc=f"faces epoch {epoch}/{args.epochs}", leave=False)
    for i in bar:
        idx = order[i:i + args.batch_size]
        if len(idx) < 2:  # batch norm needs two faces
            continue
        x = augment(normalize(split["faces"][rows[idx]]), gen).to(device)
        y = labels[idx].to(device)
        features, logits = net(x)
        ce = F.cross_entropy(logits, y, label_smoothing=args.label_smoothing)
        cl = center(features, y) if args.center_loss > 0 else torch.zeros((), device=device)
        loss = ce + args.center_loss * cl
        optimizer.zero_grad(set_to_none=True)
        center_opt.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if args.center_loss > 0:
            for p in center.parameters():  # undo the loss weight: centres move at center_lr
                p.grad /= args.center_loss
            center_opt.step()
        n = len(idx)
        sums["loss"] += loss.item() * n
        sums["cross_entropy"] += ce.item() * n
        sums["center_loss"] += cl.item() * n
        sums["correct"] += (logits.argmax(1) == y).sum().item()
        seen += n
        bar.set_postfix(loss=f"{sums['loss'] / seen:.3f}", acc=f"{sums['correct'] / seen:.3f}")
    seen = max(seen, 1)
    return {"train_loss": sums["loss"] / seen, "train_cross_entropy": sums["cross_entropy"] / seen,
            "train_center_loss": sums["center_loss"] / seen, "train_accuracy": sums["correct"] / seen}


def build_model(args, num_classes: int) -> FaceNet:
    return FaceNet(num_classes, tuple(args.dims), tuple(args.depths), args.embedding_dim, args.drop_path,
                   args.image_size)


def run(args) -> dict:
    device = pick_device(args.device)
    name = checkpoint_name(args.center_loss)
    if args.gallery:
        model = load_facenet(args.center_loss, device, root=args.checkpoint_dir)
        gallery = build_gallery(model, data.lfw_dir(args.data_dir) / "images", device)
        save_gallery(checkpoints.find(name, root=args.checkpoint_dir), gallery)
        return {"gallery_people": len(gallery["names"])}
    if args.band:
        model = load_facenet(args.center_loss, device, root=args.checkpoint_dir)
        args.image_size = model.image_size
        band = uncertain_band(model, load_split(args), device)
        (checkpoints.find(name, root=args.checkpoint_dir) / "band.json").write_text(json.dumps(band, indent=1) + "\n")
        return band
    if args.eval:
        model = load_facenet(args.center_loss, device, root=args.checkpoint_dir)
        args.image_size = model.image_size
        return {k: v for k, v in evaluate(model, load_split(args), device).items() if k != "roc"}
    split = load_split(args)

    seed_everything(args.seed)
    net = build_model(args, split["num_classes"]).to(device)
    center = CenterLoss(split["num_classes"], args.embedding_dim).to(device)
    both = torch.nn.ModuleDict({"net": net, "center": center})  # what --resume saves; the centres' SGD keeps no state
    decay = [p for p in net.parameters() if p.dim() > 1]
    no_decay = [p for p in net.parameters() if p.dim() <= 1]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=args.lr)
    steps_per_epoch = math.ceil(len(split["train_rows"]) / args.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, one_cycle(args.epochs * steps_per_epoch))
    center_opt = center_optimizer(center, args.center_lr)
    resume_dir = Path(args.checkpoint_dir or checkpoints.CHECKPOINTS) / name / "resume"
    config = {k: getattr(args, k) for k in ("epochs", "lr", "batch_size", "weight_decay", "label_smoothing",
                                            "center_loss", "center_lr", "min_images", "image_size", "embedding_dim",
                                            "drop_path", "seed", "limit")}
    config.update(dims=list(args.dims), depths=list(args.depths))
    start_epoch, history = load_state(resume_dir, both, optimizer, scheduler, config) if args.resume else (0, [])
    elapsed_before = history[-1]["wall_time_s"] if history else 0.0

    start = time.perf_counter()
    for epoch in range(start_epoch + 1, args.epochs + 1):
        stats = train_epoch(net, center, optimizer, center_opt, scheduler, split, args, epoch, device)
        # A cheap curve (no mirror images, no threshold): AUC on the test pairs; nothing is chosen by it.
        scores, same = pair_scores(net, split["faces"], split["index"], split["test_pairs"], device, flip=False)
        from sklearn.metrics import roc_auc_score
        history.append({"epoch": epoch, **{k: round(v, 5) for k, v in stats.items()},
                        "test_auc": round(float(roc_auc_score(same, scores)), 5) if len(set(same)) == 2 else None,
                        "lr": optimizer.param_groups[0]["lr"],
                        "wall_time_s": round(elapsed_before + time.perf_counter() - start, 1)})
        tqdm.write(json.dumps(history[-1]))
        save_state(resume_dir, both, optimizer, scheduler, epoch, history, config)
        if args.stop_after and epoch >= args.stop_after:
            return {"stopped_after_epoch": epoch}
    wall_time = elapsed_before + time.perf_counter() - start

    result = evaluate(net, split, device)
    metrics = {
        **{k: v for k, v in result.items() if k != "roc"},
        "train_people": len(split["people"]), "train_images": len(split["train_rows"]),
        "parameters": sum(p.numel() for p in net.parameters()),
        "protocol": "train on LFW people with >= min_images photos outside pairsDevTest; threshold on the "
                    "pairsDevTrain pairs of people not trained on; test on pairsDevTest",
        "seed_accuracy": 0.715, "data": "LFW deep-funneled, centre 150 px at 112 px, shrunk to image_size",
        "train_wall_time_s": round(wall_time, 1), "device": str(device), "seed": args.seed,
        "command": checkpoints.command_line("train.faces"), "hyperparameters": config, "history": history,
    }
    path = checkpoints.save(net.cpu(), name, metrics, root=args.checkpoint_dir)
    analysis = {"roc": result["roc"], "threshold": result["threshold"], "projection": projection(net, split, "cpu")}
    (path / "analysis.json").write_text(json.dumps(analysis) + "\n")
    (path / "band.json").write_text(json.dumps(uncertain_band(net, split, "cpu"), indent=1) + "\n")
    if not args.limit:  # a smoke run's few people make no gallery
        save_gallery(path, build_gallery(net, data.lfw_dir(args.data_dir) / "images", "cpu"))
    return {k: metrics[k] for k in ("test_accuracy", "test_auc", "test_tar_at_far_1e-2", "threshold",
                                    "train_wall_time_s")}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--center-loss", type=float, default=0.01,
                        help="weight of center loss beside cross-entropy (0: cross-entropy only, faces/plain)")
    parser.add_argument("--center-lr", type=float, default=DEFAULTS["center_lr"], help="the centres' SGD learning rate")
    parser.add_argument("--epochs", type=int, default=DEFAULTS["epochs"], help="epochs")
    parser.add_argument("--lr", type=float, default=DEFAULTS["lr"], help="peak AdamW learning rate")
    parser.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"], help="batch size")
    parser.add_argument("--weight-decay", type=float, default=DEFAULTS["weight_decay"], help="AdamW weight decay")
    parser.add_argument("--label-smoothing", type=float, default=DEFAULTS["label_smoothing"], help="label smoothing")
    parser.add_argument("--min-images", type=int, default=DEFAULTS["min_images"],
                        help="train on people with at least this many photos")
    parser.add_argument("--image-size", type=int, default=DEFAULTS["image_size"], help="faces are shrunk to this size")
    parser.add_argument("--dims", type=int, nargs=4, default=DEFAULTS["dims"], help="the four stages' widths")
    parser.add_argument("--depths", type=int, nargs=4, default=DEFAULTS["depths"], help="blocks per stage")
    parser.add_argument("--embedding-dim", type=int, default=DEFAULTS["embedding_dim"], help="embedding size")
    parser.add_argument("--drop-path", type=float, default=DEFAULTS["drop_path"], help="stochastic depth of the last block")
    parser.add_argument("--gallery", action="store_true",
                        help="only rebuild the committed checkpoint's who-is-this gallery (gallery.safetensors)")
    parser.add_argument("--band", action="store_true",
                        help="only re-choose the committed checkpoint's uncertain band on the validation pairs (band.json)")
    add_run_arguments(parser)
    args = parse_run_arguments(parser, argv)
    result = run(args)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
