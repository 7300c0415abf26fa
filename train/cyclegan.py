"""Train the mask CycleGAN (models/image_to_image.py): put a mask on a face, take it off.

    python -m train.cyclegan            # as committed
    python -m train.cyclegan --eval     # re-measure on the held-out faces
    python -m train.cyclegan --epochs 1 --limit 64 --judge-faces 16 --checkpoint-dir /tmp/ck   # a smoke run

Faces without a mask: LFW's, people split as train.image_to_image splits them (the test
people are pairsDevTest's). Faces with one: the face-mask set's "with_mask" faces whose box is
at least MIN_FACE px, cropped like LFW's frame, from the detection slice's fixed train / val /
test photos. Each epoch goes once through the masked faces, with as many bare ones drawn at
random.

Judged by the project's own models on held-out faces, both ways: the share of translated faces
the face-mask slice's crop classifier (checkpoints/detection_backbone, 88.9% on its validation
crops; it also learned every LFW face as "without_mask", so calling a masked LFW face "with_mask"
is the harder way for it) calls "with_mask" (adding) or "without_mask" (removing), beside the
same shares for the real faces; and how often the face-verification network says a bare face and
its masked version are the same person (adding). Epochs and loss weights are the paper's and
the budget's; the epoch kept is the last.
"""
import argparse
import json
import random
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
from models import detection as det
from models import faces as face_models
from models.image_to_image import (MASK, SIZE, CycleDiscriminator, MaskCycleGAN, checkpoint_name, init_weights,
                                   mask_crops, to_model, to_uint8, translate)
from train.detection_backbone import LABELS as CROP_LABELS
from train.detection_backbone import normalize as crop_normalize
from train.image_to_image import Judge as FaceJudge
from train.image_to_image import split as lfw_split
from train.image_to_image import load_frames, save_frames, timelapse_sheet

DEFAULTS = dict(epochs=40, batch_size=8, lr=2e-4, cycle_weight=10.0, identity_weight=5.0, width=32)
MIN_FACE = 32  # masked faces smaller than this (in the photo) are too blurred to learn from
TIMELAPSE_FACES = 4  # validation faces of each kind translated after every epoch, for the time-lapse sheet
TIMELAPSE_EVERY = 5  # epochs between the sheet's columns
POOL = 50  # past fakes the discriminators also see (Shrivastava et al.), as CycleGAN does


def masked_faces(part: str, args) -> torch.Tensor:
    """uint8 (N, 3, SIZE, SIZE) crops of the "with_mask" faces of one part of the detection split."""
    root = data.face_mask_dir(args.data_dir)
    records = det.split(det.load_annotations(root))[part]
    crops = []
    for record in records:
        boxes = [b.tolist() for b, label in zip(record["boxes"], record["labels"])
                 if det.CLASSES[int(label) - 1] == "with_mask" and min(b[2] - b[0], b[3] - b[1]) >= MIN_FACE]
        if boxes:
            with Image.open(det.image_path(root, record["stem"])) as photo:
                crops += mask_crops(photo.convert("RGB"), boxes)
        if args.limit and len(crops) >= args.limit:
            break
    crops = crops[:args.limit] if args.limit else crops
    return torch.from_numpy(np.stack([np.asarray(c) for c in crops])).permute(0, 3, 1, 2).contiguous()


class ImagePool:
    """Half the time the discriminator sees a fake from earlier in training instead of the
    newest: it cannot chase only the generator's latest trick."""

    def __init__(self, size: int, rng: random.Random):
        self.size, self.items, self.rng = size, [], rng

    def __call__(self, fakes: torch.Tensor) -> torch.Tensor:
        out = []
        for fake in fakes.detach():
            if len(self.items) < self.size:
                self.items.append(fake)
                out.append(fake)
            elif self.rng.random() < 0.5:
                k = self.rng.randrange(self.size)
                out.append(self.items[k])
                self.items[k] = fake
            else:
                out.append(fake)
        return torch.stack(out)


class Judge(FaceJudge):
    """Face verification's embeddings and "same person" (as pix2pix is judged), and the
    face-mask slice's crop classifier for single faces."""

    def __init__(self, device):
        super().__init__(device)
        self.classifier = checkpoints.load(det.FaceCropClassifier, det.CROPS_CHECKPOINT, det.CROPS_COMMAND, device)

    @torch.no_grad()
    def labels(self, faces_uint8: torch.Tensor) -> list[str]:
        """What the crop classifier calls each face: it learned faces with their box's size again
        as context around them, so each LFW-framed face (about 1.2 boxes) gets a border of its
        own edge pixels first."""
        pad = round(faces_uint8.shape[-1] * (2 / 1.2 - 1) / 2)
        framed = F.pad(faces_uint8.float(), (pad,) * 4, mode="replicate")
        x = crop_normalize(F.interpolate(framed, size=64, mode="area"))
        predicted = torch.cat([self.classifier(x[i:i + 256].to(self.device)).argmax(1).cpu()
                               for i in range(0, len(x), 256)])
        return [CROP_LABELS[k] for k in predicted.tolist()]

    def same_person(self, a_uint8: torch.Tensor, b_uint8: torch.Tensor) -> torch.Tensor:
        return face_models.cosine_similarity(self.embed(a_uint8), self.embed(b_uint8)) >= self.threshold


def judge(model: MaskCycleGAN, bare: torch.Tensor, masked: torch.Tensor, judge_: Judge, device) -> dict:
    added = to_uint8(translate(model.add_mask, to_model(bare).to(device)).cpu())
    removed = to_uint8(translate(model.remove_mask, to_model(masked).to(device)).cpu())
    share = lambda labels, name: round(sum(label == name for label in labels) / max(1, len(labels)), 4)  # noqa: E731
    return {"bare_faces": len(bare), "masked_faces": len(masked),
            "add_mask_detected_with_mask": share(judge_.labels(added), "with_mask"),
            "real_bare_detected_with_mask": share(judge_.labels(bare), "with_mask"),
            "remove_mask_detected_without_mask": share(judge_.labels(removed), "without_mask"),
            "real_masked_detected_without_mask": share(judge_.labels(masked), "without_mask"),
            "add_mask_same_person": round(judge_.same_person(bare, added).float().mean().item(), 4),
            "remove_mask_same_person": round(judge_.same_person(masked, removed).float().mean().item(), 4)}


def timelapse_epochs(epochs: list[int], every: int = TIMELAPSE_EVERY) -> list[int]:
    """The epochs the time-lapse sheet shows: every `every`-th, and the last."""
    return [e for e in epochs if e % every == 0 or e == epochs[-1]]


@torch.no_grad()
def lapse_frame(model: MaskCycleGAN, bare: torch.Tensor, masked: torch.Tensor, device) -> torch.Tensor:
    """The bare faces with a mask put on, then the masked faces with it taken off (uint8)."""
    added = translate(model.add_mask, to_model(bare).to(device))
    removed = translate(model.remove_mask, to_model(masked).to(device))
    return to_uint8(torch.cat([added, removed]).cpu())


def adversarial(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """Least-squares GAN loss (CycleGAN's): logits pulled to 1 for real, 0 for fake."""
    return (logits - (1.0 if real else 0.0)).pow(2).mean()


def train_epoch(model, disc_bare, disc_masked, opt_g, opt_d, bare, masked, pools, args, epoch, device) -> dict:
    g = seed_epoch(args.seed, epoch)
    order = torch.randperm(len(masked), generator=g)
    steps = max(1, len(order) // args.batch_size)
    sums = dict.fromkeys(("g_adversarial", "cycle", "identity", "d_loss"), 0.0)
    model.train()
    bar = tqdm(range(steps), desc=f"mask cyclegan epoch {epoch}/{args.epochs}", leave=False)
    for step in bar:
        m_idx = order[step * args.batch_size:(step + 1) * args.batch_size]
        b_idx = torch.randint(0, len(bare), (len(m_idx),), generator=g)
        flip = torch.rand(2, generator=g) < 0.5
        real_b, real_m = to_model(bare[b_idx]), to_model(masked[m_idx])
        real_b, real_m = (x.flip(3) if f else x for x, f in zip((real_b, real_m), flip))
        real_b, real_m = real_b.to(device), real_m.to(device)

        fake_m, fake_b = model.add_mask(real_b), model.remove_mask(real_m)
        cycle = (model.remove_mask(fake_m) - real_b).abs().mean() + (model.add_mask(fake_b) - real_m).abs().mean()
        identity = (model.add_mask(real_m) - real_m).abs().mean() + (model.remove_mask(real_b) - real_b).abs().mean()
        g_adv = adversarial(disc_masked(fake_m), True) + adversarial(disc_bare(fake_b), True)
        opt_g.zero_grad(set_to_none=True)
        (g_adv + args.cycle_weight * cycle + args.identity_weight * identity).backward()
        opt_g.step()

        old_m, old_b = pools[0](fake_m), pools[1](fake_b)
        d_loss = 0.5 * (adversarial(disc_masked(real_m), True) + adversarial(disc_masked(old_m), False)
                        + adversarial(disc_bare(real_b), True) + adversarial(disc_bare(old_b), False))
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        for k, v in (("g_adversarial", g_adv), ("cycle", cycle), ("identity", identity), ("d_loss", d_loss)):
            sums[k] += v.item()
        bar.set_postfix(cycle=f"{sums['cycle'] / (step + 1):.3f}", d=f"{sums['d_loss'] / (step + 1):.3f}")
    return {k: round(v / steps, 5) for k, v in sums.items()}


def run(args) -> dict:
    device = pick_device(args.device)
    name = checkpoint_name(MASK)
    lfw = data.lfw_faces(SIZE, root=args.data_dir)
    rows = lfw_split(argparse.Namespace(data_dir=args.data_dir, limit=args.limit))["rows"]
    judge_ = Judge(device)
    test_bare, test_masked = lfw[rows["test"][:args.judge_faces]], masked_faces("test", args)[:args.judge_faces]
    if args.eval:
        model = checkpoints.load(MaskCycleGAN, name, "python -m train.cyclegan", device, root=args.checkpoint_dir)
        return judge(model, test_bare, test_masked, judge_, device)

    seed_everything(args.seed)
    bare, masked = lfw[rows["train"]], masked_faces("train", args)
    val_bare, val_masked = lfw[rows["val"][:args.judge_faces]], masked_faces("val", args)[:args.judge_faces]
    model = MaskCycleGAN(args.width).to(device)
    disc_bare, disc_masked = CycleDiscriminator().to(device), CycleDiscriminator().to(device)
    for net in (model, disc_bare, disc_masked):
        net.apply(init_weights)
    opt_g = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.5, 0.999))
    discs = torch.nn.ModuleList([disc_bare, disc_masked])
    opt_d = torch.optim.Adam(discs.parameters(), lr=args.lr, betas=(0.5, 0.999))
    root = Path(args.checkpoint_dir or checkpoints.CHECKPOINTS)
    resume = root / name / "resume"
    config = {k: getattr(args, k) for k in ("epochs", "batch_size", "lr", "cycle_weight", "identity_weight", "width",
                                            "seed", "limit")}
    start_epoch, history = load_state(resume / "generators", model, opt_g, None, config) if args.resume else (0, [])
    if start_epoch:
        load_state(resume / "discriminators", discs, opt_d, None, config)
    pools = [ImagePool(POOL, random.Random(args.seed)), ImagePool(POOL, random.Random(args.seed + 1))]
    elapsed_before = history[-1]["wall_time_s"] if history else 0.0
    lapse_bare, lapse_masked = val_bare[:TIMELAPSE_FACES], val_masked[:TIMELAPSE_FACES]
    frames_path = resume / "timelapse.npz"
    frames = load_frames(frames_path, start_epoch)
    start = time.perf_counter()
    for epoch in range(start_epoch + 1, args.epochs + 1):
        lr = args.lr * min(1.0, 2 * (args.epochs - epoch + 1) / (args.epochs + 1))  # linear decay over the second half
        for opt in (opt_g, opt_d):
            for group in opt.param_groups:
                group["lr"] = lr
        stats = train_epoch(model, disc_bare, disc_masked, opt_g, opt_d, bare, masked, pools, args, epoch, device)
        entry = {"epoch": epoch, **stats}
        frames[epoch] = lapse_frame(model, lapse_bare, lapse_masked, device)
        if epoch % args.judge_every == 0 or epoch == args.epochs:
            entry["val"] = judge(model, val_bare, val_masked, judge_, device)
        history.append({**entry, "wall_time_s": round(elapsed_before + time.perf_counter() - start, 1)})
        tqdm.write(json.dumps(history[-1]))
        save_frames(frames_path, frames)  # before the state: a resumed run never has fewer frames than epochs
        save_state(resume / "generators", model, opt_g, None, epoch, history, config)
        save_state(resume / "discriminators", discs, opt_d, None, epoch, history, config)
        if args.stop_after and epoch >= args.stop_after:
            raise SystemExit(f"stopped after epoch {epoch} (--stop-after)")
    wall_time = elapsed_before + time.perf_counter() - start

    metrics = {"bare_train_faces": len(bare), "masked_train_faces": len(masked), "min_face_px": MIN_FACE,
               "generator_parameters": sum(p.numel() for p in model.add_mask.parameters()),
               "train_wall_time_s": round(wall_time, 1), "device": str(device), "seed": args.seed,
               "command": checkpoints.command_line("train.cyclegan"),
               "hyperparameters": {k: v for k, v in config.items() if k not in ("seed", "limit")},
               "history": history, "test": judge(model, test_bare, test_masked, judge_, device)}
    path = checkpoints.save(model.cpu(), name, metrics, root=args.checkpoint_dir)
    # one row a face: the face, then its translation after every TIMELAPSE_EVERY-th epoch and the last
    shown = [frames[e] for e in timelapse_epochs(sorted(frames))]
    timelapse_sheet([torch.cat([lapse_bare, lapse_masked]), *shown]).save(path / "timelapse.jpg", quality=90)
    return {k: v for k, v in metrics.items() if k != "history"}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=DEFAULTS["epochs"], help="passes over the masked faces")
    parser.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"], help="faces of each kind a step")
    parser.add_argument("--lr", type=float, default=DEFAULTS["lr"], help="Adam's learning rate (betas 0.5, 0.999)")
    parser.add_argument("--cycle-weight", type=float, default=DEFAULTS["cycle_weight"], help="weight of the cycle loss")
    parser.add_argument("--identity-weight", type=float, default=DEFAULTS["identity_weight"],
                        help="weight of the identity loss (a masked face given to add_mask stays as it is)")
    parser.add_argument("--width", type=int, default=DEFAULTS["width"], help="the generators' first layer's channels")
    parser.add_argument("--judge-faces", type=int, default=400, help="held-out faces of each kind judged")
    parser.add_argument("--judge-every", type=int, default=10, help="judge the validation faces every n epochs")
    add_run_arguments(parser)
    args = parse_run_arguments(parser, argv)
    result = run(args)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
