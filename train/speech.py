"""Train Listen, Attend and Spell on spoken digit strings built from the Free Spoken Digit
Dataset, and test it on a speaker it never heard.

    python -m train.speech                  # as committed
    python -m train.speech --eval           # re-measure the committed checkpoint on the held-out speaker
    python -m train.speech --epochs 1 --limit 64 --checkpoint-dir /tmp/ck

Utterances are made on the fly, a new set every epoch: 1 to 7 recordings of single digits
by one speaker, their silence trimmed, joined with short random pauses, then sped up or
slowed down, made louder or quieter and given light noise (SpecAugment on top); one batch
in twenty is noise or silence, to be transcribed as nothing. The first epochs hold short
strings only (a curriculum), and an auxiliary CTC loss over the digits on the listener's
frames helps it learn where the digits are; the loss is otherwise the seed's: the
speller's label-smoothed cross-entropy, with teacher forcing decayed from 1.0 to 0.8.

Speakers: "theo" is held out for testing (all 500 of his recordings). The other five train
on takes 5-49 of each digit; their takes 0-4 (the FSDD's own test takes) make the
validation strings the kept epoch is chosen on. The test set is fixed: 1,000 strings of
1-7 of theo's digits (joined with pauses, nothing else added) and his 500 recordings as
they are, read once at the end.
"""
import argparse
import json
import math
import time
from pathlib import Path
from typing import NamedTuple

import jiwer
import numpy as np
import scipy.signal
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from core import checkpoints
from core.training import (add_run_arguments, load_state, parse_run_arguments, pick_device, save_state, seed_epoch,
                           seed_everything)
from models.speech import (DIGIT_WORDS, MAX_DIGITS, PAD, SAMPLE_RATE, TEST_SPEAKER, ListenAttendSpell, build_utterance,
                           checkpoint_name, digits_to_text, encode, features, load_clips, load_model, random_digits,
                           spec_augment, text)

NOISE_BATCHES = 0.05
TEST_STRINGS, VAL_STRINGS = 1000, 300
TEST_SEED, VAL_SEED = 1234, 4321
MAX_LEN = 60  # characters decoded at most: "seven" x 7 with spaces is 41
MODEL = dict(listener_hidden=96, pyramid_layers=3, embed_dim=32, speller_hidden=128, speller_layers=2,
             attention_dim=96, dropout=0.2)


# ---- utterances ---------------------------------------------------------------------------
# Speech comes from models.speech.build_utterance (the tab's random examples are built the same way).

def noise_clip(rng: np.random.Generator) -> np.ndarray:
    """0.3-4 s of no speech, transcribed as nothing: digital silence, or white or reddened
    (hum, wind) noise at -60 to -10 dBFS, so the model learns that noise is not a digit."""
    n = int(rng.uniform(0.3, 4.0) * SAMPLE_RATE)
    if rng.random() < 0.1:
        return np.zeros(n, np.float32)
    noise = rng.normal(0, 1, n)
    if rng.random() < 0.5:
        noise = scipy.signal.lfilter([1.0], [1.0, -rng.uniform(0.5, 0.99)], noise)
    noise *= 10 ** (rng.uniform(-60, -10) / 20) / (noise.std() + 1e-12)
    return np.clip(noise, -1, 1).astype(np.float32)


class Recordings(NamedTuple):
    waves: list[np.ndarray]  # 8 kHz float waves
    refs: list[str]  # what each says, in words ("four one nine")


def fixed_set(clips: list, n: int, seed: int) -> Recordings:
    """n strings of 1-7 digits built without augmentation: the same list every time."""
    rng = np.random.default_rng(seed)
    waves, refs = [], []
    for _ in range(n):
        digits = random_digits(rng)
        waves.append(build_utterance(clips, digits, rng))
        refs.append(digits_to_text(digits))
    return Recordings(waves, refs)


def held_out_sets(clips: dict, limit: int = 0) -> tuple[Recordings, Recordings]:
    """The held-out speaker's strings and his single digits."""
    strings = fixed_set(clips["test"], limit or TEST_STRINGS, TEST_SEED)
    singles = clips["test_raw"][:limit] if limit else clips["test_raw"]
    return strings, Recordings([w for w, _ in singles], [DIGIT_WORDS[d] for _, d in singles])


# ---- batches --------------------------------------------------------------------------------

def batch_features(waves, augment: bool = False, generator=None):
    """Padded normalised log-mels (N, T, n_mels) and their lengths (N,)."""
    feats = [features(torch.from_numpy(w)) for w in waves]
    if augment:
        feats = [spec_augment(f, generator) for f in feats]
    lengths = torch.tensor([len(f) for f in feats])
    return torch.nn.utils.rnn.pad_sequence(feats, batch_first=True), lengths


def batch_targets(texts) -> torch.Tensor:
    """Character ids ending with <eos>, padded with <pad>: (N, L)."""
    return torch.nn.utils.rnn.pad_sequence([torch.tensor(encode(t)) for t in texts], batch_first=True,
                                           padding_value=PAD)


@torch.no_grad()
def transcribe_all(model, waves, device, beam: int = 0, batch_size: int = 64) -> list[str]:
    """Transcripts of many waves: greedy (beam=0) in batches of similar length, or beam search."""
    model.eval()
    order = np.argsort([len(w) for w in waves], kind="stable")
    out = [""] * len(waves)
    for i in range(0, len(order), batch_size):
        idx = order[i:i + batch_size]
        feats, lengths = batch_features([waves[j] for j in idx])
        feats, lengths = feats.to(device), lengths.to(device)
        hyps, _ = (model.beam_search(feats, lengths, beam, MAX_LEN) if beam else model.greedy(feats, lengths, MAX_LEN))
        for j, ids in zip(idx, hyps):
            out[j] = text(ids)
    return out


def error_rates(refs: list[str], hyps: list[str]) -> dict:
    """Word and character error rates over a whole set (jiwer: edits / reference length)."""
    return {"wer": jiwer.wer(refs, hyps), "cer": jiwer.cer(refs, hyps)}


def held_out_metrics(model, strings, singles, device, beam: int) -> dict:
    """WER and CER on the held-out speaker's strings, error rate on his single digits, greedy
    and with beam search; a few mistakes to show."""
    out = {}
    for name, width in (("greedy", 0), ("beam", beam)):
        start = time.perf_counter()
        hyps = transcribe_all(model, strings.waves, device, width)
        rates = error_rates(strings.refs, hyps)
        single_hyps = transcribe_all(model, singles.waves, device, width)
        out[f"test_wer_{name}"] = round(rates["wer"], 5)
        out[f"test_cer_{name}"] = round(rates["cer"], 5)
        wrong = [h != r for h, r in zip(single_hyps, singles.refs)]
        out[f"single_digit_error_{name}"] = round(float(np.mean(wrong)), 5)
        out[f"decode_seconds_{name}"] = round(time.perf_counter() - start, 1)
        if name == "beam":
            out["mistakes"] = [{"reference": r, "transcript": h} for r, h in zip(strings.refs, hyps) if r != h][:20]
    return out


# ---- training -------------------------------------------------------------------------------

def most_digits(epoch: int) -> int:
    """A curriculum: strings of at most 2 digits in the first epoch, one more each epoch up
    to 7. Short strings need almost no alignment, so the speller learns to listen first."""
    return min(MAX_DIGITS, epoch + 1)


def teacher_forcing(epoch: int, epochs: int, final: float) -> float:
    """1.0 (always the true previous character) for the first fifth of training, then down
    linearly to `final` at the last epoch."""
    start = max(1, round(0.2 * epochs))
    if epoch <= start or epochs <= start:
        return 1.0
    return round(1.0 - (1.0 - final) * (epoch - start) / (epochs - start), 4)


def train_epoch(model, optimizer, scheduler, clips, args, epoch, device) -> dict:
    model.train()
    gen = seed_epoch(args.seed, epoch)
    rng = np.random.default_rng(int(torch.randint(0, 2 ** 31 - 1, (1,), generator=gen)))
    tf = teacher_forcing(epoch, args.epochs, args.final_teacher_forcing)
    steps = math.ceil(args.utterances / args.batch_size)
    total = tokens = ctc_total = 0
    bar = tqdm(range(steps), desc=f"speech epoch {epoch}/{args.epochs}", leave=False)
    for _ in bar:
        # A batch shares its number of digits, so little time goes into padding. One in
        # twenty holds no digits at all: silence or noise, to be transcribed as nothing.
        count = 0 if rng.random() < NOISE_BATCHES else int(rng.integers(1, most_digits(epoch) + 1))
        strings = [rng.integers(0, 10, count).tolist() for _ in range(args.batch_size)]
        waves = [build_utterance(clips, d, rng, augment=True) if count else noise_clip(rng) for d in strings]
        feats, lengths = batch_features(waves, augment=True, generator=gen)
        targets = batch_targets([digits_to_text(d) for d in strings]).to(device)
        logits, _, digit_log_probs, listened = model(feats.to(device), lengths.to(device), targets, teacher_forcing=tf)
        spelling = F.cross_entropy(logits.reshape(-1, logits.shape[2]), targets.reshape(-1), ignore_index=PAD,
                                   label_smoothing=args.label_smoothing)
        ctc = digit_ctc_loss(digit_log_probs, listened, strings)
        loss = (1 - args.ctc_weight) * spelling + args.ctc_weight * ctc
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        optimizer.step()
        scheduler.step()
        n = int((targets != PAD).sum())
        total += spelling.item() * n
        tokens += n
        ctc_total += ctc.item()
        bar.set_postfix(loss=f"{total / tokens:.3f}", ctc=f"{ctc.item():.3f}", tf=tf)
    return {"train_loss": round(total / tokens, 4), "train_digit_ctc": round(ctc_total / steps, 4),
            "teacher_forcing": tf, "most_digits": most_digits(epoch), "lr": scheduler.get_last_lr()[0]}


def digit_ctc_loss(log_probs, lengths, strings) -> torch.Tensor:
    """CTC over the digits (blank 0, digit d is d + 1) per listener frame, averaged per
    digit; a string of no digits (noise) must be all blank."""
    targets = torch.tensor([d + 1 for s in strings for d in s], dtype=torch.long)
    target_lengths = torch.tensor([len(s) for s in strings])
    losses = F.ctc_loss(log_probs, targets, lengths.cpu(), target_lengths, blank=0, reduction="none",
                        zero_infinity=True)  # (N,)
    return (losses / target_lengths.clamp(min=1).to(losses.device)).mean()


def run(args) -> dict:
    device = pick_device(args.device)
    clips = load_clips(args.data_dir)
    strings, singles = held_out_sets(clips, args.limit)
    if args.eval:
        model = load_model(device, args.checkpoint_dir)
        test = held_out_metrics(model, strings, singles, device, args.beam)
        return {"test_speaker": TEST_SPEAKER, "test_strings": len(strings.refs), "test_singles": len(singles.refs),
                **{k: v for k, v in test.items() if k != "mistakes"}}

    seed_everything(args.seed)
    val_waves, val_refs = fixed_set(clips["val"], min(args.limit or VAL_STRINGS, VAL_STRINGS), VAL_SEED)
    model = ListenAttendSpell(**MODEL).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    steps = args.epochs * math.ceil(args.utterances / args.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=steps, pct_start=0.15)
    root = Path(args.checkpoint_dir or checkpoints.CHECKPOINTS)
    resume_dir = root / checkpoint_name() / "resume"
    config = {k: getattr(args, k) for k in ("epochs", "lr", "batch_size", "utterances", "label_smoothing",
                                            "final_teacher_forcing", "ctc_weight", "clip", "seed", "limit")}
    start_epoch, history = load_state(resume_dir, model, optimizer, scheduler, config) if args.resume else (0, [])
    elapsed_before = history[-1]["wall_time_s"] if history else 0.0

    start = time.perf_counter()
    for epoch in range(start_epoch + 1, args.epochs + 1):
        stats = train_epoch(model, optimizer, scheduler, clips["train"], args, epoch, device)
        val = error_rates(val_refs, transcribe_all(model, val_waves, device))
        # Ties go to the later epoch: validation strings come from speakers seen in training
        # and soon reach zero errors, while the test speaker keeps improving for longer.
        if not history or (val["wer"], val["cer"]) <= min((h["val_wer"], h["val_cer"]) for h in history):
            resume_dir.mkdir(parents=True, exist_ok=True)
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(resume_dir / "best.safetensors"))
        history.append({"epoch": epoch, **stats, "val_wer": round(val["wer"], 5), "val_cer": round(val["cer"], 5),
                        "wall_time_s": round(elapsed_before + time.perf_counter() - start, 1)})
        tqdm.write(json.dumps(history[-1]))
        save_state(resume_dir, model, optimizer, scheduler, epoch, history, config)
        if args.stop_after and epoch >= args.stop_after:
            return {"stopped_after_epoch": epoch}
    wall_time = elapsed_before + time.perf_counter() - start

    best = min(reversed(history), key=lambda h: (h["val_wer"], h["val_cer"]))
    model.load_state_dict(load_file(str(resume_dir / "best.safetensors")))
    test = held_out_metrics(model, strings, singles, device, args.beam)
    metrics = {
        "test_speaker": TEST_SPEAKER, "test_strings": len(strings.refs), "test_singles": len(singles.refs), **test,
        "best_epoch": best["epoch"], "val_wer": best["val_wer"], "val_cer": best["val_cer"],
        "val_strings": len(val_refs), "train_utterances": args.epochs * args.utterances,
        "parameters": sum(p.numel() for p in model.parameters()), "train_wall_time_s": round(wall_time, 1),
        "device": str(device), "seed": args.seed, "command": checkpoints.command_line("train.speech"),
        "hyperparameters": {k: v for k, v in config.items() if k not in ("seed", "limit")} | {"beam": args.beam},
        "history": history,
    }
    checkpoints.save(model.cpu(), checkpoint_name(), metrics, root=args.checkpoint_dir)
    return {k: v for k, v in metrics.items() if k not in ("history", "mistakes", "hyperparameters")}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=30, help="epochs (each a new set of utterances)")
    parser.add_argument("--utterances", type=int, default=3200, help="training utterances made per epoch")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size")
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (one-cycle, Adam)")
    parser.add_argument("--label-smoothing", type=float, default=0.1, help="label smoothing of the character loss")
    parser.add_argument("--final-teacher-forcing", type=float, default=0.8,
                        help="teacher forcing rate at the last epoch (1.0 for the first fifth of training)")
    parser.add_argument("--ctc-weight", type=float, default=0.3,
                        help="weight of the listener's auxiliary digit CTC loss (0: plain LAS)")
    parser.add_argument("--clip", type=float, default=1.0, help="gradient norm clipping")
    parser.add_argument("--beam", type=int, default=4, help="beam width for the test metrics")
    add_run_arguments(parser)
    args = parse_run_arguments(parser, argv)
    if args.limit:
        args.utterances = min(args.utterances, args.limit)
    result = run(args)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
