"""Train pix2pix (models/image_to_image.py) on 64x64 LFW faces: sketch -> face, grey -> colour.

    python -m train.image_to_image --task sketch_to_face      # as committed
    python -m train.image_to_image --task grey_to_colour
    python -m train.image_to_image --task sketch_to_face --eval   # re-measure on the test people
    python -m train.image_to_image --task grey_to_colour --epochs 1 --limit 256 --checkpoint-dir /tmp/ck   # a smoke run

People, not photos, are held out: the test people are those of LFW's pairsDevTest.txt, whom the
face-verification network never trained on either (train/faces.py), so it can judge identity
on them fairly; the validation people are a fixed sample of the others with few photos (about
1,000 photos). Everyone else's photos train. The epoch kept is the one whose outputs for the validation photos have
the smallest Frechet distance to the real ones; the test people are read once, at the end.

Measured on the test people's photos: L1 and PSNR against the real photo (pixels in [0, 1]);
a Frechet distance between the outputs' and the real photos' embeddings in the face
verification network (checkpoints/faces/center; not Inception FID), beside the same distance
between two halves of the real photos; and for sketch -> face, how often that network says
the face drawn from a photo's sketch is the photo's person (its own threshold).
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

from core import checkpoints, data
from core.training import (add_run_arguments, load_state, parse_run_arguments, pick_device, save_state, seed_epoch,
                           seed_everything)
from models import faces as face_models
from models.image_to_image import (SIZE, TASKS, PatchDiscriminator, UNet, checkpoint_name, edges, grey, init_weights,
                                   like_a_drawing, shrink, to_model, to_uint8, translate)
from train.faces import people_in, photo_index, read_pairs
from train.gan import frechet_distance

DEFAULTS = dict(epochs=12, batch_size=32, lr=2e-4, l1_weight=100.0, width=32)
VAL_PHOTOS = 1000  # photos of the validation people, measured after every epoch
TIMELAPSE_PHOTOS = 8  # validation photos translated after every epoch, for the time-lapse sheet


def split(args) -> dict:
    """Rows of data.lfw_faces for train / val / test people (see the module docstring)."""
    base = data.lfw_dir(args.data_dir)
    index = photo_index(base)
    test_people = people_in(read_pairs(base / "pairsDevTest.txt"))
    photos = {}
    for (person, _), row in sorted(index.items(), key=lambda kv: kv[1]):
        photos.setdefault(person, []).append(row)
    # validation: every third other person with at most 10 photos, until VAL_PHOTOS photos
    val_people, count = set(), 0
    for k, person in enumerate(sorted(p for p in photos if p not in test_people and len(photos[p]) <= 10)):
        if k % 3 == 0 and count < VAL_PHOTOS:
            val_people.add(person)
            count += len(photos[person])
    rows = {"train": [], "val": [], "test": []}
    for person, person_rows in photos.items():
        part = "test" if person in test_people else "val" if person in val_people else "train"
        rows[part] += person_rows
    rows = {k: torch.tensor(sorted(v)) for k, v in rows.items()}
    if args.limit:
        rows = {k: v[:args.limit] for k, v in rows.items()}
    return {"rows": rows, "people": {"val": len(val_people), "test": len(test_people)}}


def sketch_edges(faces112: torch.Tensor, args, rows: torch.Tensor | None = None) -> torch.Tensor:
    """Canny edges of the faces at 112 px (sigma 2 and 3: dense and sparse drawings),
    (N, 2, 112, 112) bool; all of them cached in the data directory, or (given rows, for
    smoke runs) only those rows computed and the rest left empty."""
    def compute(faces):
        return torch.cat([edges(faces, sigma=2.0), edges(faces, sigma=3.0)], 1).bool()

    if rows is not None:
        ink = torch.zeros(len(faces112), 2, *faces112.shape[2:], dtype=torch.bool)
        ink[rows] = compute(faces112[rows])
        return ink
    cache = data.data_dir(args.data_dir) / "lfw" / f"edges_112_{len(faces112)}.npy"
    if cache.exists():
        return torch.from_numpy(np.unpackbits(np.load(cache), axis=-1).astype(bool))
    ink = compute(faces112)
    np.save(cache, np.packbits(ink.numpy(), axis=-1))
    return ink


def sources(task: str, targets: torch.Tensor, ink: torch.Tensor | None, g: torch.Generator | None) -> torch.Tensor:
    """The network's inputs for targets in [-1, 1]: drawings made from their edges (randomly
    varied when g is given, else the fixed sigma-2 lines), or their grey."""
    if task == "grey_to_colour":
        return grey(targets)
    if g is None:
        return shrink(F.max_pool2d(ink[:, :1].float(), 3, 1, 1)) * 2 - 1
    sparse = torch.rand(len(ink), generator=g) < 0.5
    chosen = torch.where(sparse[:, None, None, None], ink[:, 1:], ink[:, :1]).float()
    return like_a_drawing(chosen, g) * 2 - 1


class Judge:
    """The face-verification network's embeddings, and its threshold for "same person"."""

    def __init__(self, device):
        self.model = face_models.load_facenet(0.01, device)
        self.threshold = checkpoints.load_metrics(face_models.checkpoint_name(0.01))["threshold"]
        self.device = device

    def embed(self, faces_uint8: torch.Tensor) -> torch.Tensor:
        return face_models.embed(self.model, faces_uint8, self.device)


def pixel_errors(outputs: torch.Tensor, targets: torch.Tensor) -> dict:
    """Mean L1 and mean per-picture PSNR of pictures in [-1, 1], measured with pixels in [0, 1]."""
    error = (outputs - targets) / 2
    mse = error.pow(2).mean((1, 2, 3))
    return {"l1": round(error.abs().mean().item(), 5),
            "psnr_db": round((10 * torch.log10(1 / mse.clamp(min=1e-10))).mean().item(), 3)}


def measure(task: str, gen: UNet, faces64, faces112_ink, rows: torch.Tensor, judge: Judge, device) -> dict:
    targets = to_model(faces64[rows])
    source = sources(task, targets, faces112_ink[rows] if faces112_ink is not None else None, None)
    outputs = translate(gen, source.to(device)).cpu()
    real, fake = judge.embed(faces64[rows]), judge.embed(to_uint8(outputs))
    half = len(real) // 2
    result = {"photos": len(rows), **pixel_errors(outputs, targets),
              "frechet_distance_facenet": round(frechet_distance(fake.double().numpy(), real.double().numpy()), 4),
              "frechet_distance_facenet_real_half_vs_half": round(
                  frechet_distance(real[:half].double().numpy(), real[half:].double().numpy()), 4)}
    if task == "sketch_to_face":
        similarity = face_models.cosine_similarity(fake, real)
        result["same_person_rate"] = round((similarity >= judge.threshold).float().mean().item(), 4)
        result["mean_similarity_to_the_photo"] = round(similarity.mean().item(), 4)
    return result


def load_frames(path: Path, upto: int) -> dict[int, torch.Tensor]:
    """An interrupted run's time-lapse frames by epoch, those of its saved epochs only."""
    if not upto or not path.exists():
        return {}
    saved = np.load(path)
    return {int(e): torch.from_numpy(f) for e, f in zip(saved["epochs"], saved["frames"]) if e <= upto}


def save_frames(path: Path, frames: dict[int, torch.Tensor]) -> None:
    epochs = sorted(frames)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, epochs=np.array(epochs), frames=np.stack([frames[e].numpy() for e in epochs]))


def timelapse_sheet(columns: list[torch.Tensor]) -> Image.Image:
    """Columns of uint8 (n, 3, H, W) pictures side by side: one row per picture."""
    strip = torch.stack(columns, 1)  # (n, columns, 3, H, W)
    n, c, _, h, w = strip.shape
    return Image.fromarray(strip.permute(0, 3, 1, 4, 2).reshape(n * h, c * w, 3).numpy())


def train_epoch(gen, disc, opt_g, opt_d, faces64, ink, rows, args, epoch, device) -> dict:
    g = seed_epoch(args.seed, epoch)
    order = rows[torch.randperm(len(rows), generator=g)]
    gen.train()
    disc.train()
    sums = {"d_loss": 0.0, "g_adversarial": 0.0, "l1": 0.0}
    steps = len(order) // args.batch_size
    bar = tqdm(range(steps), desc=f"{args.task} epoch {epoch}/{args.epochs}", leave=False)
    for step in bar:
        batch = order[step * args.batch_size:(step + 1) * args.batch_size]
        target = to_model(faces64[batch])
        batch_ink = ink[batch] if ink is not None else None
        flip = torch.rand(len(batch), generator=g) < 0.5  # the same mirror for photo and sketch
        target = torch.where(flip[:, None, None, None], target.flip(3), target)
        if batch_ink is not None:
            batch_ink = torch.where(flip[:, None, None, None], batch_ink.flip(3), batch_ink)
        source = sources(args.task, target, batch_ink, g).to(device)
        target = target.to(device)
        fake = gen(source)

        real_logits, fake_logits = disc(source, target), disc(source, fake.detach())
        d_loss = 0.5 * (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits)) +
                        F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()

        fooled = disc(source, fake)
        adversarial = F.binary_cross_entropy_with_logits(fooled, torch.ones_like(fooled))
        l1 = (fake - target).abs().mean()
        opt_g.zero_grad(set_to_none=True)
        (adversarial + args.l1_weight * l1).backward()
        opt_g.step()
        for k, v in (("d_loss", d_loss), ("g_adversarial", adversarial), ("l1", l1)):
            sums[k] += v.item()
        bar.set_postfix(d=f"{sums['d_loss'] / (step + 1):.3f}", l1=f"{sums['l1'] / (step + 1):.3f}")
    return {k: round(v / max(1, steps), 5) for k, v in sums.items()}


def run(args) -> dict:
    device = pick_device(args.device)
    name = checkpoint_name(args.task)
    parts = split(args)
    rows = parts["rows"]
    faces64 = data.lfw_faces(SIZE, root=args.data_dir)
    needed = torch.cat(list(rows.values())) if args.limit else None
    ink = sketch_edges(data.lfw_faces(112, root=args.data_dir), args, needed) if args.task == "sketch_to_face" else None
    judge = Judge(device)
    test_rows = rows["test"][:args.test_photos] if args.test_photos else rows["test"]
    if args.eval:
        gen = checkpoints.load(UNet, name, f"python -m train.image_to_image --task {args.task}", device,
                               root=args.checkpoint_dir)
        return {"task": args.task, **measure(args.task, gen, faces64, ink, test_rows, judge, device)}

    seed_everything(args.seed)
    task = TASKS[args.task]
    gen = UNet(task.in_channels, task.out_channels, args.width).to(device)
    disc = PatchDiscriminator(task.in_channels + task.out_channels).to(device)
    gen.apply(init_weights)
    disc.apply(init_weights)
    opt_g = torch.optim.Adam(gen.parameters(), lr=args.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=args.lr, betas=(0.5, 0.999))
    root = Path(args.checkpoint_dir or checkpoints.CHECKPOINTS)
    resume = root / name / "resume"
    config = {k: getattr(args, k) for k in ("task", "epochs", "batch_size", "lr", "l1_weight", "width", "seed", "limit")}
    start_epoch, history = load_state(resume / "generator", gen, opt_g, None, config) if args.resume else (0, [])
    if start_epoch:
        load_state(resume / "discriminator", disc, opt_d, None, config)
    best = None
    if history:
        best = min(history, key=lambda h: h["val"]["frechet_distance_facenet"])
        best_state = {k: v.clone() for k, v in UNet.from_pretrained(str(resume / "best")).state_dict().items()}
    elapsed_before = history[-1]["wall_time_s"] if history else 0.0
    val_rows = rows["val"]
    lapse_rows = val_rows[torch.linspace(0, len(val_rows) - 1, TIMELAPSE_PHOTOS).long()]
    lapse_target = to_model(faces64[lapse_rows])
    lapse_source = sources(args.task, lapse_target, ink[lapse_rows] if ink is not None else None, None)
    frames_path = resume / "timelapse.npz"
    frames = load_frames(frames_path, start_epoch)
    start = time.perf_counter()
    for epoch in range(start_epoch + 1, args.epochs + 1):
        # linear decay to zero over the second half (pix2pix's schedule)
        lr = args.lr * min(1.0, 2 * (args.epochs - epoch + 1) / (args.epochs + 1))
        for opt in (opt_g, opt_d):
            for group in opt.param_groups:
                group["lr"] = lr
        stats = train_epoch(gen, disc, opt_g, opt_d, faces64, ink, rows["train"], args, epoch, device)
        frames[epoch] = to_uint8(translate(gen, lapse_source.to(device)).cpu())
        val = measure(args.task, gen, faces64, ink, val_rows, judge, device)
        history.append({"epoch": epoch, **stats, "val": val,
                        "wall_time_s": round(elapsed_before + time.perf_counter() - start, 1)})
        tqdm.write(json.dumps(history[-1]))
        if best is None or val["frechet_distance_facenet"] < best["val"]["frechet_distance_facenet"]:
            best, best_state = history[-1], {k: v.detach().clone() for k, v in gen.state_dict().items()}
            gen.save_pretrained(str(resume / "best"))
        save_frames(frames_path, frames)  # before the state: a resumed run never has fewer frames than epochs
        save_state(resume / "generator", gen, opt_g, None, epoch, history, config)
        save_state(resume / "discriminator", disc, opt_d, None, epoch, history, config)
        if args.stop_after and epoch >= args.stop_after:
            raise SystemExit(f"stopped after epoch {epoch} (--stop-after)")
    wall_time = elapsed_before + time.perf_counter() - start

    gen.load_state_dict(best_state)
    gen.eval()
    metrics = {"task": args.task, "train_photos": len(rows["train"]), "val_people": parts["people"]["val"],
               "test_people": parts["people"]["test"], "epoch_kept": best["epoch"],
               "chosen_on": f"the smallest Frechet distance on {len(val_rows)} photos of the validation people",
               "generator_parameters": sum(p.numel() for p in gen.parameters()),
               "discriminator_parameters": sum(p.numel() for p in disc.parameters()),
               "train_wall_time_s": round(wall_time, 1), "device": str(device), "seed": args.seed,
               "command": checkpoints.command_line("train.image_to_image"),
               "hyperparameters": {k: v for k, v in config.items() if k not in ("seed", "limit", "task")},
               "history": history,
               "test": measure(args.task, gen, faces64, ink, test_rows, judge, device)}
    path = checkpoints.save(gen.cpu(), name, metrics, root=args.checkpoint_dir)
    # one row a photo: its source, the output after every epoch, the real photo
    columns = [to_uint8(lapse_source.expand(-1, 3, -1, -1)), *(frames[e] for e in sorted(frames)),
               to_uint8(lapse_target)]
    timelapse_sheet(columns).save(path / "timelapse.jpg", quality=90)
    return {k: v for k, v in metrics.items() if k != "history"}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True, choices=list(TASKS), help="which translation")
    parser.add_argument("--epochs", type=int, default=DEFAULTS["epochs"], help="epochs over the training photos")
    parser.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"], help="photos a step")
    parser.add_argument("--lr", type=float, default=DEFAULTS["lr"], help="Adam's learning rate (betas 0.5, 0.999)")
    parser.add_argument("--l1-weight", type=float, default=DEFAULTS["l1_weight"], help="weight of L1 against the GAN loss")
    parser.add_argument("--width", type=int, default=DEFAULTS["width"], help="the U-Net's first layer's channels")
    parser.add_argument("--test-photos", type=int, default=0, help="measure on the first n test photos (0: all)")
    add_run_arguments(parser)
    args = parse_run_arguments(parser, argv)
    result = run(args)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
