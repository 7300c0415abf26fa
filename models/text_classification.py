"""Chinese headline classifiers over characters: a character vocabulary (built from the
training split and saved beside each checkpoint), TextCNN, a BiLSTM, and the seed's
hand-written LSTM cell with explicit gates.

Every model takes token ids (N, T) (0 = padding), or (N, T, 2) with each character's
jieba word beside it, and returns (N, num_classes) logits. With bigram_buckets or
trigram_buckets > 0 each position also gets an embedding of the character n-gram starting
there (hashed into that many buckets, as FastText does), added to the character's, and with
word_vocab_size > 0 the embedding of its word.

    net, vocab = load_model("textcnn")                     # checkpoints/text_classification/textcnn/
    probs = predict(net, vocab.batch(["央行宣布下调存款准备金率"], MAX_LEN))   # (1, 10)
"""
import json
import logging
import unicodedata
from collections import Counter
from pathlib import Path

import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from core import checkpoints

PAD, UNK = 0, 1
MAX_LEN = 40  # characters read of a title; the longest training title has 38


def clean_text(text: str) -> str:
    """NFKC (full-width letters and digits become ASCII), and nothing one cannot see: format
    characters (Unicode category Cf: zero-width spaces and joiners, soft hyphens, byte-order
    marks, bidi marks), control characters other than whitespace and lone surrogates (not
    text at all). Left in, each became an unknown token between the characters around it.
    No training, validation or test title has any of them."""
    text = "".join(c for c in text if unicodedata.category(c) not in ("Cf", "Cs"))
    return "".join(c for c in unicodedata.normalize("NFKC", text)
                   if unicodedata.category(c) not in ("Cf", "Cc") or c.isspace())


def normalize_text(text: str) -> str:
    """clean_text, lower case, and whitespace removed, since Chinese has none between words
    and headlines use it only as punctuation."""
    return "".join(clean_text(text).lower().split())


class Vocab:
    """Characters seen at least `min_freq` times in the training titles get an id, the rest
    map to UNK. With words, jieba's segmentation of each title is looked up the same way and
    every character also carries the id of the word it belongs to: batches are then
    (N, T, 2), [..., 0] the characters and [..., 1] their words."""

    def __init__(self, chars: list[str], words: list[str] | None = None):
        self.chars = ["<pad>", "<unk>", *chars]
        self.index = {c: i for i, c in enumerate(self.chars)}
        self.words = None if words is None else ["<pad>", "<unk>", *words]
        self.word_index = None if words is None else {w: i for i, w in enumerate(self.words)}

    @classmethod
    def build(cls, titles, min_freq: int = 2, words: bool = False) -> "Vocab":
        chars, word_counts = Counter(), Counter()
        for title in titles:
            chars.update(normalize_text(title))
            if words:
                word_counts.update(segment(title))
        keep = lambda counts: sorted(t for t, n in counts.items() if n >= min_freq)
        return cls(keep(chars), keep(word_counts) if words else None)

    def __len__(self):
        return len(self.chars)

    @property
    def num_words(self) -> int:
        return len(self.words) if self.words else 0

    def tokens(self, text: str) -> list[str]:
        return list(normalize_text(text))

    def encode(self, text: str, max_len: int) -> list[int] | list[tuple[int, int]]:
        chars = [self.index.get(c, UNK) for c in self.tokens(text)][:max_len]
        if self.words is None:
            return chars
        words = [self.word_index.get(w, UNK) for w in segment(text) for _ in w][:max_len]
        return list(zip(chars, words))

    def batch(self, texts, max_len: int, min_len: int = 1) -> torch.Tensor:
        """Token ids (N, T), or (N, T, 2) with words, padded with 0 to the longest text (at
        least min_len)."""
        ids = [self.encode(t, max_len) for t in texts]
        width = max(min_len, max((len(i) for i in ids), default=0))
        out = torch.zeros(len(ids), width, *([] if self.words is None else [2]), dtype=torch.long)
        for row, seq in enumerate(ids):
            if seq:
                out[row, :len(seq)] = torch.tensor(seq, dtype=torch.long)
        return out

    def save(self, path: Path) -> None:
        saved = {"chars": self.chars[2:]} | ({} if self.words is None else {"words": self.words[2:]})
        Path(path).write_text(json.dumps(saved, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> "Vocab":
        saved = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(saved["chars"], saved.get("words"))


def segment(text: str) -> list[str]:
    """jieba's words of the normalised text (its dictionary ships inside the package; the
    first call spends about a second building its prefix tree)."""
    import jieba
    jieba.setLogLevel(logging.WARNING)
    return jieba.lcut(normalize_text(text))


def chars_of(ids: torch.Tensor) -> torch.Tensor:
    """The character ids (N, T) of a batch with or without word ids."""
    return ids[..., 0] if ids.dim() == 3 else ids


class TokenEmbedding(nn.Module):
    """The embedding of each character, plus its hashed character bigram and trigram (the
    n-grams starting there, hashed into buckets as FastText does) and its jieba word, when
    the model has them. Initialised small (std 0.1): at nn.Embedding's N(0, 1) the sums of
    several tables saturated the TextCNN, whose loss then stayed at chance for an epoch."""

    def __init__(self, vocab_size: int, dim: int, bigram_buckets: int = 0, trigram_buckets: int = 0,
                 word_vocab_size: int = 0, dropout: float = 0.0):
        super().__init__()
        self.vocab_size = vocab_size
        self.dropout = nn.Dropout(dropout)
        self.chars = nn.Embedding(vocab_size, dim, padding_idx=PAD)
        self.bigrams = nn.Embedding(bigram_buckets, dim) if bigram_buckets else None
        self.trigrams = nn.Embedding(trigram_buckets, dim) if trigram_buckets else None
        self.words = nn.Embedding(word_vocab_size, dim, padding_idx=PAD) if word_vocab_size else None
        for table in (self.chars, self.bigrams, self.trigrams, self.words):
            if table is not None:
                nn.init.normal_(table.weight, std=0.1)
                if table.padding_idx is not None:
                    nn.init.zeros_(table.weight[table.padding_idx])

    def forward(self, ids):
        chars = chars_of(ids)
        real = (chars != PAD).unsqueeze(2)
        x = self.chars(chars)  # (N, T, dim)
        second = F.pad(chars[:, 1:], (0, 1))  # the next character (PAD after the last)
        if self.bigrams is not None:
            x = x + self.bigrams((chars * self.vocab_size + second) % self.bigrams.num_embeddings) * real
        if self.trigrams is not None:
            third = F.pad(chars[:, 2:], (0, 2))
            trigram = ((chars * self.vocab_size + second) * self.vocab_size + third) % self.trigrams.num_embeddings
            x = x + self.trigrams(trigram) * real
        if self.words is not None:
            x = x + self.words(ids[..., 1])
        return self.dropout(x)


class TextCNN(nn.Module, PyTorchModelHubMixin):
    """Kim (2014): convolutions of several widths over the embedded characters, each
    max-pooled over time, concatenated, then a hidden dense layer and the classes. With
    pooling="max+mean" each filter also gives its mean over the real windows: the max says
    whether a pattern occurs, the mean how much of the headline is about it (+0.2 points
    on validation)."""

    def __init__(self, vocab_size: int, num_classes: int = 10, embed_dim: int = 128, widths=(2, 3, 4),
                 filters: int = 256, hidden: int = 256, dropout: float = 0.5, bigram_buckets: int = 0,
                 trigram_buckets: int = 0, word_vocab_size: int = 0, embed_dropout: float = 0.1,
                 pooling: str = "max"):
        super().__init__()
        if pooling not in ("max", "max+mean"):
            raise ValueError(f"pooling must be 'max' or 'max+mean', not {pooling!r}")
        self.min_len = max(widths)
        self.pooling = pooling
        pooled_size = filters * len(widths) * (2 if pooling == "max+mean" else 1)
        self.embed = TokenEmbedding(vocab_size, embed_dim, bigram_buckets, trigram_buckets, word_vocab_size,
                                    embed_dropout)
        self.convs = nn.ModuleList(nn.Conv1d(embed_dim, filters, w) for w in widths)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(pooled_size, hidden),
                                        nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, num_classes))

    def forward(self, ids):
        # Windows start at every real character (the last ones run into padding), and only
        # those count in the max: extra padding never changes the answer.
        lengths = (chars_of(ids) != PAD).sum(1, keepdim=True).clamp(min=1)  # (N, 1)
        padding = (0, 0, 0, self.min_len - 1) if ids.dim() == 3 else (0, self.min_len - 1)
        x = self.embed(F.pad(ids, padding)).transpose(1, 2)  # (N, embed_dim, T + min_len - 1)
        pooled = []
        for conv in self.convs:
            h = F.relu(conv(x))[:, :, :ids.shape[1]]  # (N, filters, T): the window starting at each position
            starts = (torch.arange(h.shape[2], device=ids.device).unsqueeze(0) < lengths).unsqueeze(1)  # (N, 1, T)
            h = h * starts
            pooled.append(h.amax(dim=2))  # ReLU >= 0, so masked zeros never win
            if self.pooling == "max+mean":
                pooled.append(h.sum(dim=2) / lengths)
        return self.classifier(torch.cat(pooled, dim=1))


class BiLSTMClassifier(nn.Module, PyTorchModelHubMixin):
    """Embedded characters through a bidirectional LSTM (packed, so padding never enters
    the backward direction), max-pooled over the real positions, then dense layers."""

    def __init__(self, vocab_size: int, num_classes: int = 10, embed_dim: int = 128, hidden: int = 128,
                 layers: int = 2, dropout: float = 0.5, bigram_buckets: int = 0,
                 trigram_buckets: int = 0, word_vocab_size: int = 0, embed_dropout: float = 0.1):
        super().__init__()
        self.embed = TokenEmbedding(vocab_size, embed_dim, bigram_buckets, trigram_buckets, word_vocab_size,
                                    embed_dropout)
        self.lstm = nn.LSTM(embed_dim, hidden, num_layers=layers, batch_first=True, bidirectional=True,
                            dropout=dropout if layers > 1 else 0.0)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * hidden, hidden), nn.ReLU(inplace=True),
                                        nn.Dropout(dropout), nn.Linear(hidden, num_classes))

    def forward(self, ids):
        lengths = (chars_of(ids) != PAD).sum(1).clamp(min=1)
        packed = nn.utils.rnn.pack_padded_sequence(self.embed(ids), lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, padding_value=float("-inf"))  # (N, T', 2h)
        return self.classifier(out.amax(dim=1))


class LSTMCellByHand(nn.Module):
    """The seed's LSTM cell, gate by gate (same weight layout as torch.nn.LSTM: input,
    forget, cell candidate, output):
        i = sigmoid(W_ii x + W_hi h + b_i)      f = sigmoid(W_if x + W_hf h + b_f)
        g = tanh(W_ig x + W_hg h + b_g)         o = sigmoid(W_io x + W_ho h + b_o)
        c' = f * c + i * g                      h' = o * tanh(c')
    """

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.zeros(4 * hidden_size))
        self.bias_hh = nn.Parameter(torch.zeros(4 * hidden_size))
        bound = hidden_size ** -0.5
        for w in (self.weight_ih, self.weight_hh):
            nn.init.uniform_(w, -bound, bound)
        with torch.no_grad():
            self.bias_ih[hidden_size:2 * hidden_size] = 1.0  # remember by default at the start

    def forward(self, x, state):
        h, c = state
        gates = x @ self.weight_ih.T + self.bias_ih + h @ self.weight_hh.T + self.bias_hh  # (N, 4h)
        i, f, g, o = gates.chunk(4, dim=1)
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        c = f * c + i * g
        h = o * torch.tanh(c)
        return h, c


class LSTMByHand(nn.Module):
    """One layer, one direction, unrolled over time with LSTMCellByHand. Positions where
    `mask` is False keep the previous state, so padding at the end changes nothing."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.cell = LSTMCellByHand(input_size, hidden_size)

    def forward(self, x, mask=None):
        n, steps, _ = x.shape
        h = c = x.new_zeros(n, self.cell.hidden_size)
        outputs = []
        for t in range(steps):
            h_new, c_new = self.cell(x[:, t], (h, c))
            if mask is not None:
                keep = mask[:, t].unsqueeze(1)
                h_new, c_new = torch.where(keep, h_new, h), torch.where(keep, c_new, c)
            h, c = h_new, c_new
            outputs.append(h)
        return torch.stack(outputs, dim=1), (h, c)  # (N, T, hidden), final state


class TextRNNByHand(nn.Module, PyTorchModelHubMixin):
    """The seed's TextRNN with its hand-written cell: embedding, stacked LSTMByHand layers,
    the last real position's state, a dense layer, the classes."""

    def __init__(self, vocab_size: int, num_classes: int = 10, embed_dim: int = 128, hidden: int = 128,
                 layers: int = 2, dense: int = 128, dropout: float = 0.3, bigram_buckets: int = 0,
                 trigram_buckets: int = 0, word_vocab_size: int = 0, embed_dropout: float = 0.1):
        super().__init__()
        self.embed = TokenEmbedding(vocab_size, embed_dim, bigram_buckets, trigram_buckets, word_vocab_size,
                                    embed_dropout)
        self.layers = nn.ModuleList(LSTMByHand(embed_dim if i == 0 else hidden, hidden) for i in range(layers))
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Sequential(nn.Linear(hidden, dense), nn.ReLU(inplace=True), nn.Dropout(dropout),
                                        nn.Linear(dense, num_classes))

    def forward(self, ids):
        mask = chars_of(ids) != PAD
        x = self.embed(ids)
        for layer in self.layers:
            x, (h, _) = layer(self.dropout(x), mask)
        return self.classifier(h)


MODELS = {"textcnn": TextCNN, "bilstm": BiLSTMClassifier, "textrnn_hand": TextRNNByHand}


# ---- checkpoints and prediction ----------------------------------------------------------------

def checkpoint_name(model: str) -> str:
    return f"text_classification/{model}"


def train_command(model: str) -> str:
    return f"python -m train.text_classification --model {model}"


def load_model(model: str, device="cpu", root=None):
    """A trained classifier (MODELS[model]) and the vocabulary saved beside it."""
    name = checkpoint_name(model)
    net = checkpoints.load(MODELS[model], name, train_command(model), device, root)
    return net, Vocab.load(checkpoints.find(name, root) / "vocab.json")


def trim(ids: torch.Tensor) -> torch.Tensor:
    """Drop the padding columns no title in the batch needs."""
    width = max(1, int((chars_of(ids) != 0).sum(1).max()))
    return ids[:, :width]


@torch.no_grad()
def predict(model, ids: torch.Tensor, device="cpu", batch_size: int = 1000) -> torch.Tensor:
    """Class probabilities (N, num_classes) for token ids (N, T) or (N, T, 2)."""
    model.eval()
    out = []
    for i in range(0, len(ids), batch_size):
        batch = trim(ids[i:i + batch_size])
        out.append(F.softmax(model(batch.to(device)), dim=1).cpu())
    return torch.cat(out)
