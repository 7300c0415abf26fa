"""Train the GANs: the bootcamp MLP GAN, DCGAN and conditional DCGAN on MNIST, and a
DCGAN on 64x64 LFW faces.

    python -m train.gan --model dcgan          # one model, as committed
    python -m train.gan --model all            # all four
    python -m train.gan --model dcgan --eval   # re-measure the committed checkpoint
    python -m train.gan --model dcgan --epochs 1 --limit 512 --eval-samples 500 --checkpoint-dir /tmp/ck
    python -m train.gan --model sgan           # the semi-supervised GAN (train/sgan.py; not in "all")

Quality of digit models is measured on 10,000 samples with the project's own LeNet-style
MNIST classifier (checkpoints/mnist/lenet): a Frechet distance between its 500-d
penultimate features of samples and of the MNIST test set (this is *not* Inception FID),
the share of samples it labels with confidence >= 0.9, how evenly the ten digits come
out, and for the conditional model how often the requested digit comes out.
"""
import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from scipy import linalg
from tqdm import tqdm

from core import checkpoints, data
from core.training import (add_run_arguments, load_state, parse_run_arguments, pick_device, save_state, seed_epoch,
                           seed_everything, with_defaults)
from models import cifar10, mnist
from models.gan import MODELS, checkpoint_name, generate, init_dcgan_weights, is_conditional, load_generator, noise
from models.mnist import MEAN, STD, LeNet
from train import sgan

DEFAULTS = {
    "bootcamp": dict(epochs=25, lr=2e-4, batch_size=128, ema_decay=0.999, decay_from=0),
    "dcgan": dict(epochs=8, lr=2e-4, batch_size=128, ema_decay=0.999, decay_from=0, clusters=50),
    "cdcgan": dict(epochs=8, lr=2e-4, batch_size=128, ema_decay=0.999, decay_from=0),
    # 13,233 faces make only 103 steps an epoch: a shorter average, or it still remembers
    # the untrained generator at the end.
    "faces": dict(epochs=12, lr=2e-4, batch_size=128, ema_decay=0.99, decay_from=0),
}
TIMELAPSE_SEED = 1234  # the fixed noise decoded after every epoch


def training_images(kind: str, args) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, C, H, W) and labels (digits; zeros for faces)."""
    if kind == "digits":
        images, labels = data.mnist("train", root=args.data_dir)
        images = images.unsqueeze(1)
    else:
        images = data.lfw_faces(64, root=args.data_dir)
        labels = torch.zeros(len(images), dtype=torch.long)
    if args.limit:
        images, labels = images[:args.limit], labels[:args.limit]
    return images, labels


# ---- quality metrics on digits -------------------------------------------------------

def load_judge(device="cpu") -> LeNet:
    return checkpoints.load(LeNet, mnist.checkpoint_name("lenet"), mnist.train_command("lenet"), device)


@torch.no_grad()
def judge(classifier: LeNet, images_uint8: np.ndarray, device="cpu", batch_size=1000):
    """The classifier's 500-d penultimate features and class probabilities for uint8 digits."""
    feats, probs = [], []
    for i in range(0, len(images_uint8), batch_size):
        x = torch.from_numpy(images_uint8[i:i + batch_size]).float().div(255).sub(MEAN).div(STD).unsqueeze(1)
        h = classifier.classifier[:3](classifier.features(x.to(device)))  # flatten, fc500, ReLU
        feats.append(h.cpu().double())
        probs.append(F.softmax(classifier.classifier[3:](h), dim=1).cpu())
    return torch.cat(feats).numpy(), torch.cat(probs)


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)), as in FID."""
    mu_a, mu_b = feats_a.mean(0), feats_b.mean(0)
    cov_a, cov_b = np.cov(feats_a, rowvar=False), np.cov(feats_b, rowvar=False)
    covmean, _ = linalg.sqrtm(cov_a @ cov_b, disp=False)
    covmean = covmean.real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * covmean))


def digit_quality(generator, conditional: bool, n: int, classifier, reference: np.ndarray, device) -> dict:
    """The quality numbers of a digit generator on n samples (see the module docstring),
    against the judge's features of real test digits."""
    z = noise(n, generator.latent_dim, seed=999)
    labels = torch.arange(n) % 10 if conditional else None
    feats, probs = judge(classifier, generate(generator, z, labels, device), device)
    predicted = probs.argmax(1)
    shares = torch.bincount(predicted, minlength=10).float() / n
    metrics = {
        "samples": n,
        "frechet_distance_lenet": frechet_distance(feats, reference),
        "confident_share": (probs.max(1).values >= 0.9).float().mean().item(),
        "digit_shares": [round(s, 4) for s in shares.tolist()],
        "digit_share_min": shares.min().item(), "digit_share_max": shares.max().item(),
    }
    if conditional:
        metrics["requested_digit_accuracy"] = (predicted == labels).float().mean().item()
    return metrics


def real_data_reference(feats: np.ndarray, probs: torch.Tensor) -> dict:
    """The same numbers for real MNIST test digits (the judge's outputs for n of them),
    to read the others against: one half against the other."""
    half = len(feats) // 2
    return {"frechet_distance_lenet_test_half_vs_half": frechet_distance(feats[:half], feats[half:]),
            "confident_share": (probs[:half].max(1).values >= 0.9).float().mean().item()}


# ---- training --------------------------------------------------------------------------

def kmeans(x: torch.Tensor, k: int, iterations: int = 30, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means on the rows of x (N, D): (cluster of each row (N,), centres (k, D)),
    starting from k rows drawn with the seed."""
    g = torch.Generator().manual_seed(seed)
    centres = x[torch.randperm(len(x), generator=g)[:k]].clone()
    for _ in range(iterations):
        assign = torch.cdist(x, centres).argmin(1)
        counts = torch.bincount(assign, minlength=k).float()
        sums = torch.zeros_like(centres).index_add_(0, assign, x)
        filled = counts > 0  # an emptied cluster keeps its old centre
        centres[filled] = sums[filled] / counts[filled, None]
    return torch.cdist(x, centres).argmin(1), centres


def pixel_clusters(images: torch.Tensor, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means clusters of uint8 images (N, 1, H, W) by their pixels, no labels involved:
    (cluster of each image, cumulative share of the clusters) for a self-conditioned GAN."""
    assign, _ = kmeans(images.flatten(1).float().div(255), k, seed=seed)
    shares = torch.bincount(assign, minlength=k).float() / len(assign)
    return assign, shares.cumsum(0)


def cluster_purity(assign: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """The share of images whose cluster's most common digit is their own (labels are used
    for this report only, never in training)."""
    return sum(torch.bincount(labels[assign == j], minlength=10).max().item() for j in range(k)) / len(labels)


@torch.no_grad()
def update_ema(ema, gen, decay: float) -> None:
    for p_ema, p in zip(ema.parameters(), gen.parameters()):
        p_ema.lerp_(p, 1.0 - decay)


@torch.no_grad()
def recompute_batch_norm(ema, conditional: bool, device, batches: int = 20, batch_size: int = 256) -> None:
    """Batch-norm statistics for the averaged weights, measured on fresh noise (the live
    generator's running statistics belong to other weights)."""
    norms = [m for m in ema.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a plain average over the batches below
    ema.train()
    g = torch.Generator().manual_seed(0)
    for _ in range(batches):
        z = torch.randn(batch_size, ema.latent_dim, generator=g).to(device)
        ema(z, torch.randint(0, 10, (batch_size,), generator=g).to(device) if conditional else None)
    ema.eval()


def learning_rate(args, epoch: int) -> float:
    """Constant, then (after epoch decay_from, if set) linear decay to zero at the end."""
    if not args.decay_from or epoch <= args.decay_from:
        return args.lr
    return args.lr * (args.epochs - epoch + 1) / (args.epochs - args.decay_from + 1)


def train_epoch(gen, ema, disc, opt_g, opt_d, images, labels, conditional, args, epoch, device):
    for opt in (opt_g, opt_d):
        for group in opt.param_groups:
            group["lr"] = learning_rate(args, epoch)
    gen.train()
    disc.train()
    g = seed_epoch(args.seed, epoch)
    order = torch.randperm(len(images), generator=g)
    sums = {"loss_d": 0.0, "loss_g": 0.0, "d_real": 0.0, "d_fake": 0.0}
    steps = 0
    bar = tqdm(range(0, len(images) - args.batch_size + 1, args.batch_size), desc=f"{args.model} epoch {epoch}/{args.epochs}", leave=False)
    for i in bar:
        idx = order[i:i + args.batch_size]
        real = (images[idx].float().div(127.5).sub(1)).to(device)
        y = labels[idx].to(device)
        z = torch.randn(len(idx), gen.latent_dim, device=device)
        y_fake = torch.randint(0, 10, (len(idx),), device=device) if conditional else None
        if getattr(gen, "clusters", 0):  # self-conditioned: the generator picks its cluster from z
            y_fake = gen.cluster_of(z)
        fake = gen(z, y_fake)

        # Discriminator: real -> 1 (one-sided label smoothing to 0.9), fake -> 0. A
        # conditional D also sees the labels: real images carry theirs, fakes the asked-for one.
        logit_real, logit_fake = disc(real, y), disc(fake.detach(), y_fake)
        loss_d = (F.binary_cross_entropy_with_logits(logit_real, torch.full_like(logit_real, 0.9))
                  + F.binary_cross_entropy_with_logits(logit_fake, torch.zeros_like(logit_fake)))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()

        # Generator: the non-saturating loss, fake -> 1.
        logit = disc(fake, y_fake)
        loss_g = F.binary_cross_entropy_with_logits(logit, torch.ones_like(logit))
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        update_ema(ema, gen, args.ema_decay)

        steps += 1
        sums["loss_d"] += loss_d.item()
        sums["loss_g"] += loss_g.item()
        sums["d_real"] += torch.sigmoid(logit_real).mean().item()
        sums["d_fake"] += torch.sigmoid(logit_fake).mean().item()
        bar.set_postfix(loss_d=f"{sums['loss_d'] / steps:.3f}", loss_g=f"{sums['loss_g'] / steps:.3f}")
    return {k: v / max(steps, 1) for k, v in sums.items()}


def run(args) -> dict:
    device = pick_device(args.device)
    spec = MODELS[args.model]
    gen_kwargs, disc_kwargs, kind = spec.generator_kwargs, spec.discriminator_kwargs, spec.kind
    conditional = is_conditional(args.model)
    if args.clusters is not None:
        if "clusters" not in gen_kwargs:
            raise SystemExit(f"--clusters applies to the dcgan only, not {args.model}")
        gen_kwargs, disc_kwargs = dict(gen_kwargs, clusters=args.clusters), dict(disc_kwargs, num_classes=args.clusters)
    name = checkpoint_name(args.model)
    if args.eval:
        gen = load_generator(args.model, device, root=args.checkpoint_dir)
        result = evaluate(gen, kind, conditional, args, device)
        if args.update_metrics:  # e.g. a metric added after the model was trained
            path = checkpoints.find(name, args.checkpoint_dir)
            metrics = json.loads((path / "metrics.json").read_text())
            (path / "metrics.json").write_text(json.dumps(dict(metrics, **result), indent=1) + "\n")
        return result

    seed_everything(args.seed)
    images, labels = training_images(kind, args)
    gen, disc = spec.generator(**gen_kwargs).to(device), spec.discriminator(**disc_kwargs).to(device)
    if args.model != "bootcamp":
        gen.apply(init_dcgan_weights)
        disc.apply(init_dcgan_weights)
    clustering = {}
    if gen_kwargs.get("clusters"):  # the real images' labels become their pixel clusters
        digits = labels
        labels, cdf = pixel_clusters(images, gen.clusters, args.seed)
        gen.cluster_cdf.copy_(cdf)
        clustering = {"clusters": gen.clusters, "cluster_purity": round(cluster_purity(labels, digits, gen.clusters), 4)}
    # Samples come from an exponential moving average of the generator's weights: the
    # live generator oscillates with the discriminator; its average draws cleaner digits.
    ema = copy.deepcopy(gen).eval().requires_grad_(False)
    opt_g = torch.optim.Adam(gen.parameters(), lr=args.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=args.lr, betas=(0.5, 0.999))
    root = Path(args.checkpoint_dir or checkpoints.CHECKPOINTS)
    resume_g, resume_d = root / name / "resume" / "generator", root / name / "resume" / "discriminator"
    config = {k: getattr(args, k) for k in ("model", "epochs", "lr", "batch_size", "ema_decay", "decay_from", "clusters", "seed", "limit")}
    start_epoch, history = (load_state(resume_g, gen, opt_g, None, config) if args.resume else (0, []))
    if start_epoch:
        load_state(resume_d, disc, opt_d, None, config)
        ema.load_state_dict(load_file(str(root / name / "resume" / "ema.safetensors")))
    elapsed_before = history[-1]["wall_time_s"] if history else 0.0
    timelapse_z = noise(64, gen.latent_dim, TIMELAPSE_SEED)
    timelapse_y = torch.arange(64) % 10 if conditional else None
    frames_path = root / name / "resume" / "timelapse.npy"
    frames = list(np.load(frames_path)) if start_epoch and frames_path.exists() else []

    # A quick look at sample quality after every epoch (2,000 samples; the final
    # numbers use 10,000), for the curves in the model card.
    classifier = load_judge(device) if kind == "digits" else None
    start = time.perf_counter()
    for epoch in range(start_epoch + 1, args.epochs + 1):
        stats = train_epoch(gen, ema, disc, opt_g, opt_d, images, labels, conditional, args, epoch, device)
        recompute_batch_norm(ema, conditional, device)
        frames.append(generate(ema, timelapse_z, timelapse_y, device))
        if classifier is not None:
            z = noise(2000, gen.latent_dim, seed=epoch)
            _, probs = judge(classifier, generate(ema, z, torch.arange(2000) % 10 if conditional else None, device), device)
            stats["confident_share_2000"] = round((probs.max(1).values >= 0.9).float().mean().item(), 4)
        history.append({"epoch": epoch, **stats, "wall_time_s": round(elapsed_before + time.perf_counter() - start, 1)})
        tqdm.write(json.dumps(history[-1]))
        save_state(resume_g, gen, opt_g, None, epoch, history, config)
        save_state(resume_d, disc, opt_d, None, epoch, history, config)
        save_file(ema.state_dict(), str(root / name / "resume" / "ema.safetensors"))
        np.save(frames_path, np.stack(frames))
        if args.stop_after and epoch >= args.stop_after:
            return {"stopped_after_epoch": epoch}
    wall_time = elapsed_before + time.perf_counter() - start

    metrics = {
        "model": args.model, "kind": kind, "train_images": len(images),
        "generator_parameters": sum(p.numel() for p in gen.parameters()),
        "discriminator_parameters": sum(p.numel() for p in disc.parameters()),
        "train_wall_time_s": round(wall_time, 1), "device": str(device), "seed": args.seed,
        "command": checkpoints.command_line("train.gan"),
        "hyperparameters": {k: getattr(args, k) for k in ("epochs", "lr", "batch_size", "ema_decay", "decay_from", "clusters")},
        **clustering,
        "history": history,
    }
    metrics.update(evaluate(ema, kind, conditional, args, device))
    path = checkpoints.save(ema.cpu(), name, metrics, root=args.checkpoint_dir)
    save_file({"frames": torch.from_numpy(np.ascontiguousarray(np.stack(frames))), "epochs": torch.tensor([h["epoch"] for h in history])},
              str(path / "timelapse.safetensors"))
    return {k: v for k, v in metrics.items() if k not in ("history", "hyperparameters")}


@torch.no_grad()
def face_features(images_uint8: torch.Tensor, device="cpu", batch_size=500, vgg=None) -> np.ndarray:
    """256-d features of (N, 3, 64, 64) uint8 faces from the project's CIFAR-10 VGG (global
    max-pooled last conv stage, at 32x32): no ImageNet Inception here, so a face Frechet
    distance uses the best image network the project trained itself."""
    vgg = vgg or cifar10.load_feature_vgg(device)
    out = []
    for i in range(0, len(images_uint8), batch_size):
        x = F.interpolate(images_uint8[i:i + batch_size].float(), size=32, mode="area").round().byte()
        out.append(vgg.features(cifar10.normalize(x.to(device))).amax(dim=(2, 3)).cpu().double())
    return torch.cat(out).numpy()


def face_quality(generator, n: int, args, device) -> dict:
    """Frechet distance between n generated faces and the LFW faces, in CIFAR-10 VGG features,
    with two halves of LFW against each other as the reference."""
    vgg = cifar10.load_feature_vgg(device)  # once for both sets
    real_feats = face_features(data.lfw_faces(64, root=args.data_dir), device, vgg=vgg)
    fake = torch.from_numpy(generate(generator, noise(n, generator.latent_dim, seed=999), None, device)).permute(0, 3, 1, 2)
    half = len(real_feats) // 2
    return {"samples": n, "frechet_distance_cifar10_vgg": frechet_distance(face_features(fake, device, vgg=vgg), real_feats),
            "real_lfw_reference": {"frechet_distance_cifar10_vgg_half_vs_half": frechet_distance(real_feats[:half], real_feats[half:])}}


def evaluate(gen, kind, conditional, args, device) -> dict:
    if kind != "digits":
        return face_quality(gen, args.eval_samples, args, device)
    classifier = load_judge(device)
    test_images, _ = data.mnist("test", root=args.data_dir)
    feats, probs = judge(classifier, test_images[:args.eval_samples].numpy(), device)
    return dict(digit_quality(gen, conditional, args.eval_samples, classifier, feats, device),
                real_mnist_reference=real_data_reference(feats, probs))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="all", choices=["all", *MODELS, "sgan"],
                        help="which GAN (default: all four image GANs; sgan is the semi-supervised classifier)")
    parser.add_argument("--epochs", type=int, help="epochs (default: per model, see DEFAULTS)")
    parser.add_argument("--lr", type=float, help="Adam learning rate (betas 0.5, 0.999 as in DCGAN)")
    parser.add_argument("--batch-size", type=int, help="batch size")
    parser.add_argument("--ema-decay", type=float, help="decay of the generator's weight average (default: per model)")
    parser.add_argument("--decay-from", type=int, help="after this epoch the learning rate decays linearly to 0 (0: never)")
    parser.add_argument("--clusters", type=int,
                        help="dcgan only: k-means clusters of the training pixels it is self-conditioned on "
                             "(default 50; 0 trains the seeds' plain DCGAN)")
    parser.add_argument("--update-metrics", action="store_true",
                        help="with --eval: also write the re-measured numbers into the checkpoint's metrics.json")
    parser.add_argument("--eval-samples", type=int, default=10000, help="samples for the quality metrics")
    sgan.add_arguments(parser)
    add_run_arguments(parser)
    args = parse_run_arguments(parser, argv)

    if args.model == "sgan":  # its own script: a classifier, judged by accuracy
        result = sgan.run(argparse.Namespace(**{k: (sgan.DEFAULTS[k] if v is None and k in sgan.DEFAULTS else v)
                                                for k, v in vars(args).items()}))
        print(json.dumps(result))
        return result
    results = {}
    for model in MODELS if args.model == "all" else [args.model]:
        results[model] = run(with_defaults(args, "model", model, DEFAULTS))
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
