"""Train the VAEs and the autoencoder.

    python -m train.vae --model fashion_vae2d     # the seed's 2-D VAE on Fashion-MNIST
    python -m train.vae --model fashion_ae2d      # the same network as a plain autoencoder
    python -m train.vae --model mnist_vae16       # a 16-D VAE on MNIST, for sharper samples
    python -m train.vae --model all --eval        # re-measure the committed checkpoints

Likelihood: each pixel's intensity in [0, 1] is the target of a Bernoulli cross-entropy
(the usual choice for these data sets), so the ELBO in nats per image is
-(reconstruction cross-entropy summed over the 32x32 pixels + KL). The autoencoder has
no KL and no ELBO; its reconstruction cross-entropy is reported instead.
"""
import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tqdm import tqdm

from core import checkpoints, data
from core.training import add_run_arguments, load_state, parse_run_arguments, pick_device, save_state, seed_epoch, seed_everything
from models.vae import MODELS, ConvVAE, checkpoint_name, kl_divergence, load_model, to_input

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]
EMBEDDED_TEST_IMAGES = 5000  # test-set embeddings saved for the tab's latent map
KEPT_TEST_IMAGES = 200  # test images saved for the tab's interpolation


def losses(model, x):
    """Per-image reconstruction cross-entropy and KL (zeros for the autoencoder), in nats."""
    logits, mean, logvar = model(x)
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(dim=(1, 2, 3))
    kl = kl_divergence(mean, logvar) if logvar is not None else torch.zeros_like(recon)
    return recon, kl


@torch.no_grad()
def evaluate(model, images, device, batch_size=1000) -> dict:
    model.eval()
    recon_sum = kl_sum = 0.0
    for i in range(0, len(images), batch_size):
        recon, kl = losses(model, to_input(images[i:i + batch_size]).to(device))
        recon_sum += recon.sum().item()
        kl_sum += kl.sum().item()
    n = len(images)
    out = {"test_reconstruction_nats": recon_sum / n}
    if model.variational:
        out.update(test_kl_nats=kl_sum / n, test_elbo_nats=-(recon_sum + kl_sum) / n)
    return out


@torch.no_grad()
def embed(model, images, device) -> torch.Tensor:
    model.eval()
    return model.encode(to_input(images).to(device))[0].cpu()


def run(args) -> dict:
    device = pick_device(args.device)
    spec = MODELS[args.model]
    name = checkpoint_name(args.model)
    test_x, test_y = data.mnist("test", spec["dataset"], root=args.data_dir)
    if args.eval:
        model = load_model(args.model, device, root=args.checkpoint_dir)
        return evaluate(model, test_x, device)

    seed_everything(args.seed)
    train_x, _ = data.mnist("train", spec["dataset"], root=args.data_dir)
    if args.limit:
        train_x, test_x, test_y = train_x[:args.limit], test_x[:args.limit], test_y[:args.limit]
    model = ConvVAE(latent_dim=spec["latent_dim"], variational=spec["variational"]).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps = args.epochs * math.ceil(len(train_x) / args.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=steps)
    resume_dir = Path(args.checkpoint_dir or checkpoints.CHECKPOINTS) / name / "resume"
    config = {k: getattr(args, k) for k in ("model", "epochs", "lr", "batch_size", "seed", "limit")}
    start_epoch, history = load_state(resume_dir, model, optimizer, scheduler, config) if args.resume else (0, [])
    elapsed_before = history[-1]["wall_time_s"] if history else 0.0

    start = time.perf_counter()
    for epoch in range(start_epoch + 1, args.epochs + 1):
        model.train()
        order = torch.randperm(len(train_x), generator=seed_epoch(args.seed, epoch))
        recon_total = kl_total = 0.0
        bar = tqdm(range(0, len(train_x), args.batch_size), desc=f"{args.model} epoch {epoch}/{args.epochs}", leave=False)
        for i in bar:
            x = to_input(train_x[order[i:i + args.batch_size]]).to(device)
            recon, kl = losses(model, x)
            loss = (recon + kl).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            recon_total += recon.sum().item()
            kl_total += kl.sum().item()
            bar.set_postfix(loss=f"{loss.item():.1f}")
        n = len(train_x)
        history.append({"epoch": epoch, "train_reconstruction_nats": recon_total / n, "train_kl_nats": kl_total / n,
                        **evaluate(model, test_x[:2000], device),
                        "wall_time_s": round(elapsed_before + time.perf_counter() - start, 1)})
        tqdm.write(json.dumps(history[-1]))
        save_state(resume_dir, model, optimizer, scheduler, epoch, history, config)
        if args.stop_after and epoch >= args.stop_after:
            return {"stopped_after_epoch": epoch}
    wall_time = elapsed_before + time.perf_counter() - start

    metrics = {"model": args.model, **spec, **evaluate(model, test_x, device), "test_images": len(test_x),
               "train_images": len(train_x), "parameters": sum(p.numel() for p in model.parameters()),
               "likelihood": "Bernoulli cross-entropy on pixel intensities in [0, 1], 32x32 (28x28 padded by 2)",
               "train_wall_time_s": round(wall_time, 1), "device": str(device), "seed": args.seed,
               "command": checkpoints.command_line("train.vae"),
               "hyperparameters": {k: getattr(args, k) for k in ("epochs", "lr", "batch_size")},
               "classes": FASHION_CLASSES if spec["dataset"] == "FashionMNIST" else [str(d) for d in range(10)],
               "history": history}
    path = checkpoints.save(model.cpu(), name, metrics, root=args.checkpoint_dir)
    save_file({"embeddings": embed(model, test_x[:EMBEDDED_TEST_IMAGES], "cpu"),
               "labels": test_y[:EMBEDDED_TEST_IMAGES].contiguous(),
               "images": test_x[:KEPT_TEST_IMAGES].contiguous()}, str(path / "test_set.safetensors"))
    return {k: v for k, v in metrics.items() if k not in ("history", "hyperparameters", "classes")}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="all", choices=["all", *MODELS], help="which model (default: all)")
    parser.add_argument("--epochs", type=int, default=8, help="epochs")
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate of the one-cycle schedule")
    parser.add_argument("--batch-size", type=int, default=128, help="batch size")
    add_run_arguments(parser)
    args = parse_run_arguments(parser, argv)
    results = {}
    for model in MODELS if args.model == "all" else [args.model]:
        results[model] = run(argparse.Namespace(**dict(vars(args), model=model)))
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
