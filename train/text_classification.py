"""Train the Chinese headline classifiers (THUCNews titles, 10 classes) over characters,
their hashed bigrams and trigrams, and jieba words.

    python -m train.text_classification --model textcnn     # one model, as committed
    python -m train.text_classification --model all
    python -m train.text_classification --model textcnn --eval
    python -m train.text_classification --model bilstm --epochs 1 --limit 500 --checkpoint-dir /tmp/ck

The character and word vocabularies are built from the titles trained on and saved beside
the weights (vocab.json). With --fit-on train the epoch kept is the one with the best
accuracy on the validation split (how the settings were chosen); the committed TextCNN and
BiLSTM use --fit-on train+val, their default: every non-test title, a fixed number of
epochs, the last kept. The hand-written TextRNN keeps its --fit-on train run (train it with
OMP_NUM_THREADS=1: its small per-step operations are slower with two threads on two busy
cores). The test split is read once, at the end (the seed let test batches into training).
"""
import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from core import checkpoints, data
from core.data import THUCNEWS_CLASSES
from core.training import (add_run_arguments, load_state, parse_run_arguments, pick_device, save_state, seed_epoch,
                           seed_everything, with_defaults)
from models.text_classification import MAX_LEN, MODELS, Vocab, checkpoint_name, load_model, predict, trim

# Most Chinese words are two characters long: hashed bigram and trigram embeddings give the
# models words without a segmenter, jieba's words add the ones it knows. The settings and
# epochs were chosen on validation with --fit-on train (README); the committed models then
# learn from train + validation.
NGRAMS = dict(bigram_buckets=20_000, trigram_buckets=50_000, words=True)
DEFAULTS = {
    "textcnn": dict(epochs=6, lr=2e-3, batch_size=128, weight_decay=1e-4, embed_dropout=0.1, fit_on="train+val",
                    pooling="max+mean", **NGRAMS),
    # The BiLSTM overfits more (98% of training titles right by epoch 4): more dropout and decay.
    "bilstm": dict(epochs=5, lr=2e-3, batch_size=128, weight_decay=0.05, embed_dropout=0.3, fit_on="train+val",
                   **NGRAMS),
    # The hand-written cell is a Python loop over time: too slow to re-run for a train+val refit
    # here, so it trains once on the training titles and keeps its best epoch on validation.
    "textrnn_hand": dict(epochs=6, lr=2e-3, batch_size=128, weight_decay=0.05, embed_dropout=0.3,
                         fit_on="train", **NGRAMS),
}


def load_split(split: str, args):
    titles, labels = data.thucnews(split, root=args.data_dir)
    if args.limit:
        keep = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))[:args.limit]
        titles, labels = [titles[i] for i in keep], labels[keep]
    return titles, labels


def scores(probs: torch.Tensor, labels: torch.Tensor) -> dict:
    """Accuracy, per-class precision / recall / F1 and the confusion matrix."""
    k = len(THUCNEWS_CLASSES)
    predicted = probs.argmax(1)
    confusion = torch.zeros(k, k, dtype=torch.long)
    confusion.index_put_((labels, predicted), torch.ones_like(labels), accumulate=True)
    tp = confusion.diag().float()
    precision = tp / confusion.sum(0).clamp(min=1)
    recall = tp / confusion.sum(1).clamp(min=1)
    f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
    return {"accuracy": (predicted == labels).float().mean().item(),
            "per_class": {name: {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4)}
                          for name, p, r, f in zip(THUCNEWS_CLASSES, precision.tolist(), recall.tolist(), f1.tolist())},
            "confusion_matrix": confusion.tolist()}


def confident_mistakes(probs: torch.Tensor, labels: torch.Tensor, titles: list[str], k: int = 20) -> list[dict]:
    """The k wrong answers given with the highest probability."""
    confidence, predicted = probs.max(1)
    wrong = (predicted != labels).nonzero().flatten()
    worst = wrong[confidence[wrong].argsort(descending=True)[:k]]
    return [{"title": titles[i], "label": THUCNEWS_CLASSES[labels[i]], "predicted": THUCNEWS_CLASSES[predicted[i]],
             "confidence": round(confidence[i].item(), 4)} for i in worst.tolist()]


def train_epoch(model, optimizer, scheduler, ids, labels, args, epoch, device):
    model.train()
    gen = seed_epoch(args.seed, epoch)
    order = torch.randperm(len(labels), generator=gen)
    total = correct = seen = 0
    bar = tqdm(range(0, len(labels), args.batch_size), desc=f"{args.model} epoch {epoch}/{args.epochs}", leave=False)
    for i in bar:
        idx = order[i:i + args.batch_size]
        x, y = trim(ids[idx]).to(device), labels[idx].to(device)
        logits = model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=0.1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        scheduler.step()
        total += loss.item() * len(idx)
        correct += (logits.argmax(1) == y).sum().item()
        seen += len(idx)
        bar.set_postfix(loss=f"{total / seen:.3f}", acc=f"{correct / seen:.3f}")
    return {"train_loss": total / seen, "train_accuracy": correct / seen}


def run(args) -> dict:
    device = pick_device(args.device)
    name = checkpoint_name(args.model)
    test_titles, test_y = load_split("test", args)
    if args.eval:
        model, vocab = load_model(args.model, device, args.checkpoint_dir)
        result = scores(predict(model, vocab.batch(test_titles, MAX_LEN), device), test_y)
        return {"test_accuracy": result["accuracy"], "test_titles": len(test_y)}

    seed_everything(args.seed)
    train_titles, train_y = load_split("train", args)
    val_titles, val_y = load_split("val", args)
    refit = args.fit_on == "train+val"
    if refit:  # settings and epochs were chosen with --fit-on train; now learn from every non-test title
        train_titles, train_y = train_titles + val_titles, torch.cat([train_y, val_y])
    vocab = Vocab.build(train_titles, words=args.words)
    train_ids, val_ids, test_ids = (vocab.batch(t, MAX_LEN) for t in (train_titles, val_titles, test_titles))
    pooling = {"pooling": args.pooling} if args.model == "textcnn" else {}
    model = MODELS[args.model](vocab_size=len(vocab), bigram_buckets=args.bigram_buckets,
                               trigram_buckets=args.trigram_buckets, word_vocab_size=vocab.num_words,
                               embed_dropout=args.embed_dropout, **pooling).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps = args.epochs * math.ceil(len(train_y) / args.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=steps, pct_start=0.2)
    root = Path(args.checkpoint_dir or checkpoints.CHECKPOINTS)
    resume_dir = root / name / "resume"
    config = {k: getattr(args, k) for k in ("model", "epochs", "lr", "batch_size", "weight_decay", "embed_dropout",
                                            "bigram_buckets", "trigram_buckets", "words", "fit_on", "seed", "limit")} | pooling
    start_epoch, history = load_state(resume_dir, model, optimizer, scheduler, config) if args.resume else (0, [])
    elapsed_before = history[-1]["wall_time_s"] if history else 0.0

    start = time.perf_counter()
    for epoch in range(start_epoch + 1, args.epochs + 1):
        stats = train_epoch(model, optimizer, scheduler, train_ids, train_y, args, epoch, device)
        val_acc = None if refit else scores(predict(model, val_ids, device), val_y)["accuracy"]
        if refit or not history or val_acc > max(h["val_accuracy"] for h in history):  # refit: the last epoch
            resume_dir.mkdir(parents=True, exist_ok=True)
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(resume_dir / "best.safetensors"))
        history.append({"epoch": epoch, **stats, "val_accuracy": val_acc,
                        "wall_time_s": round(elapsed_before + time.perf_counter() - start, 1)})
        tqdm.write(json.dumps(history[-1]))
        save_state(resume_dir, model, optimizer, scheduler, epoch, history, config)
        if args.stop_after and epoch >= args.stop_after:
            return {"stopped_after_epoch": epoch}
    wall_time = elapsed_before + time.perf_counter() - start

    best = history[-1] if refit else max(history, key=lambda h: h["val_accuracy"])
    model.load_state_dict(load_file(str(resume_dir / "best.safetensors")))
    # The embedding tables are most of the weights (13M of 14M): stored in float16 they
    # halve the checkpoint. Round them now, so the test numbers are those of the stored model.
    model.embed.half().float()
    test_probs = predict(model, test_ids, device)
    test = scores(test_probs, test_y)
    metrics = {
        "test_accuracy": test["accuracy"], "test_titles": len(test_y), "per_class": test["per_class"],
        "confusion_matrix": test["confusion_matrix"],
        "most_confidently_wrong": confident_mistakes(test_probs, test_y, test_titles),
        "best_epoch": best["epoch"], "val_accuracy": best["val_accuracy"],
        "fit_on": args.fit_on, "train_titles": len(train_y), "val_titles": 0 if refit else len(val_y),
        "vocab_size": len(vocab), "word_vocab_size": vocab.num_words,
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_wall_time_s": round(wall_time, 1), "device": str(device), "seed": args.seed,
        "command": checkpoints.command_line("train.text_classification"),
        "hyperparameters": {k: v for k, v in config.items() if k not in ("model", "seed", "limit")} | {"max_len": MAX_LEN},
        "history": history,
    }
    model.cpu().embed.half()
    path = checkpoints.save(model, name, metrics, root=args.checkpoint_dir)
    vocab.save(path / "vocab.json")
    return {"test_accuracy": test["accuracy"], "val_accuracy": best["val_accuracy"], "train_wall_time_s": round(wall_time, 1)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="all", choices=["all", *MODELS], help="which model (default: all)")
    parser.add_argument("--epochs", type=int, help="epochs (default: per model)")
    parser.add_argument("--lr", type=float, help="peak learning rate (one-cycle)")
    parser.add_argument("--batch-size", type=int, help="batch size")
    parser.add_argument("--weight-decay", type=float, help="AdamW weight decay")
    parser.add_argument("--embed-dropout", type=float, help="dropout on the summed embeddings")
    parser.add_argument("--bigram-buckets", type=int, help="hashed character-bigram embeddings (0: none)")
    parser.add_argument("--trigram-buckets", type=int, help="hashed character-trigram embeddings (0: none)")
    parser.add_argument("--words", action=argparse.BooleanOptionalAction, help="add jieba word embeddings")
    parser.add_argument("--pooling", choices=["max", "max+mean"], help="TextCNN: pool each filter by its max, or "
                        "by its max and its mean over the real windows")
    parser.add_argument("--fit-on", choices=["train", "train+val"],
                        help="train: keep the epoch best on validation (how the settings were chosen); train+val: "
                             "train on both for --epochs and keep the last (the test split is never used)")
    add_run_arguments(parser)
    args = parse_run_arguments(parser, argv)
    results = {}
    for model in MODELS if args.model == "all" else [args.model]:
        results[model] = run(with_defaults(args, "model", model, DEFAULTS))
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
