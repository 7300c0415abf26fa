"""English to German with a Transformer written from scratch: type English, get German
(beam search by default), and look inside: where each German token looked in the English
(cross-attention, per layer and head), how the English tokens look at each other, and the
candidates the decoder weighed at every step."""
import functools
import html
import json
import re
import unicodedata

import gradio as gr
import matplotlib.pyplot as plt
import numpy as np
import torch

from core import checkpoints, links
from core.errors import BadInput
from core.plots import curves, curves_image
from core.results import Entry, Figure
from core.ui import user_errors
from models.translation import (BOS, EOS, NEVER_GENERATED, beam_search, checkpoint_name, clean_text, greedy_decode,
                                inverse_sqrt, load_model, positional_encoding, train_command)

TITLE = "Translation (Transformer)"
# The first four are the seed's sample sentences (from the Multi30K training split).
EXAMPLES = [
    "A group of people stand in front of an igloo.",
    "A man in a blue shirt is standing on a ladder cleaning windows.",
    "Two young, White males are outside near many bushes.",
    "A little girl climbing into a wooden playhouse.",
    "Two dogs are playing with a red ball in the snow.",
    "A woman is riding a bicycle down a busy street.",
]
MAX_SENTENCES, MAX_CHARS = 20, 1000  # longer text: the first sentences within both limits, with a note
MAX_INPUT_CHARS = 10_000  # the box's own limit; longer text (only the API can send it) is refused unread
INPUT_LABEL = "English"
MAX_SOURCE_TOKENS = 100  # a longer "sentence" (no full stops) is cut here; Multi30K's longest has 55
MAX_BEAM = 8
MAX_LABELLED = 40  # attention maps over more tokens than this are drawn without token labels
TOP_K = 5
KINDS = {"cross": "Cross-attention (German token looks at English)", "encoder": "Encoder self-attention (English)",
         "decoder": "Decoder self-attention (German, masked)"}


@functools.cache
def load():
    return load_model()


def split_sentences(text: str) -> tuple[list[str], str]:
    """Sentences (split after . ! ? and at line breaks) within MAX_SENTENCES and MAX_CHARS,
    and a note when some were left out. Invisible characters are removed first (clean_text)."""
    if isinstance(text, str) and len(text) > MAX_INPUT_CHARS:
        raise BadInput(f"{INPUT_LABEL!r}: the text is {len(text):,} characters long; up to {MAX_INPUT_CHARS:,} are "
                       f"read (and the first {MAX_CHARS:,} translated). Please paste less.")
    surrogates = sum(unicodedata.category(c) == "Cs" for c in text) if isinstance(text, str) else 0
    text = clean_text(text) if isinstance(text, str) else text
    if not isinstance(text, str) or not any(unicodedata.category(c)[0] in "LN" for c in text):
        raise BadInput("Type an English sentence first: this has only spaces, punctuation or symbols.")
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n+", text.strip()) if s.strip()]
    sentences = [s for s in sentences if any(unicodedata.category(c)[0] in "LN" for c in s)]
    kept, used = [], 0
    for s in sentences[:MAX_SENTENCES]:
        if used + len(s) > MAX_CHARS:
            if not kept:  # one huge sentence: its first MAX_CHARS characters, at a word boundary
                kept.append(s[:MAX_CHARS].rsplit(" ", 1)[0] or s[:MAX_CHARS])
            break
        kept.append(s)
        used += len(s)
    note, limit = "", f"(the limit is {MAX_SENTENCES} sentences and {MAX_CHARS:,} characters)"
    if len(kept) < len(sentences):
        note = f"Only the first {len(kept)} of {len(sentences)} sentences were translated {limit}. "
    elif len(kept[0]) < len(sentences[0]):
        note = f"Only the first {len(kept[0]):,} characters were translated {limit}. "
    if surrogates:
        note += f"Left out {surrogates} character(s) that are not valid text (lone UTF-16 surrogates). "
    if not re.search(r"[A-Za-z]", "".join(kept)):
        note += "The model learned from English image captions; this has no English letters, so the answer means little. "
    return kept, note


def _check_kind(kind) -> str:
    if kind not in KINDS:
        raise BadInput(f"The attention to show must be one of {', '.join(KINDS)}, not {kind!r}.")
    return kind


def _check_options(beam_size, alpha) -> tuple[int, float]:
    if beam_size is None or float(beam_size) != int(beam_size) or not 1 <= int(beam_size) <= MAX_BEAM:
        raise BadInput(f"The beam size must be a whole number from 1 to {MAX_BEAM}, not {beam_size!r}.")
    if alpha is None or not 0 <= float(alpha) <= 2:
        raise BadInput(f"The length penalty alpha must be from 0 to 2, not {alpha!r}.")
    return int(beam_size), float(alpha)


def decode(sentences: list[str], beam_size: int = 4, alpha: float = 0.6) -> tuple[list[list[int]], list[list[int]], str]:
    """(source ids with EOS, output ids without BOS/EOS, note) per sentence."""
    model, sp = load()
    sources, note = [], ""
    for ids in sp.encode(sentences):
        if len(ids) > MAX_SOURCE_TOKENS - 1:
            ids, note = ids[:MAX_SOURCE_TOKENS - 1], f"A very long sentence was cut to its first {MAX_SOURCE_TOKENS} tokens. "
        sources.append(ids + [EOS])
    with torch.inference_mode():
        outputs = [beam_search(model, torch.tensor([s]), beam_size, alpha) if beam_size > 1
                   else greedy_decode(model, torch.tensor([s]))[0] for s in sources]
    return sources, outputs, note


# A caption-trained model tends to stop early on a long sentence: its translation comes out
# short and a clause is gone. Such a sentence is also translated clause by clause, and the note
# shows that reading, so nothing is dropped silently.
LONG_SENTENCE_TOKENS = 16  # Multi30K's captions are 13 tokens on average
SHORT_RATIO = 0.8  # German output shorter than this times the English looks truncated
CLAUSE_BREAK = re.compile(r",\s+|;\s+|\s+(?=(?:while|because|and|but|who|which|where|whereas)\s)")


def clauses(sentence: str, least_words: int = 4) -> list[str]:
    """A sentence split at commas, semicolons and clause words, no part shorter than least_words."""
    merged = []
    for part in (p.strip() for p in CLAUSE_BREAK.split(sentence.strip().rstrip(".!?")) if p.strip()):
        if merged and (len(merged[-1].split()) < least_words or len(part.split()) < least_words):
            merged[-1] += " " + part
        else:
            merged.append(part)
    return merged


def short_translation_notes(sentences: list[str], sources: list[list[int]], outputs: list[list[int]],
                            beam_size: int, alpha: float) -> str:
    """For each long sentence whose translation came out short: a note with its clause-by-clause reading."""
    _, sp = load()
    notes = []
    for sentence, source, output in zip(sentences, sources, outputs):
        if len(source) - 1 < LONG_SENTENCE_TOKENS or len(output) >= SHORT_RATIO * (len(source) - 1):
            continue
        parts = clauses(sentence)
        if len(parts) < 2:
            notes.append(f'"{sentence[:60]}" is longer than the captions this model learned from and its '
                         "translation came out short: part of it may be missing. ")
            continue
        _, part_outputs, _ = decode(parts, beam_size, alpha)
        reading = ", ".join(g.rstrip(".") for g in sp.decode(part_outputs) if g) + "."
        notes.append(f'"{sentence[:60]}{"..." if len(sentence) > 60 else ""}" is longer than the captions this '
                     f"model learned from and its translation came out short: part of it may be missing. Clause by "
                     f"clause it reads: {reading} ")
    return "".join(notes)


def translate_with_note(text: str, beam_size: int = 4, alpha: float = 0.6) -> tuple[str, str]:
    """(German, a note for the user: what was left out, or why the answer means little)."""
    beam_size, alpha = _check_options(beam_size, alpha)
    sentences, note = split_sentences(text)
    sources, outputs, cut = decode(sentences, beam_size, alpha)
    _, sp = load()
    short = short_translation_notes(sentences, sources, outputs, beam_size, alpha)
    return " ".join(g for g in sp.decode(outputs) if g), (note + cut + short).strip()


def translate(text: str, beam_size: int = 4) -> str:
    """German for English text, sentence by sentence (beam search, GNMT length penalty 0.6)."""
    return translate_with_note(text, beam_size)[0]


def pieces(sp, ids: list[int]) -> list[str]:
    """Token labels: SentencePiece's word-start mark shown as _, EOS as </s>."""
    return ["</s>" if i == EOS else sp.id_to_piece(i).replace("\u2581", "_") for i in ids]


def inspect(source: list[int], output: list[int]) -> dict:
    """One teacher-forced pass over a finished translation: every layer's attention weights
    and, at each decoding step, the TOP_K next-token candidates with probabilities."""
    model, sp = load()
    src = torch.tensor([source])  # (1, S)
    tgt_in = torch.tensor([[BOS] + output])  # (1, T): BOS, then the chosen tokens
    attention = {}
    with torch.inference_mode():
        logits = model(src, tgt_in, attention)[0].float()  # (T, vocab)
        logits[:, NEVER_GENERATED] = float("-inf")  # as the decoder saw them
        probs = logits.softmax(-1)
        top_p, top_i = probs.topk(TOP_K, dim=-1)  # (T, k)
    chosen = output + [EOS]
    steps = [[t + 1, pieces(sp, [chosen[t]])[0], f"{probs[t, chosen[t]]:.3f}"]
             + [f"{label}  {p:.3f}" for label, p in zip(pieces(sp, top_i[t].tolist()), top_p[t].tolist())]
             for t in range(len(chosen))]
    return {"source": pieces(sp, source), "target_in": ["<s>"] + pieces(sp, output), "target_out": pieces(sp, chosen),
            "steps": steps,
            **{k: torch.stack([w[0] for w in v]).numpy() for k, v in attention.items()}}  # (layers, heads, rows, cols)


def attention_figure(view: dict, kind: str = "cross"):
    """Every layer (rows) and head (columns) of one kind of attention as heat maps."""
    weights = view[kind]
    rows, cols = {"cross": (view["target_out"], view["source"]), "encoder": (view["source"], view["source"]),
                  "decoder": (view["target_out"], view["target_in"])}[kind]
    layers, heads = weights.shape[:2]
    tokens = max(len(rows), len(cols))
    # Up to MAX_LABELLED tokens a map grows with the sentence and names every token; a longer
    # one (a pasted paragraph) keeps a readable size and draws no labels.
    cell = max(2.4, 0.22 * min(tokens, MAX_LABELLED))
    fig, axes = plt.subplots(layers, heads, figsize=(cell * heads, cell * layers), squeeze=False)
    for layer in range(layers):
        for head in range(heads):
            ax = axes[layer, head]
            ax.imshow(weights[layer, head], cmap="Blues", vmin=0, vmax=1, aspect="auto")
            ax.set_title(f"layer {layer + 1}, head {head + 1}", fontsize=8)
            if tokens > MAX_LABELLED:
                ax.set_xticks([])
                ax.set_yticks([])
                continue
            ax.set_xticks(range(len(cols)), cols, rotation=90, fontsize=6)
            ax.set_yticks(range(len(rows)), rows, fontsize=6)
    fig.suptitle(KINDS[kind] + " (rows: queries, columns: keys)")
    fig.tight_layout()
    return fig


def positional_encoding_figure(length: int = 60, dim: int = 256):
    pe = positional_encoding(length, dim).numpy()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4))
    left.imshow(pe.T, cmap="RdBu", aspect="auto", vmin=-1, vmax=1)
    left.set_xlabel("position")
    left.set_ylabel("dimension")
    left.set_title("Sinusoidal positional encoding")
    for d in (0, 2, 8, 32, 128):
        right.plot(pe[:, d], label=f"dim {d}")
    right.set_xlabel("position")
    right.set_title("sin(pos / 10000^(d/256)): slower waves in higher dimensions")
    right.legend(fontsize=7)
    fig.tight_layout()
    return fig


def schedule_figure(metrics: dict):
    hp = metrics.get("hyperparameters", {})
    lr, warmup = hp.get("lr", 1e-3), hp.get("warmup", 800)
    total = sum(h["steps"] for h in metrics.get("history", [])) or 10 * 238  # the default run's steps
    steps = np.arange(1, total + 1)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(steps, [lr * inverse_sqrt(int(s), warmup) for s in steps])
    ax.axvline(warmup, color="grey", linestyle=":", label=f"warmup ends (step {warmup})")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("learning rate")
    ax.set_title("Linear warmup, then 1/sqrt(step)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def model_card() -> tuple[str, object]:
    m = checkpoints.load_metrics(checkpoint_name())
    if not m:
        return f"Not trained yet: run `{train_command()}`.", None
    hp = m["hyperparameters"]
    beam = f"beam{hp['beam_size']}"
    text = (f"**Test (test_2016_flickr, {m['test_sentences']:,} sentences)**: sacreBLEU **{m[f'test_bleu_{beam}']}** "
            f"with beam search ({hp['beam_size']} beams, length penalty {hp['alpha']}), {m['test_bleu_greedy']} greedy; "
            f"chrF {m[f'test_chrf_{beam}']} / {m['test_chrf_greedy']}. {hp['layers']}+{hp['layers']} layers, "
            f"d_model {hp['d_model']}, {hp['heads']} heads, {m['parameters']:,} parameters, a {m['vocab_size']:,}-piece "
            f"joint BPE vocabulary; trained {hp['epochs']} epochs in {m['train_wall_time_s'] / 60:.0f} min on "
            f"{m['device']}; kept: {m['chosen']} (validation BLEU {m['val_bleu_greedy']}). Reproduce: `{m['command']}`")
    return text, curves(m["history"], {"loss": ["train_loss", "val_loss"], "BLEU": ["val_bleu"]},
                        "Label-smoothed loss and greedy validation BLEU per epoch")


def translate_tab(text: str, beam_size: int = 4, alpha: float = 0.6, kind: str = "cross"):
    """The tab's action: German, a note, the first sentence's attention maps and steps."""
    beam_size, alpha, kind = *_check_options(beam_size, alpha), _check_kind(kind)
    sentences, note = split_sentences(text)
    sources, outputs, cut = decode(sentences, beam_size, alpha)
    _, sp = load()
    view = inspect(sources[0], outputs[0])
    cut += short_translation_notes(sentences, sources, outputs, beam_size, alpha)
    if len(sentences) > 1:
        note += "The attention maps and decoding steps are for the first sentence. "
    return (" ".join(g for g in sp.decode(outputs) if g), (note + cut).strip(),
            attention_figure(view, kind), view["steps"])


def first_sentence_view(text: str, beam_size: float, alpha: float) -> dict:
    """inspect() of the first sentence's translation (what the attention views show)."""
    beam_size, alpha = _check_options(beam_size, alpha)
    sentences, _ = split_sentences(text)
    sources, outputs, _ = decode(sentences[:1], beam_size, alpha)
    return inspect(sources[0], outputs[0])


def focus_choices(layers: int, heads: int) -> list[tuple[str, str]]:
    return [(f"layer {layer}, all heads (mean)", f"{layer}/mean") for layer in range(layers, 0, -1)] + \
        [(f"layer {layer}, head {head}", f"{layer}/{head}") for layer in range(1, layers + 1) for head in range(1, heads + 1)]


def attention_html(view: dict, kind: str = "cross", focus: str = "3/mean") -> str:
    """One layer's attention (one head, or the mean of its heads) as a table of shaded cells:
    rows are the queries, columns the keys; hovering a cell shows its weight."""
    weights = view[_check_kind(kind)]
    try:
        layer, head = focus.split("/")
        layer = int(layer) - 1
        matrix = weights[layer].mean(0) if head == "mean" else weights[layer, int(head) - 1]
    except (ValueError, IndexError, AttributeError):
        raise BadInput(f"Choose a layer and head from the list, not {focus!r}.") from None
    rows, cols = {"cross": (view["target_out"], view["source"]), "encoder": (view["source"], view["source"]),
                  "decoder": (view["target_out"], view["target_in"])}[kind]
    header = "".join(f'<th class="key"><span>{html.escape(c)}</span></th>' for c in cols)
    body = []
    for r, row in enumerate(rows):
        cells = "".join(f'<td style="background: rgba(37, 99, 235, {w:.3f})" '
                        f'title="{html.escape(row)} \u2192 {html.escape(cols[c])}: {w:.3f}"></td>'
                        for c, w in enumerate(matrix[r][:len(cols)]))
        body.append(f'<tr><th class="query">{html.escape(row)}</th>{cells}</tr>')
    return (f'<div class="attention-table"><table><tr><th></th>{header}</tr>{"".join(body)}</table>'
            f"<p>Rows: {'German tokens' if kind != 'encoder' else 'English tokens'} (queries); columns: what they "
            f"looked at (keys). Darker is more weight; hover a cell for its value. Each row sums to 1.</p></div>")


def focused_attention_tab(text: str, beam_size: float = 4, alpha: float = 0.6, kind: str = "cross",
                          focus: str = "3/mean") -> str:
    if not text or not text.strip():
        return ""
    return attention_html(first_sentence_view(text, beam_size, alpha), kind, focus)


def linked_text(text: str) -> str:
    if not text.strip() or len(text) > MAX_INPUT_CHARS:
        raise ValueError("no text, or more than the box holds")
    return text


def attention_tab(text: str, beam_size: int = 4, alpha: float = 0.6, kind: str = "cross"):
    if not text or not text.strip():  # switching the view before typing anything
        return None
    beam_size, alpha, kind = *_check_options(beam_size, alpha), _check_kind(kind)
    sentences, _ = split_sentences(text)
    sources, outputs, _ = decode(sentences[:1], beam_size, alpha)
    return attention_figure(inspect(sources[0], outputs[0]), kind)


# ---- what the Overview shows -----------------------------------------------------------------

OVERVIEW = Entry("Translation (Transformer)", 7, train_command(),
                 [Figure("sacreBLEU, beam 4", checkpoint_name(), "test_bleu_beam4", "{:.2f}"),
                  Figure("greedy", checkpoint_name(), "test_bleu_greedy", "{:.2f}"),
                  Figure("chrF", checkpoint_name(), "test_chrf_beam4", "{:.2f}")],
                 ["validation loss 1.6106, no BLEU (target: BLEU 35)"],
                 "1,000 test sentences")


def thumbnail():
    """The Overview's picture of this experiment."""
    return curves_image({"greedy": checkpoints.history(checkpoint_name(), "val_bleu")}, "epoch", "validation BLEU")


def build():
    gr.Markdown("Type English and get German from a Transformer written and trained in this project. **What to "
                "expect:** it learned from only 29,000 photo captions (Multi30K: people, dogs, streets, sports), "
                "so it translates sentences like those well and anything else (news, chat, idioms) badly. Below "
                "the answer: where each German token looked in the English, and the candidates it weighed at "
                "every step.")
    card, history_fig = model_card()
    with gr.Row():
        with gr.Column(scale=3):
            text = gr.Textbox(label=INPUT_LABEL, lines=3, max_length=MAX_INPUT_CHARS, elem_id="translation-input",
                              placeholder=EXAMPLES[0])
            with gr.Row():
                beam = gr.Slider(1, MAX_BEAM, value=4, step=1, label="Beam size (1 = greedy)")
                alpha = gr.Slider(0.0, 2.0, value=0.6, step=0.1, label="Length penalty alpha")
            go = gr.Button("Translate", variant="primary")
        with gr.Column(scale=3):
            german = gr.Textbox(label="German", lines=3, interactive=False, elem_id="translation-output")
            note = gr.Markdown(card if history_fig is None else "", elem_id="translation-note")
    gr.Examples([[e] for e in EXAMPLES], inputs=[text], label="Examples (the first four from the seed)",
                api_name="translation_example")
    kind = gr.Radio([(label, k) for k, label in KINDS.items()], value="cross", label="Attention to show")
    folder = checkpoints.find(checkpoint_name())
    model_config = json.loads((folder / "config.json").read_text()) if folder else {}
    layers, heads = model_config.get("decoder_layers", 3), model_config.get("heads", 4)
    with gr.Row():
        focus = gr.Dropdown(focus_choices(layers, heads), value=f"{layers}/mean", label="Look closer: one layer and head",
                            scale=1)
    focused = gr.HTML(elem_id="translation-attention-focus")
    attention_plot = gr.Plot(label="Attention weights, every layer and head")
    steps = gr.Dataframe(headers=["step", "chosen", "p(chosen)", *[f"top {i + 1}" for i in range(TOP_K)]],
                         interactive=False, label="Decoding step by step: the candidates and their probabilities "
                         "(with beam search the chosen token need not be the top one)")
    with gr.Accordion("How it works and how it learned", open=False):
        gr.Markdown(card)
        with gr.Row():
            gr.Plot(positional_encoding_figure(), label="Positional encodings")
            gr.Plot(schedule_figure(checkpoints.load_metrics(checkpoint_name())), label="Learning-rate schedule")
        gr.Plot(history_fig, label="Training curves")

    gr.on([go.click, text.submit], user_errors(translate_tab), inputs=[text, beam, alpha, kind],
          outputs=[german, note, attention_plot, steps], api_name="translation_translate")
    # A link such as ?tab=translation&text=Two+dogs+play.&beam=1 opens this view translated.
    links.field("text", text, parse=linked_text)
    links.field("beam", beam, parse=int)
    links.field("alpha", alpha)
    links.field("attention", kind, parse=links.choice(kind))
    links.on_open(user_errors(translate_tab), [text, beam, alpha, kind], [german, note, attention_plot, steps])
    # The focused view follows every new translation (typed or from a link) and its own choices.
    gr.on([german.change, kind.change, focus.change], user_errors(focused_attention_tab),
          inputs=[text, beam, alpha, kind, focus], outputs=focused, api_name="translation_attention_focus",
          trigger_mode="always_last", show_progress="hidden")
    kind.change(user_errors(attention_tab), inputs=[text, beam, alpha, kind], outputs=attention_plot,
                api_name="translation_attention")
