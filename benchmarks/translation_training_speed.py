"""Seconds per training step of the translation Transformer (default size, real Multi30K
batches of --max-tokens), float32 against bfloat16 autocast, the loss each reaches on the
same batches, and what an epoch and the default run cost: how train.translation's --bf16
default was chosen.

    python -m benchmarks.translation_training_speed [--steps 30] [--d-model 256 ...]
"""
import argparse
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from core import data
from models.translation import PAD, Transformer, inverse_sqrt
from train.translation import collate, encode_pairs, token_batches, train_tokenizer


def run(pairs, batches, vocab_size, args, bf16: bool) -> tuple[float, float, float]:
    """(wall seconds per step after two warm-up steps, CPU seconds per step, mean loss of
    the last 10 steps). CPU time is the fairer number on a shared machine."""
    torch.manual_seed(0)
    model = Transformer(vocab_size=vocab_size, d_model=args.d_model, heads=args.heads, d_ff=args.d_ff,
                        encoder_layers=args.layers, decoder_layers=args.layers, dropout=0.1).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.98), eps=1e-9)
    losses = []
    for i, batch in enumerate(batches[:args.steps + 2]):
        if i == 2:
            start, cpu_start = time.perf_counter(), time.process_time()
        for group in optimizer.param_groups:  # a short warmup, so a few dozen steps already learn
            group["lr"] = 1e-3 * inverse_sqrt(i + 1, 20)
        src, tgt_in, tgt_out = collate(pairs, batch)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(src, tgt_in)
        loss = F.cross_entropy(logits.float().flatten(0, 1), tgt_out.flatten(), ignore_index=PAD, label_smoothing=0.1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
    return ((time.perf_counter() - start) / args.steps, (time.process_time() - cpu_start) / args.steps,
            sum(losses[-10:]) / len(losses[-10:]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per setting")
    parser.add_argument("--max-tokens", type=int, default=4096)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--d-ff", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10, help="epochs of the run to estimate")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    english, german = data.multi30k("train")
    with tempfile.TemporaryDirectory() as tmp:
        sp = train_tokenizer(english + german, Path(tmp) / "spm", 8000)
    pairs = encode_pairs(sp, english, german)
    batches = token_batches(pairs, args.max_tokens, torch.Generator().manual_seed(0))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {len(pairs):,} pairs in {len(batches)} "
          f"batches of <= {args.max_tokens} tokens (mean {len(pairs) / len(batches):.0f} sentences)")
    for bf16 in (False, True):
        seconds, cpu, loss = run(pairs, batches, sp.get_piece_size(), args, bf16)
        epoch_min = seconds * len(batches) / 60
        print(f"{'bf16' if bf16 else 'fp32'}: {seconds:.3f} s/step ({cpu:.3f} CPU s), loss after {args.steps + 2} "
              f"steps {loss:.3f}; "
              f"{epoch_min:.1f} min per epoch (training only), {epoch_min * args.epochs:.0f} min for {args.epochs}",
              flush=True)


if __name__ == "__main__":
    main()
