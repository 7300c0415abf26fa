"""A Transformer encoder-decoder (Vaswani et al. 2017) written out by hand: multi-head
attention, padding and causal masks, sinusoidal positions, encoder and decoder layers,
greedy decoding and beam search (one position per step, earlier keys and values cached).

Token ids follow the SentencePiece model trained beside it: PAD 0, UNK 1, BOS 2, EOS 3.
Source and target share one vocabulary, so one embedding matrix serves the encoder, the
decoder and (transposed) the output layer (Press & Wolf 2017): a third of the parameters
of three separate matrices, and it helps on small data like Multi30K.

The layers are pre-LN (LayerNorm before each sub-layer, inside the residual branch, and
one final LayerNorm per stack; Xiong et al. 2020) instead of the paper's post-LN: the
residual path stays an identity, so a peak learning rate of 1e-3 with a short warmup
trains stably on small data, where post-LN needs a longer warmup and often diverges.

    model, sp = load_model()                                   # checkpoints/translation/
    src = torch.tensor([sp.encode("A dog runs.") + [EOS]])     # (1, S)
    sp.decode(beam_search(model, src, beam_size=4))            # "Ein Hund rennt."
"""
import math
import unicodedata

import sentencepiece as spm
import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from core import checkpoints

PAD, UNK, BOS, EOS = 0, 1, 2, 3
NEVER_GENERATED = (PAD, UNK, BOS)  # decoding never emits these (an <unk> in German helps nobody)


def clean_text(text: str) -> str:
    """Text as the tokenizer should see it: NFKC (full-width letters and ligatures become
    plain ones), and nothing one cannot see: format characters (Unicode category Cf: zero-width
    joiners, soft hyphens, byte-order marks, bidi marks), control characters other than
    whitespace, and lone surrogates (not text at all; SentencePiece fails on them). A
    zero-width space separates words, so it becomes a space. Left in, a soft hyphen or a
    zero-width joiner split a word into pieces the model never saw and garbled the sentence."""
    text = "".join(" " if c == "\u200b" else c for c in text if unicodedata.category(c) != "Cs")
    return "".join(c for c in unicodedata.normalize("NFKC", text)
                   if unicodedata.category(c) != "Cf" and (unicodedata.category(c) != "Cc" or c.isspace()))


def positional_encoding(length: int, dim: int) -> torch.Tensor:
    """(length, dim): PE[pos, 2i] = sin(pos / 10000^(2i/dim)), PE[pos, 2i+1] = cos(same)."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)  # (length, 1)
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))  # (dim/2,)
    pe = torch.zeros(length, dim)
    pe[:, 0::2] = torch.sin(position * frequency)
    pe[:, 1::2] = torch.cos(position * frequency)
    return pe


def padding_mask(ids: torch.Tensor) -> torch.Tensor:
    """(N, 1, 1, S) True where a key is a real token: broadcasts over heads and queries."""
    return (ids != PAD)[:, None, None, :]


def causal_mask(length: int, device=None) -> torch.Tensor:
    """(T, T) True on and below the diagonal: position t may attend to positions <= t.
    Target padding needs no mask of its own: it only ever follows the real tokens."""
    return torch.ones(length, length, dtype=torch.bool, device=device).tril()


class MultiHeadAttention(nn.Module):
    """softmax(Q K^T / sqrt(d_head)) V in `heads` subspaces of size d_model / heads, then
    one output projection. Returns the output and the attention weights."""

    def __init__(self, d_model: int, heads: int, dropout: float):
        super().__init__()
        assert d_model % heads == 0, "d_model must be a multiple of heads"
        self.heads, self.d_head = heads, d_model // heads
        self.q = nn.Linear(d_model, d_model)
        self.k = nn.Linear(d_model, d_model)
        self.v = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)

    def split(self, x):
        return x.view(x.shape[0], -1, self.heads, self.d_head).transpose(1, 2)  # (N, T, d_model) -> (N, h, T, d_head)

    def forward(self, query, key_value, mask=None):
        # query (N, Tq, d_model), key_value (N, Tk, d_model); mask broadcasts to (N, h, Tq, Tk)
        return self.attend(query, self.split(self.k(key_value)), self.split(self.v(key_value)), mask)

    def attend(self, query, k, v, mask=None):
        """Attention of the queries over keys and values already projected and split,
        (N, h, Tk, d_head) each: decoding one step at a time keeps them between steps."""
        n, tq, d_model = query.shape
        q = self.split(self.q(query))  # (N, h, Tq, d_head)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_head)  # (N, h, Tq, Tk)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = scores.softmax(dim=-1)  # each row sums to 1 over the keys allowed
        out = self.dropout(weights) @ v  # (N, h, Tq, d_head)
        out = out.transpose(1, 2).reshape(n, tq, d_model)  # (N, Tq, d_model): heads side by side
        return self.out(out), weights


class FeedForward(nn.Module):
    def __init__(self, d_model: int, d_ff: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_model, d_ff), nn.ReLU(), nn.Dropout(dropout), nn.Linear(d_ff, d_model))

    def forward(self, x):
        return self.net(x)


class EncoderLayer(nn.Module):
    """x + SelfAttention(LN(x)), then x + FeedForward(LN(x))."""

    def __init__(self, d_model: int, heads: int, d_ff: int, dropout: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attention = MultiHeadAttention(d_model, heads, dropout)
        self.feed_forward = FeedForward(d_model, d_ff, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, src_mask):
        h = self.norm1(x)
        a, weights = self.attention(h, h, src_mask)
        x = x + self.dropout(a)
        x = x + self.dropout(self.feed_forward(self.norm2(x)))
        return x, weights


class DecoderLayer(nn.Module):
    """Masked self-attention over the target so far, attention over the source (the
    encoder's output, `memory`), then the feed-forward network; each pre-LN + residual."""

    def __init__(self, d_model: int, heads: int, d_ff: int, dropout: float):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d_model), nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.self_attention = MultiHeadAttention(d_model, heads, dropout)
        self.cross_attention = MultiHeadAttention(d_model, heads, dropout)
        self.feed_forward = FeedForward(d_model, d_ff, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, memory, src_mask, tgt_mask):
        h = self.norm1(x)
        a, self_weights = self.self_attention(h, h, tgt_mask)
        x = x + self.dropout(a)
        a, cross_weights = self.cross_attention(self.norm2(x), memory, src_mask)
        x = x + self.dropout(a)
        x = x + self.dropout(self.feed_forward(self.norm3(x)))
        return x, self_weights, cross_weights

    def step(self, x, src_mask, cache: dict):
        """forward() for the newest position only, x (N, 1, d_model). `cache` holds the
        self-attention keys and values of the earlier positions (this step's are added) and
        the cross-attention ones of the memory (computed once), so a step computes the
        newest position only. Exact, since no position depends on later ones."""
        attention = self.self_attention
        h = self.norm1(x)
        cache["k"] = torch.cat([cache["k"], attention.split(attention.k(h))], dim=2)  # (N, h, t, d_head)
        cache["v"] = torch.cat([cache["v"], attention.split(attention.v(h))], dim=2)
        a, _ = attention.attend(h, cache["k"], cache["v"])  # no mask: there are no later positions yet
        x = x + self.dropout(a)
        a, _ = self.cross_attention.attend(self.norm2(x), cache["memory_k"], cache["memory_v"], src_mask)
        x = x + self.dropout(a)
        return x + self.dropout(self.feed_forward(self.norm3(x)))


class Transformer(nn.Module, PyTorchModelHubMixin):
    """Source ids (N, S) and target-input ids (N, T) (BOS first) -> logits (N, T, vocab)
    for the next target token at every position."""

    def __init__(self, vocab_size: int = 8000, d_model: int = 256, heads: int = 4, d_ff: int = 1024,
                 encoder_layers: int = 3, decoder_layers: int = 3, dropout: float = 0.1, max_len: int = 256):
        super().__init__()
        self.d_model, self.max_len = d_model, max_len
        self.embed = nn.Embedding(vocab_size, d_model, padding_idx=PAD)
        # Scaled by sqrt(d_model) on the way in, so N(0, 1/d_model) gives unit-variance
        # inputs and, as the output layer, logits of a sensible size at the start.
        nn.init.normal_(self.embed.weight, std=d_model ** -0.5)
        with torch.no_grad():
            self.embed.weight[PAD].zero_()
        self.register_buffer("pe", positional_encoding(max_len, d_model), persistent=False)
        self.dropout = nn.Dropout(dropout)
        self.encoder = nn.ModuleList(EncoderLayer(d_model, heads, d_ff, dropout) for _ in range(encoder_layers))
        self.decoder = nn.ModuleList(DecoderLayer(d_model, heads, d_ff, dropout) for _ in range(decoder_layers))
        self.encoder_norm, self.decoder_norm = nn.LayerNorm(d_model), nn.LayerNorm(d_model)

    def embed_tokens(self, ids):
        x = self.embed(ids) * math.sqrt(self.d_model) + self.pe[:ids.shape[1]]  # (N, T, d_model)
        return self.dropout(x)

    def encode(self, src, attention: dict | None = None):
        """memory (N, S, d_model). With a dict, appends each layer's weights (N, h, S, S)
        to attention["encoder"]."""
        x, mask = self.embed_tokens(src), padding_mask(src)
        for layer in self.encoder:
            x, weights = layer(x, mask)
            if attention is not None:
                attention.setdefault("encoder", []).append(weights)
        return self.encoder_norm(x)

    def decode(self, tgt_in, memory, src, attention: dict | None = None):
        """Hidden states (N, T, d_model). With a dict, appends each layer's weights to
        attention["decoder"] (N, h, T, T) and attention["cross"] (N, h, T, S)."""
        x, src_mask = self.embed_tokens(tgt_in), padding_mask(src)
        tgt_mask = causal_mask(tgt_in.shape[1], tgt_in.device)
        for layer in self.decoder:
            x, self_weights, cross_weights = layer(x, memory, src_mask, tgt_mask)
            if attention is not None:
                attention.setdefault("decoder", []).append(self_weights)
                attention.setdefault("cross", []).append(cross_weights)
        return self.decoder_norm(x)

    def logits(self, hidden):
        return hidden @ self.embed.weight.T  # (..., vocab): the tied output layer

    def forward(self, src, tgt_in, attention: dict | None = None):
        return self.logits(self.decode(tgt_in, self.encode(src, attention), src, attention))

    def start_decoding(self, memory) -> list[dict]:
        """Per decoder layer: empty self-attention keys/values and the memory's projected
        for cross-attention. The caches' first dimension follows the batch (or the beams)."""
        caches = []
        for layer in self.decoder:
            cross = layer.cross_attention
            empty = memory.new_zeros(memory.shape[0], cross.heads, 0, cross.d_head)
            caches.append({"k": empty, "v": empty, "memory_k": cross.split(cross.k(memory)),
                           "memory_v": cross.split(cross.v(memory))})
        return caches

    def decode_step(self, token, caches: list[dict], src):
        """Log-probabilities (N, vocab) of the next token, given the newest token (N,) of each
        prefix; the earlier ones are in `caches` (from start_decoding), updated here."""
        position = caches[0]["k"].shape[2]
        x = self.dropout(self.embed(token[:, None]) * math.sqrt(self.d_model) + self.pe[position])  # (N, 1, d_model)
        src_mask = padding_mask(src)
        for layer, cache in zip(self.decoder, caches):
            x = layer.step(x, src_mask, cache)
        logits = self.logits(self.decoder_norm(x[:, 0])).float()  # (N, vocab)
        logits[:, NEVER_GENERATED] = float("-inf")
        return logits.log_softmax(dim=-1)

    def output_limit(self, src_len: int) -> int:
        """Most tokens to generate (EOS included) for a source of src_len tokens."""
        return min(self.max_len - 1, int(1.5 * src_len) + 10)


@torch.no_grad()
def greedy_decode(model: Transformer, src: torch.Tensor) -> list[list[int]]:
    """The most probable next token at every step, for a batch of sources (N, S) at once.
    Returns each output's ids without BOS and EOS."""
    n = src.shape[0]
    limits = torch.tensor([model.output_limit(int(s)) for s in (src != PAD).sum(1)], device=src.device)
    caches = model.start_decoding(model.encode(src))
    ys = torch.full((n, 1), BOS, dtype=torch.long, device=src.device)
    done = torch.zeros(n, dtype=torch.bool, device=src.device)
    for step in range(1, int(limits.max()) + 1):
        token = model.decode_step(ys[:, -1], caches, src).argmax(dim=-1)  # (N,)
        token = token.masked_fill(done, PAD)
        ys = torch.cat([ys, token[:, None]], dim=1)  # (N, step + 1)
        done |= (token == EOS) | (step >= limits)
        if done.all():
            break
    return [strip(row) for row in ys[:, 1:].tolist()]


def strip(ids: list[int]) -> list[int]:
    """Ids up to the first EOS, without PAD."""
    if EOS in ids:
        ids = ids[:ids.index(EOS)]
    return [i for i in ids if i != PAD]


def length_penalty(length: int, alpha: float) -> float:
    """GNMT (Wu et al. 2016): lp(Y) = ((5 + |Y|) / 6)^alpha. Dividing a hypothesis's
    log-probability by it stops beam search from preferring short outputs."""
    return ((5 + length) / 6) ** alpha


@torch.no_grad()
def beam_search(model: Transformer, src: torch.Tensor, beam_size: int = 4, alpha: float = 0.6,
                max_len: int | None = None) -> list[int]:
    """The best output ids (without BOS and EOS) for one source (1, S), keeping the
    beam_size best prefixes at every step. A hypothesis ends when it emits EOS; its score
    is log P / length_penalty. Search stops when beam_size hypotheses have ended (as in
    fairseq), when no live prefix can still beat the best ended one, or at max_len. With
    beam_size 1 this is exactly greedy decoding."""
    max_len = max_len or model.output_limit(int((src != PAD).sum()))
    caches = model.start_decoding(model.encode(src))  # the source is encoded once
    beams = torch.full((1, 1), BOS, dtype=torch.long, device=src.device)  # (B, t): B live prefixes
    scores = torch.zeros(1, device=src.device)  # (B,) summed log-probabilities
    finished = []  # (normalised score, ids)
    for step in range(1, max_len + 1):
        log_probs = model.decode_step(beams[:, -1], caches, src.expand(beams.shape[0], -1))  # (B, vocab)
        vocab = log_probs.shape[1]
        candidates = (scores[:, None] + log_probs).view(-1)  # (B * vocab,)
        top_scores, top = candidates.topk(min(2 * beam_size, candidates.numel()))
        keep_rows, keep_tokens, keep_scores = [], [], []
        for rank, (score, index) in enumerate(zip(top_scores.tolist(), top.tolist())):
            row, token = divmod(index, vocab)
            if token == EOS:
                if rank < beam_size:  # an ending counts only if it is among the beam_size best
                    finished.append((score / length_penalty(step, alpha), beams[row, 1:].tolist()))
            elif len(keep_rows) < beam_size:
                keep_rows.append(row)
                keep_tokens.append(token)
                keep_scores.append(score)
        if len(finished) >= beam_size or not keep_rows:
            break
        # Log-probabilities only fall as a prefix grows: if no live prefix, even with the
        # kindest length penalty, can beat the best ending already found, stop (exact).
        kindest = max(length_penalty(step + 1, alpha), length_penalty(max_len, alpha))
        if finished and max(f[0] for f in finished) >= max(keep_scores) / kindest:
            break
        rows = torch.tensor(keep_rows, device=src.device)
        beams = torch.cat([beams[rows], torch.tensor(keep_tokens, device=src.device)[:, None]], dim=1)
        caches = [{key: value[rows] for key, value in cache.items()} for cache in caches]  # follow the survivors
        scores = torch.tensor(keep_scores, device=src.device)
    if len(finished) < beam_size:  # out of length: the live prefixes compete too
        finished += [(s / length_penalty(beams.shape[1] - 1, alpha), ids[1:])
                     for s, ids in zip(scores.tolist(), beams.tolist())]
    return max(finished, key=lambda f: f[0])[1]


def inverse_sqrt(step: int, warmup: int) -> float:
    """Learning-rate factor at optimizer step `step` (1-based): linear warmup to 1 at
    `warmup`, then 1/sqrt decay (Vaswani et al. 2017, with the peak set by --lr)."""
    step = max(step, 1)
    return min(step / warmup, math.sqrt(warmup / step))


# ---- the trained model -------------------------------------------------------------------------

def checkpoint_name() -> str:
    return "translation"


def train_command() -> str:
    return "python -m train.translation"


def load_model(device="cpu", root=None) -> tuple[Transformer, spm.SentencePieceProcessor]:
    """The trained Transformer and the SentencePiece model saved beside it (spm.model)."""
    model = checkpoints.load(Transformer, checkpoint_name(), train_command(), device, root)
    tokenizer = spm.SentencePieceProcessor(model_file=str(checkpoints.find(checkpoint_name(), root) / "spm.model"))
    return model, tokenizer
