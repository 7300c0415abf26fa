"""Train the hand-written Transformer to translate English to German on Multi30K.

    python -m train.translation                         # as committed (checkpoints/translation/)
    python -m train.translation --eval                  # BLEU and chrF of the committed model on test_2016_flickr
    python -m train.translation --translate-file in.txt --out out.txt    # one English sentence per line
    python -m train.translation --epochs 1 --limit 200 --checkpoint-dir /tmp/ck    # a smoke run

A joint English+German SentencePiece BPE model is trained on the training split only and
saved beside the weights (spm.model). Batches hold about --max-tokens source+target tokens
(sentences of similar length together, so little padding). Adam (0.9, 0.98) with the
inverse-square-root schedule, label smoothing 0.1. After every epoch the model greedily
translates the 1,014 validation sentences; the model kept is whichever of the best epoch
and the average of the last --average epochs has the higher validation BLEU. The test
split is read once, at the end. BLEU and chrF are sacreBLEU's (detokenized, cased, 13a).
"""
import argparse
import json
import shutil
import time
from pathlib import Path
from typing import NamedTuple

import sacrebleu
import sentencepiece as spm
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from core import checkpoints, data
from core.training import (add_run_arguments, load_state, parse_run_arguments, pick_device, save_state, seed_epoch,
                           seed_everything)
from models.translation import (BOS, EOS, PAD, Transformer, beam_search, checkpoint_name, greedy_decode, inverse_sqrt,
                                load_model)

MAX_SENTENCE_TOKENS = 100  # longer training pairs are dropped (Multi30K's longest has 55)
HYPERPARAMETERS = ("epochs", "lr", "warmup", "max_tokens", "vocab_size", "d_model", "heads", "d_ff", "layers",
                   "dropout", "label_smoothing", "clip", "average", "bf16", "seed", "limit")


def train_tokenizer(sentences: list[str], prefix: Path, vocab_size: int) -> spm.SentencePieceProcessor:
    """One BPE vocabulary for both languages (so embeddings can be shared); writes
    <prefix>.model. character_coverage 1.0 keeps every letter seen (umlauts, accents)."""
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_prefix=str(prefix), vocab_size=vocab_size, model_type="bpe",
        character_coverage=1.0, pad_id=PAD, unk_id=1, bos_id=BOS, eos_id=EOS,
        hard_vocab_limit=False, num_threads=2, minloglevel=2)  # a soft limit: tiny --limit runs have fewer pieces
    return spm.SentencePieceProcessor(model_file=f"{prefix}.model")


class Pair(NamedTuple):
    source: list[int]  # English ids + EOS
    target: list[int]  # BOS + German ids + EOS


def encode_pairs(sp, english: list[str], german: list[str]) -> list[Pair]:
    """Every sentence pair short enough, as ids."""
    pairs = []
    for src, tgt in zip(sp.encode(english), sp.encode(german)):
        if len(src) < MAX_SENTENCE_TOKENS and len(tgt) < MAX_SENTENCE_TOKENS:
            pairs.append(Pair(src + [EOS], [BOS] + tgt + [EOS]))
    return pairs


def token_batches(pairs: list[Pair], max_tokens: int, generator: torch.Generator | None = None) -> list[list[int]]:
    """Indices of pairs, grouped so that each padded batch holds at most max_tokens source
    plus target tokens. Sorted by length (random order among equal lengths), then the batch
    order shuffled when a generator is given."""
    order = torch.randperm(len(pairs), generator=generator).tolist() if generator is not None else range(len(pairs))
    order = sorted(order, key=lambda i: (len(pairs[i].source), len(pairs[i].target)))
    batches, batch, longest_src, longest_tgt = [], [], 0, 0
    for i in order:
        src, tgt = pairs[i]
        s, t = max(longest_src, len(src)), max(longest_tgt, len(tgt))
        if batch and (len(batch) + 1) * (s + t) > max_tokens:
            batches.append(batch)
            batch, s, t = [], len(src), len(tgt)
        batch.append(i)
        longest_src, longest_tgt = s, t
    if batch:
        batches.append(batch)
    if generator is not None:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
    return batches


def pad(sequences: list[list[int]]) -> torch.Tensor:
    out = torch.full((len(sequences), max(len(s) for s in sequences)), PAD, dtype=torch.long)
    for row, seq in enumerate(sequences):
        out[row, :len(seq)] = torch.tensor(seq)
    return out  # (N, longest)


def collate(pairs: list[Pair], batch: list[int]):
    """src (N, S), target input (N, T) starting with BOS, target output (N, T) ending in EOS."""
    src, tgt = pad([pairs[i].source for i in batch]), pad([pairs[i].target for i in batch])
    return src, tgt[:, :-1], tgt[:, 1:]


def train_epoch(model, optimizer, scheduler, pairs, args, epoch, device) -> dict:
    model.train()
    batches = token_batches(pairs, args.max_tokens, seed_epoch(args.seed, epoch))
    total_loss = total_tokens = 0
    bar = tqdm(batches, desc=f"epoch {epoch}/{args.epochs}", leave=False)
    for batch in bar:
        src, tgt_in, tgt_out = (t.to(device) for t in collate(pairs, batch))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            logits = model(src, tgt_in)  # (N, T, vocab)
        loss = F.cross_entropy(logits.float().flatten(0, 1), tgt_out.flatten(), ignore_index=PAD,
                               label_smoothing=args.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        optimizer.step()
        scheduler.step()
        tokens = int((tgt_out != PAD).sum())
        total_loss += loss.item() * tokens
        total_tokens += tokens
        bar.set_postfix(loss=f"{total_loss / total_tokens:.3f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
    return {"train_loss": total_loss / total_tokens, "steps": len(batches)}


@torch.no_grad()
def evaluate_loss(model, pairs, args, device) -> dict:
    """Label-smoothed loss (comparable with the training loss) and plain cross-entropy
    per target token."""
    model.eval()
    smoothed = nll = tokens = 0.0
    for batch in token_batches(pairs, 4 * args.max_tokens):
        src, tgt_in, tgt_out = (t.to(device) for t in collate(pairs, batch))
        logits = model(src, tgt_in).flatten(0, 1)
        n = int((tgt_out != PAD).sum())
        smoothed += F.cross_entropy(logits, tgt_out.flatten(), ignore_index=PAD, label_smoothing=args.label_smoothing,
                                    reduction="sum").item()
        nll += F.cross_entropy(logits, tgt_out.flatten(), ignore_index=PAD, reduction="sum").item()
        tokens += n
    return {"val_loss": smoothed / tokens, "val_nll": nll / tokens}


@torch.no_grad()
def translate_sentences(model, sp, sentences: list[str], beam_size: int = 4, alpha: float = 0.6, device="cpu",
                        batch_size: int = 100) -> list[str]:
    """German for each English sentence: greedy (beam_size 1, batched by length) or beam
    search (one sentence at a time)."""
    model.eval()
    ids = [s[:MAX_SENTENCE_TOKENS - 1] + [EOS] for s in sp.encode(sentences)]
    outputs = [[] for _ in ids]
    todo = [i for i, s in enumerate(sentences) if s.strip()]  # an empty line stays empty
    if beam_size == 1:
        order = sorted(todo, key=lambda i: len(ids[i]))
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            for i, out in zip(chunk, greedy_decode(model, pad([ids[i] for i in chunk]).to(device))):
                outputs[i] = out
    else:
        for i in todo:
            outputs[i] = beam_search(model, torch.tensor([ids[i]], device=device), beam_size, alpha)
    return sp.decode(outputs)


def scores(hypotheses: list[str], references: list[str]) -> dict:
    """sacreBLEU corpus BLEU (13a tokenisation, cased, on detokenized text) and chrF."""
    bleu, chrf = sacrebleu.BLEU(), sacrebleu.CHRF()
    return {"bleu": round(bleu.corpus_score(hypotheses, [references]).score, 2),
            "chrf": round(chrf.corpus_score(hypotheses, [references]).score, 2),
            "signature": f"{bleu.get_signature()} / {chrf.get_signature()}"}


def test_metrics(model, sp, english, german, args, device) -> dict:
    out = {"test_sentences": len(english)}
    for label, beam in (("greedy", 1), (f"beam{args.beam_size}", args.beam_size)):
        start = time.perf_counter()
        result = scores(translate_sentences(model, sp, english, beam, args.alpha, device), german)
        out.update({f"test_bleu_{label}": result["bleu"], f"test_chrf_{label}": result["chrf"],
                    f"test_decode_s_{label}": round(time.perf_counter() - start, 1), "signature": result["signature"]})
    return out


def average(paths: list[Path]) -> dict:
    """The element-wise mean of several saved state dicts (checkpoint averaging)."""
    states = [load_file(str(p)) for p in paths]
    return {k: sum(s[k].float() for s in states) / len(states) for k in states[0]}


def load_split(split: str, args):
    english, german = data.multi30k(split, root=args.data_dir)
    if args.limit:
        english, german = english[:args.limit], german[:args.limit]
    return english, german


def run(args) -> dict:
    device = pick_device(args.device)
    if args.translate_file:
        model, sp = load_model(device, args.checkpoint_dir)
        lines = Path(args.translate_file).read_text(encoding="utf-8").splitlines()
        german = translate_sentences(model, sp, [line.strip() for line in lines], args.beam_size, args.alpha, device)
        Path(args.out).write_text("".join(g + "\n" for g in german), encoding="utf-8")
        return {"translated": len(german), "out": str(args.out), "beam_size": args.beam_size}
    test_en, test_de = load_split("test", args)
    if args.eval:
        model, sp = load_model(device, args.checkpoint_dir)
        return test_metrics(model, sp, test_en, test_de, args, device)

    seed_everything(args.seed)
    root = Path(args.checkpoint_dir or checkpoints.CHECKPOINTS)
    resume_dir = root / checkpoint_name() / "resume"
    resume_dir.mkdir(parents=True, exist_ok=True)
    train_en, train_de = load_split("train", args)
    val_en, val_de = load_split("val", args)
    if args.resume and (resume_dir / "spm.model").exists():
        sp = spm.SentencePieceProcessor(model_file=str(resume_dir / "spm.model"))
    else:
        sp = train_tokenizer(train_en + train_de, resume_dir / "spm", args.vocab_size)
    train_pairs, val_pairs = encode_pairs(sp, train_en, train_de), encode_pairs(sp, val_en, val_de)

    model = Transformer(vocab_size=sp.get_piece_size(), d_model=args.d_model, heads=args.heads, d_ff=args.d_ff,
                        encoder_layers=args.layers, decoder_layers=args.layers, dropout=args.dropout).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.98), eps=1e-9)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: inverse_sqrt(step + 1, args.warmup))
    config = {k: getattr(args, k) for k in HYPERPARAMETERS}
    start_epoch, history = load_state(resume_dir, model, optimizer, scheduler, config) if args.resume else (0, [])
    elapsed_before = history[-1]["wall_time_s"] if history else 0.0

    start = time.perf_counter()
    for epoch in range(start_epoch + 1, args.epochs + 1):
        stats = train_epoch(model, optimizer, scheduler, train_pairs, args, epoch, device)
        lr = scheduler.get_last_lr()[0]
        val = evaluate_loss(model, val_pairs, args, device)
        val_bleu = scores(translate_sentences(model, sp, val_en, 1, device=device), val_de)["bleu"]
        weights = {k: v.contiguous() for k, v in model.state_dict().items()}
        save_file(weights, str(resume_dir / f"epoch_{epoch}.safetensors"))
        (resume_dir / f"epoch_{epoch - args.average}.safetensors").unlink(missing_ok=True)  # keep the last few
        if not history or val_bleu > max(h["val_bleu"] for h in history):
            save_file(weights, str(resume_dir / "best.safetensors"))
        history.append({"epoch": epoch, **stats, **val, "val_bleu": val_bleu, "lr": lr,
                        "wall_time_s": round(elapsed_before + time.perf_counter() - start, 1)})
        tqdm.write(json.dumps(history[-1]))
        save_state(resume_dir, model, optimizer, scheduler, epoch, history, config)
        if args.stop_after and epoch >= args.stop_after:
            return {"stopped_after_epoch": epoch}
    wall_time = elapsed_before + time.perf_counter() - start

    # Model selection on validation only: the best epoch, or the average of the last ones.
    best = max(history, key=lambda h: h["val_bleu"])
    chosen, chosen_bleu = f"epoch {best['epoch']}", best["val_bleu"]
    model.load_state_dict(load_file(str(resume_dir / "best.safetensors")))
    averaged_bleu = None
    last = [resume_dir / f"epoch_{e}.safetensors" for e in range(max(1, args.epochs - args.average + 1), args.epochs + 1)]
    if args.average > 1 and len(last) > 1:
        model.load_state_dict(average(last))
        averaged_bleu = scores(translate_sentences(model, sp, val_en, 1, device=device), val_de)["bleu"]
        if averaged_bleu > chosen_bleu:
            chosen, chosen_bleu = f"average of epochs {args.epochs - len(last) + 1}-{args.epochs}", averaged_bleu
        else:
            model.load_state_dict(load_file(str(resume_dir / "best.safetensors")))
    test = test_metrics(model, sp, test_en, test_de, args, device)
    metrics = {
        **test, "chosen": chosen, "val_bleu_greedy": chosen_bleu, "best_epoch": best["epoch"],
        "val_bleu_best_epoch": best["val_bleu"], "val_bleu_averaged": averaged_bleu,
        "train_pairs": len(train_pairs), "val_sentences": len(val_en), "vocab_size": sp.get_piece_size(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_wall_time_s": round(wall_time, 1), "device": str(device), "seed": args.seed,
        "command": checkpoints.command_line("train.translation"),
        "hyperparameters": {k: v for k, v in config.items() if k not in ("seed", "limit")}
        | {"beam_size": args.beam_size, "alpha": args.alpha, "adam_betas": [0.9, 0.98], "layer_norm": "pre-LN"},
        "history": history,
    }
    path = checkpoints.save(model.cpu(), checkpoint_name(), metrics, root=args.checkpoint_dir)
    shutil.copy(resume_dir / "spm.model", path / "spm.model")
    return {k: test[k] for k in test if k.startswith("test_bleu") or k.startswith("test_chrf")} | {
        "val_bleu_greedy": chosen_bleu, "chosen": chosen, "train_wall_time_s": round(wall_time, 1)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10, help="passes over the 29,000 training pairs")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate, reached after --warmup steps")
    parser.add_argument("--warmup", type=int, default=800, help="optimizer steps of linear warmup (an epoch is ~240)")
    parser.add_argument("--max-tokens", type=int, default=4096, help="source + target tokens per batch, padding included")
    parser.add_argument("--vocab-size", type=int, default=8000, help="joint SentencePiece BPE vocabulary")
    parser.add_argument("--d-model", type=int, default=256, help="width of the model")
    parser.add_argument("--heads", type=int, default=4, help="attention heads")
    parser.add_argument("--d-ff", type=int, default=1024, help="width of the feed-forward layers")
    parser.add_argument("--layers", type=int, default=3, help="encoder layers (and as many decoder layers)")
    parser.add_argument("--dropout", type=float, default=0.1, help="dropout on embeddings, attention and residuals")
    parser.add_argument("--label-smoothing", type=float, default=0.1, help="label smoothing of the loss")
    parser.add_argument("--clip", type=float, default=1.0, help="gradient-norm clipping")
    parser.add_argument("--average", type=int, default=5, help="average the last N epochs' weights (1: off)")
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=False,
                        help="bfloat16 autocast for training (the committed run used float32; compare with "
                             "python -m benchmarks.translation_training_speed)")
    parser.add_argument("--beam-size", type=int, default=4, help="beam size for the test metrics and --translate-file")
    parser.add_argument("--alpha", type=float, default=0.6, help="GNMT length penalty exponent for beam search")
    parser.add_argument("--translate-file", help="translate this file (one English sentence a line) with the trained model")
    parser.add_argument("--out", help="where --translate-file writes the German, one line per input line")
    parser.add_argument("--record-check", action="store_true",
                        help="with --eval --limit N: store the scores re-measured on the first N test sentences in "
                             "metrics.json as \"check\" (what the tests re-measure in a fraction of the time)")
    add_run_arguments(parser)
    args = parse_run_arguments(parser, argv)
    if args.translate_file and not args.out:
        parser.error("--translate-file needs --out")
    if args.record_check and not (args.eval and args.limit):
        parser.error("--record-check needs --eval and --limit")
    result = run(args)
    if args.record_check:
        checkpoints.record_check(checkpoint_name(), {k: v for k, v in result.items() if not k.startswith("test_decode_s")},
                                 f"python -m train.translation --eval --limit {args.limit}", args.checkpoint_dir)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
