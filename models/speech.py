"""Listen, Attend and Spell (Chan et al., 2016) for spoken digit strings, by hand and small
enough for a CPU: log-mel features, a pyramidal BiLSTM listener, dot-product attention
and an LSTMCell speller over characters, with greedy and beam-search decoding.

    feats = features(wave)                                 # 8 kHz float wave (S,) -> (T, n_mels)
    model = load_model()                                   # checkpoints/speech/
    hyps, alignments = model.greedy(feats[None], torch.tensor([len(feats)]))
    text(hyps[0])                                          # "four one nine"

The spoken digit strings it learns from and is tested on are built here too, from single
digits of the Free Spoken Digit Dataset (load_clips, build_utterance).
"""
import math

import numpy as np
import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from core import checkpoints, data

# ---- features --------------------------------------------------------------------------

SAMPLE_RATE = 8000
N_FFT = 256
WIN_LENGTH = 200  # 25 ms
HOP_LENGTH = 80  # 10 ms
N_MELS = 40  # at 8 kHz and a 256-point FFT, more bands would leave the lowest ones empty
TOP_DB = 60.0  # anything quieter than this below the loudest bin is floored (digital silence)


def hz_to_mel(f):
    return 2595.0 * math.log10(1.0 + f / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_centres(n_mels: int = N_MELS, f_min: float = 20.0, f_max: float = SAMPLE_RATE / 2) -> torch.Tensor:
    """The centre frequency (Hz) of each mel band."""
    mels = torch.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2)
    return torch.tensor([mel_to_hz(m) for m in mels.tolist()])[1:-1]


def mel_filterbank(n_mels: int = N_MELS, f_min: float = 20.0, f_max: float = SAMPLE_RATE / 2) -> torch.Tensor:
    """(n_mels, N_FFT // 2 + 1) triangular filters on the HTK mel scale, each peaking at 1."""
    mels = torch.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2)
    edges = torch.tensor([mel_to_hz(m) for m in mels.tolist()])  # (n_mels + 2,)
    bins = torch.linspace(0, SAMPLE_RATE / 2, N_FFT // 2 + 1)  # (F,)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins - lower) / (centre - lower)
    falling = (upper - bins) / (upper - centre)
    return torch.minimum(rising, falling).clamp(min=0)


_FILTERS = {}


def log_mel(wave: torch.Tensor, n_mels: int = N_MELS) -> torch.Tensor:
    """Log-mel spectrogram of a mono 8 kHz wave (S,) in [-1, 1]: (T, n_mels), T = 1 + S // 80."""
    if n_mels not in _FILTERS:
        _FILTERS[n_mels] = mel_filterbank(n_mels)
    wave = wave.float()
    if len(wave) < WIN_LENGTH:
        wave = F.pad(wave, (0, WIN_LENGTH - len(wave)))
    spec = torch.stft(wave, N_FFT, HOP_LENGTH, WIN_LENGTH, torch.hann_window(WIN_LENGTH), center=True,
                      return_complex=True)  # (F, T)
    mel = _FILTERS[n_mels] @ spec.abs().pow(2)  # (n_mels, T)
    logs = mel.clamp(min=1e-10).log()
    logs = logs.clamp(min=logs.max() - TOP_DB / 10 * math.log(10))
    return logs.T  # (T, n_mels)


def normalize(feats: torch.Tensor) -> torch.Tensor:
    """Per-utterance mean and variance normalisation of each band: removes the recording's
    loudness and microphone colour, which differ more between speakers than the words do."""
    return (feats - feats.mean(0)) / feats.std(0, correction=0).clamp(min=1e-3)


def features(wave: torch.Tensor, n_mels: int = N_MELS) -> torch.Tensor:
    """What the listener reads: the normalised log-mel spectrogram (T, n_mels)."""
    return normalize(log_mel(wave, n_mels))


def spec_augment(feats: torch.Tensor, generator=None, freq_masks: int = 2, freq_width: int = 6,
                 time_width: int = 8, frames_per_time_mask: int = 100) -> torch.Tensor:
    """SpecAugment (Park et al., 2019) without time warping: zero (the mean, after
    normalisation) a few random bands and short spans of frames. Time masks are kept much
    shorter than a digit (about 30 frames), so a mask never erases a whole word."""
    feats = feats.clone()
    t, n = feats.shape

    def rand(high):
        return int(torch.randint(0, max(1, high), (1,), generator=generator))

    for _ in range(freq_masks):
        width = rand(freq_width + 1)
        start = rand(n - width + 1)
        feats[:, start:start + width] = 0
    for _ in range(1 + t // frames_per_time_mask):
        width = rand(time_width + 1)
        start = rand(t - width + 1)
        feats[start:start + width] = 0
    return feats


# ---- characters --------------------------------------------------------------------------

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
PAD, SOS, EOS = 0, 1, 2
VOCAB = ("<pad>", "<sos>", "<eos>", " ", *sorted(set("".join(DIGIT_WORDS))))
INDEX = {c: i for i, c in enumerate(VOCAB)}


def digits_to_text(digits) -> str:
    """[4, 1, 9] -> "four one nine"."""
    return " ".join(DIGIT_WORDS[int(d)] for d in digits)


def text_to_digits(transcript: str) -> str:
    """"four one nine" -> "419"; a word that is no digit becomes "?"."""
    return "".join(str(DIGIT_WORDS.index(w)) if w in DIGIT_WORDS else "?" for w in transcript.split())


def encode(text: str) -> list[int]:
    """Character ids of a transcript, ending with <eos>."""
    return [INDEX[c] for c in text] + [EOS]


def text(ids) -> str:
    """Character ids back to a transcript (stops at <eos>, skips <pad> and <sos>)."""
    out = []
    for i in ids:
        i = int(i)
        if i == EOS:
            break
        if i > EOS:
            out.append(VOCAB[i])
    return "".join(out)


# ---- the model -----------------------------------------------------------------------------

class LockedDropout(nn.Module):
    """Variational dropout (Gal & Ghahramani): one mask per sequence, the same at every
    time step, so a recurrent layer sees a consistently thinned input."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x):  # (N, T, D)
        if not self.training or self.p == 0:
            return x
        mask = x.new_empty(x.shape[0], 1, x.shape[2]).bernoulli_(1 - self.p) / (1 - self.p)  # (N, 1, D)
        return x * mask


def reverse_padded(x, lengths):
    """Reverse each sequence's first lengths[i] steps of x (N, T, D); padding stays at the end."""
    t = torch.arange(x.shape[1], device=x.device)[None]  # (1, T)
    index = lengths.to(x.device)[:, None] - 1 - t  # (N, T)
    index = torch.where(index >= 0, index, t)
    return x.gather(1, index.unsqueeze(2).expand_as(x))


class BiLSTM(nn.Module):
    """A bidirectional LSTM over padded sequences whose backward direction starts at each
    sequence's own last frame, so padding never enters it. Two one-way nn.LSTMs on dense
    tensors, not one packed bidirectional LSTM: on a CPU the packed one's backward pass is
    about ten times slower. Padded positions come out as zeros."""

    def __init__(self, input_size: int, hidden: int):
        super().__init__()
        self.forward_lstm = nn.LSTM(input_size, hidden, batch_first=True)
        self.backward_lstm = nn.LSTM(input_size, hidden, batch_first=True)

    def forward(self, x, lengths):  # x (N, T, input_size)
        forward, _ = self.forward_lstm(x)  # (N, T, h)
        backward, _ = self.backward_lstm(reverse_padded(x, lengths))  # (N, T, h), time reversed
        out = torch.cat([forward, reverse_padded(backward, lengths)], dim=2)  # (N, T, 2h)
        real = torch.arange(x.shape[1], device=x.device)[None] < lengths.to(x.device)[:, None]  # (N, T)
        return out * real.unsqueeze(2)


class PyramidalBiLSTM(nn.Module):
    """Concatenate each pair of adjacent frames (time / 2, features x 2), then a BiLSTM.
    An odd length gets one zero frame first, so its last frame is kept, not dropped."""

    def __init__(self, input_size: int, hidden: int):
        super().__init__()
        self.lstm = BiLSTM(2 * input_size, hidden)

    def forward(self, x, lengths):
        n, t, d = x.shape
        x = x * (torch.arange(t, device=x.device)[None] < lengths.to(x.device)[:, None]).unsqueeze(2)
        if t % 2:
            x = F.pad(x, (0, 0, 0, 1))  # (N, T + 1, D)
        x = x.reshape(n, x.shape[1] // 2, 2 * d)  # (N, ceil(T / 2), 2D)
        lengths = (lengths + 1) // 2
        return self.lstm(x, lengths), lengths


class Listener(nn.Module):
    """A BiLSTM over the frames, then pyramidal BiLSTMs, each halving the time steps: with
    three, one listener frame covers 80 ms (a digit is about 4 of them). The output is layer
    normalised: four LSTM layers at their initial weights pass on almost no variation, and
    the speller would long ignore it and learn only how digits are spelled."""

    def __init__(self, n_mels: int, hidden: int, pyramid_layers: int, dropout: float):
        super().__init__()
        self.bottom = BiLSTM(n_mels, hidden)
        self.pyramid = nn.ModuleList(PyramidalBiLSTM(2 * hidden, hidden) for _ in range(pyramid_layers))
        self.norm = nn.LayerNorm(2 * hidden)
        self.dropout = LockedDropout(dropout)

    def forward(self, feats, lengths):  # feats (N, T, n_mels)
        x = self.bottom(feats, lengths)  # (N, T, 2h)
        for layer in self.pyramid:
            x, lengths = layer(self.dropout(x), lengths)  # (N, T / 2, 2h) each time
        return self.dropout(self.norm(x)), lengths


class Attention(nn.Module):
    """Scaled dot-product attention of the speller's state over the listener's frames,
    through learned key, value and query projections. Padded frames get zero weight."""

    def __init__(self, listener_dim: int, query_dim: int, dim: int):
        super().__init__()
        self.key = nn.Linear(listener_dim, dim)
        self.value = nn.Linear(listener_dim, dim)
        self.query = nn.Linear(query_dim, dim)

    def project(self, listened):  # (N, T, listener_dim)
        return self.key(listened), self.value(listened)  # (N, T, dim) each

    def forward(self, state, keys, values, mask):  # state (N, query_dim), mask (N, T) True = real frame
        query = self.query(state).unsqueeze(2)  # (N, dim, 1)
        energy = torch.bmm(keys, query).squeeze(2) / math.sqrt(keys.shape[2])  # (N, T)
        weights = F.softmax(energy.masked_fill(~mask, float("-inf")), dim=1)  # (N, T)
        context = torch.bmm(weights.unsqueeze(1), values).squeeze(1)  # (N, dim)
        return context, weights


class Speller(nn.Module):
    """LSTMCells over characters: each step reads the previous character and the previous
    context, attends with the new state, and predicts the next character from both."""

    def __init__(self, vocab_size: int, listener_dim: int, embed_dim: int, hidden: int, layers: int,
                 attention_dim: int, dropout: float):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD)
        self.cells = nn.ModuleList(nn.LSTMCell(embed_dim + attention_dim if i == 0 else hidden, hidden)
                                   for i in range(layers))
        self.attention = Attention(listener_dim, hidden, attention_dim)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Sequential(nn.Linear(hidden + attention_dim, hidden), nn.Tanh(), nn.Dropout(dropout),
                                    nn.Linear(hidden, vocab_size))

    def start(self, n: int, device):
        """Zero LSTM states and a zero first context for n sequences."""
        zeros = torch.zeros(n, self.cells[0].hidden_size, device=device)
        return [(zeros, zeros) for _ in self.cells], torch.zeros(n, self.attention.value.out_features, device=device)

    def step(self, token, states, context, keys, values, mask):  # token (N,), context (N, a)
        x = torch.cat([self.embed(token), context], dim=1)  # (N, e + a)
        new_states = []
        for i, cell in enumerate(self.cells):
            h, c = cell(self.dropout(x) if i else x, states[i])
            new_states.append((h, c))
            x = h  # (N, hidden)
        context, weights = self.attention(x, keys, values, mask)  # (N, a), (N, T)
        logits = self.output(torch.cat([x, context], dim=1))  # (N, vocab)
        return logits, new_states, context, weights


class ListenAttendSpell(nn.Module, PyTorchModelHubMixin):
    """Listener, attention and speller together. The constructor's arguments are the
    checkpoint's config.json.

    Training also reads `digit_ctc`: a CTC output over digit words (blank = 0, digit d =
    d + 1) on the listener's frames, an auxiliary loss as in joint CTC-attention training
    (Kim, Hori & Watanabe, 2017). It tells the listener early where each digit is, which
    attention alone learns slowly; decoding uses the speller only."""

    def __init__(self, n_mels: int = N_MELS, listener_hidden: int = 96, pyramid_layers: int = 3,
                 embed_dim: int = 32, speller_hidden: int = 128, speller_layers: int = 2, attention_dim: int = 96,
                 dropout: float = 0.2, vocab_size: int = len(VOCAB)):
        super().__init__()
        self.n_mels = n_mels
        self.listener = Listener(n_mels, listener_hidden, pyramid_layers, dropout)
        self.speller = Speller(vocab_size, 2 * listener_hidden, embed_dim, speller_hidden, speller_layers,
                               attention_dim, dropout)
        self.digit_ctc = nn.Linear(2 * listener_hidden, len(DIGIT_WORDS) + 1)

    def attend_to(self, listened, lengths):
        """Keys, values (N, T', a) and the mask of real listener frames (N, T')."""
        keys, values = self.speller.attention.project(listened)
        mask = torch.arange(listened.shape[1], device=listened.device)[None] < lengths.to(listened.device)[:, None]
        return keys, values, mask

    def listen(self, feats, lengths):
        """The listener's keys, values and mask for features (N, T, n_mels)."""
        return self.attend_to(*self.listener(feats, lengths))

    def forward(self, feats, lengths, targets, teacher_forcing: float = 1.0):
        """Logits (N, L, vocab) for targets (N, L) (ending with <eos>, padded with <pad>),
        attention weights (N, L, T'), and for the auxiliary loss the digit CTC's log-probs
        (T', N, 11) and the listener lengths (N,). With teacher_forcing < 1 each sequence
        feeds back its own previous guess instead of the true character with probability
        1 - teacher_forcing (scheduled sampling), so the speller learns to recover from its
        mistakes."""
        listened, listened_lengths = self.listener(feats, lengths)  # (N, T', 2h)
        keys, values, mask = self.attend_to(listened, listened_lengths)
        n, steps = targets.shape
        states, context = self.speller.start(n, feats.device)
        token = torch.full((n,), SOS, dtype=torch.long, device=feats.device)
        all_logits, all_weights = [], []
        for i in range(steps):
            logits, states, context, weights = self.speller.step(token, states, context, keys, values, mask)
            all_logits.append(logits)
            all_weights.append(weights)
            token = targets[:, i]
            if teacher_forcing < 1:
                guess = torch.rand(n, device=feats.device) >= teacher_forcing
                token = torch.where(guess, logits.detach().argmax(1), token)
        digit_log_probs = F.log_softmax(self.digit_ctc(listened), dim=2).transpose(0, 1)  # (T', N, 11)
        return torch.stack(all_logits, 1), torch.stack(all_weights, 1), digit_log_probs, listened_lengths

    @torch.no_grad()
    def greedy(self, feats, lengths, max_len: int = 60):
        """The most likely character at each step, for a batch: (list of character-id lists
        without <eos>, list of attention weights (steps, T'_i))."""
        keys, values, mask = self.listen(feats, lengths)
        n = feats.shape[0]
        states, context = self.speller.start(n, feats.device)
        token = torch.full((n,), SOS, dtype=torch.long, device=feats.device)
        tokens, weights = [], []
        done = torch.zeros(n, dtype=torch.bool, device=feats.device)
        for _ in range(max_len):
            logits, states, context, w = self.speller.step(token, states, context, keys, values, mask)
            token = logits.argmax(1)
            tokens.append(token)
            weights.append(w)
            done |= token == EOS
            if done.all():
                break
        tokens, weights = torch.stack(tokens, 1), torch.stack(weights, 1)  # (N, steps), (N, steps, T')
        hyps, alignments = [], []
        listener_lengths = mask.sum(1)
        for i in range(n):
            ids = tokens[i].tolist()
            end = ids.index(EOS) if EOS in ids else len(ids)
            hyps.append(ids[:end])
            alignments.append(weights[i, :end + 1, :listener_lengths[i]].cpu())
        return hyps, alignments

    @torch.no_grad()
    def beam_search(self, feats, lengths, beam: int = 4, max_len: int = 60):
        """Beam search, one utterance at a time, the beams of one utterance as a batch.
        Finished hypotheses are ranked by their mean log-probability per character, so that
        longer strings are not penalised for their length. Returns what greedy() returns
        (with beam=1, the same transcripts)."""
        keys, values, mask = self.listen(feats, lengths)
        hyps, alignments = [], []
        for i in range(feats.shape[0]):
            real = int(mask[i].sum())
            ids, weights = self._beam_one(keys[i:i + 1, :real], values[i:i + 1, :real], mask[i:i + 1, :real],
                                          beam, max_len)
            hyps.append(ids)
            alignments.append(weights)
        return hyps, alignments

    def _beam_one(self, keys, values, mask, beam, max_len):
        device = keys.device
        states, context = self.speller.start(1, device)
        seqs = torch.full((1, 1), SOS, dtype=torch.long, device=device)  # (k, t)
        scores = torch.zeros(1, device=device)  # (k,)
        history = torch.zeros(1, 0, keys.shape[1], device=device)  # (k, t, T')
        finished = []  # (mean log-prob, ids, weights)
        for step in range(max_len):
            k = seqs.shape[0]
            logits, states, context, w = self.speller.step(seqs[:, -1], states, context, keys.expand(k, -1, -1),
                                                           values.expand(k, -1, -1), mask.expand(k, -1))
            logp = F.log_softmax(logits, dim=1)
            logp[:, PAD] = logp[:, SOS] = float("-inf")
            total = (scores[:, None] + logp).view(-1)  # (k * vocab,)
            top, index = total.topk(min(2 * beam, total.numel()))
            origin, token = index // logp.shape[1], index % logp.shape[1]
            history = torch.cat([history, w[:, None]], dim=1)  # (k, t + 1, T')
            keep = []
            for rank, (score, o, t) in enumerate(zip(top.tolist(), origin.tolist(), token.tolist())):
                if t == EOS:
                    if rank < beam:
                        finished.append((score / (step + 1), seqs[o, 1:].tolist(), history[o].cpu()))
                elif len(keep) < beam:
                    keep.append((o, t, score))
            # Stop once `beam` hypotheses have ended and none still open averages better so far
            # (the stopping rule of Hugging Face's beam search without early stopping).
            best_finished = max((f[0] for f in finished), default=float("-inf"))
            if not keep or (len(finished) >= beam and best_finished >= max(s for _, _, s in keep) / (step + 1)):
                break
            rows = torch.tensor([o for o, _, _ in keep], device=device)
            seqs = torch.cat([seqs[rows], torch.tensor([[t] for _, t, _ in keep], device=device)], dim=1)
            scores = torch.tensor([s for _, _, s in keep], device=device)
            states = [(h[rows], c[rows]) for h, c in states]
            context, history = context[rows], history[rows]
        if not finished:  # nothing ended within max_len: take the best open hypothesis
            finished.append((float(scores[0]) / max_len, seqs[0, 1:].tolist(), history[0].cpu()))
        _, ids, weights = max(finished, key=lambda f: f[0])
        return ids, weights


# ---- spoken digit strings ----------------------------------------------------------------

TEST_SPEAKER = "theo"  # held out: none of his recordings is heard in training
VAL_TAKES = 5  # takes 0-4 of the training speakers: validation
MAX_DIGITS = 7


def trim_silence(wave: np.ndarray, top_db: float = 30.0, margin: float = 0.02) -> np.ndarray:
    """Cut leading and trailing 10 ms frames quieter than top_db below the loudest frame
    (keeping `margin` seconds either side): the pauses between digits are then ours."""
    frame = SAMPLE_RATE // 100
    n = len(wave) // frame
    if n == 0:
        return wave
    energy = 10 * np.log10((wave[:n * frame].reshape(n, frame) ** 2).mean(1) + 1e-12)
    loud = np.flatnonzero(energy > energy.max() - top_db)
    pad = int(margin * SAMPLE_RATE)
    return wave[max(0, loud[0] * frame - pad):min(len(wave), (loud[-1] + 1) * frame + pad)]


def load_clips(root=None, download: bool = True) -> dict:
    """Trimmed float recordings by split and digit: {"train"|"val"|"test": [10 lists]}, and
    the test speaker's recordings as they are ("test_raw": list of (wave, digit))."""
    waves, digits, speakers, takes = data.fsdd(root, download)
    clips = {split: [[] for _ in DIGIT_WORDS] for split in ("train", "val", "test")}
    raw = []
    for wave, digit, speaker, take in zip(waves, digits, speakers, takes):
        wave = wave.astype(np.float32) / 32768.0  # int16 -> [-1, 1)
        split = "test" if speaker == TEST_SPEAKER else "val" if take < VAL_TAKES else "train"
        clips[split][digit].append(trim_silence(wave))
        if split == "test":
            raw.append((wave, int(digit)))
    return dict(clips, test_raw=raw)


def random_digits(rng: np.random.Generator) -> list[int]:
    return rng.integers(0, 10, rng.integers(1, MAX_DIGITS + 1)).tolist()


def build_utterance(clips: list, digits: list[int], rng: np.random.Generator, augment: bool = False) -> np.ndarray:
    """One recording of each digit (drawn from clips[digit]) joined with pauses of 20-300 ms,
    0-400 ms of silence at either end. With augment: each digit +-4 dB, the whole string
    sped up or slowed down (0.85-1.15x, which also shifts the pitch, like another voice),
    -20..+6 dB, and usually white noise 15-40 dB below the speech."""
    def silence(low, high):
        return np.zeros(int(rng.uniform(low, high) * SAMPLE_RATE), np.float32)

    pieces = [silence(0.0, 0.4)]
    for i, d in enumerate(digits):
        clip = clips[d][rng.integers(len(clips[d]))]
        pieces.append(clip * 10 ** (rng.uniform(-4, 4) / 20) if augment else clip)
        if i < len(digits) - 1:
            pieces.append(silence(0.02, 0.3))
    pieces.append(silence(0.0, 0.4))
    wave = np.concatenate(pieces)
    if not augment:
        return wave
    speed = rng.uniform(0.85, 1.15)
    wave = np.interp(np.arange(0, len(wave) - 1, speed), np.arange(len(wave)), wave).astype(np.float32)
    gain = 10 ** (rng.uniform(-20, 6) / 20)
    wave *= gain
    if rng.random() < 0.8:
        speech_rms = gain * np.sqrt(np.mean(np.concatenate(pieces[1:-1]) ** 2) + 1e-12)
        noise_rms = speech_rms * 10 ** (-rng.uniform(15, 40) / 20)
        wave = wave + rng.normal(0, 1, len(wave)).astype(np.float32) * noise_rms
    return np.clip(wave, -1, 1).astype(np.float32)


# ---- the trained model ---------------------------------------------------------------------

def checkpoint_name() -> str:
    return "speech"


def train_command() -> str:
    return "python -m train.speech"


def load_model(device="cpu", root=None) -> ListenAttendSpell:
    return checkpoints.load(ListenAttendSpell, checkpoint_name(), train_command(), device, root)
