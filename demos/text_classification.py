"""Chinese news headlines: type a headline, see ten class probabilities from TextCNN, a
BiLSTM and the seed's hand-written LSTM, and which characters pushed the decision."""
import functools
import re
import unicodedata

import gradio as gr
import torch

from core import checkpoints
from core.data import THUCNEWS_CLASSES, THUCNEWS_CLASSES_ZH
from core.errors import BadInput
from core.plots import confusion_figure, curves_image
from core.results import Entry, Figure
from core.ui import user_errors
from models.text_classification import (MAX_LEN, MODELS, UNK, checkpoint_name, clean_text, load_model, normalize_text,
                                        predict, train_command)

TITLE = "Chinese headlines (text classification)"
LABELS = {"textcnn": "TextCNN", "bilstm": "BiLSTM", "textrnn_hand": "TextRNN (hand-written LSTM cell)"}
DISPLAY = {en: f"{en} {zh}" for en, zh in zip(THUCNEWS_CLASSES, THUCNEWS_CLASSES_ZH)}
MAX_CHARS = 200  # longer input is cut (with a note); headlines are about 19 characters
MAX_INPUT_CHARS = 10_000  # the box's own limit; longer text (only the API can send it) is refused unread
INPUT_LABEL = "Headline"
# Headlines written for this project (not from the dataset), one per class.
EXAMPLES = [
    "央行宣布下调存款准备金率0.5个百分点",       # finance
    "北京朝阳区新楼盘开盘均价每平方米六万元",     # realty
    "沪指午后震荡走高 券商板块集体大涨",          # stocks
    "教育部：明年考研报名时间提前至九月",         # education
    "新款国产芯片发布 性能提升三成功耗降低",       # science
    "男子酒后驾车撞上护栏 交警及时救出",          # society
    "外交部发言人就两国关系答记者问",             # politics
    "主场加时险胜 湖人晋级西部决赛",              # sports
    "暴雪公布新资料片 玩家可体验全新职业",         # game
    "著名导演新片定档春节 众星主演首曝海报",       # entertainment
]
CHINESE = re.compile(r"[\u3400-\u9fff]")


def models() -> list[str]:
    return list(MODELS)


@functools.cache
def load(model: str):
    if model not in MODELS:
        raise BadInput(f"Unknown model {model!r}; choose one of {models()}.")
    return load_model(model)


def check_text(text) -> tuple[str, str]:
    """(text to classify, a note for the user), invisible characters removed (clean_text).
    Raises BadInput when nothing is left or the text is longer than the box allows."""
    if isinstance(text, str) and len(text) > MAX_INPUT_CHARS:
        raise BadInput(f"{INPUT_LABEL!r}: the text is {len(text):,} characters long; up to {MAX_INPUT_CHARS:,} are "
                       f"read (and the first {MAX_CHARS} classified). Please paste a headline.")
    surrogates = sum(unicodedata.category(c) == "Cs" for c in text) if isinstance(text, str) else 0
    text = clean_text(text) if isinstance(text, str) else text
    if not isinstance(text, str) or all(unicodedata.category(c)[0] in "PZC" for c in normalize_text(text)):
        raise BadInput("Type or paste a Chinese news headline first (this has only spaces or punctuation).")
    note = f"Left out {surrogates} character(s) that are not valid text (lone UTF-16 surrogates). " if surrogates else ""
    if len(text) > MAX_CHARS:
        text, note = text[:MAX_CHARS], f"Only the first {MAX_CHARS} characters were read (headlines are short). "
    if not CHINESE.search(text):
        note += "The models read Chinese headlines; this has no Chinese characters, so the answer means little. "
    return text, note


def probabilities(text: str, model: str = "textcnn") -> torch.Tensor:
    net, vocab = load(model)
    return predict(net, vocab.batch([text], MAX_LEN))[0]


def classify(text: str, model: str = "textcnn") -> dict[str, float]:
    """Probabilities keyed by the English class names (labels.txt order)."""
    text, _ = check_text(text)
    return {name: float(p) for name, p in zip(THUCNEWS_CLASSES, probabilities(text, model))}


def occlusion(text: str, model: str = "textcnn") -> list[tuple[str, float]]:
    """How much each character pushes the winning class: the drop in its probability when
    that character is replaced by the unknown token (positive = supports the decision)."""
    text, _ = check_text(text)
    net, vocab = load(model)
    ids = vocab.batch([text], MAX_LEN)  # (1, T), or (1, T, 2) with words
    chars = vocab.tokens(text)[:ids.shape[1]]
    if not chars:
        return []
    variants = ids.repeat(len(chars) + 1, *[1] * (ids.dim() - 1))
    variants[torch.arange(1, len(chars) + 1), torch.arange(len(chars))] = UNK  # the character (and its word there)
    probs = predict(net, variants)
    winner = probs[0].argmax()
    drops = (probs[0, winner] - probs[1:, winner]).tolist()
    return [(c, round(d, 4)) for c, d in zip(chars, drops)]


def analyse(text: str, model: str = "textcnn"):
    """The tab's action: every model's labels, the chosen model's character map, a note."""
    try:
        text, note = check_text(text)
    except BadInput as e:
        return [None] * len(MODELS) + [None, str(e)]
    labels = []
    for name in MODELS:
        try:
            probs = probabilities(text, name)
            labels.append({DISPLAY[c]: float(p) for c, p in zip(THUCNEWS_CLASSES, probs)})
        except checkpoints.MissingCheckpoint as e:
            labels.append(None)
            note += f"{e} "
    try:
        highlights = occlusion(text, model)
        scale = max((abs(d) for _, d in highlights), default=0) or 1
        highlighted = [(c, d / scale) for c, d in highlights]
    except checkpoints.MissingCheckpoint:
        highlighted = None
    return labels + [highlighted, note.strip()]


def model_card(model: str) -> str:
    m = checkpoints.load_metrics(checkpoint_name(model))
    if not m:
        return f"Not trained yet: run `{train_command(model)}`."
    worst = sorted(m["per_class"].items(), key=lambda kv: kv[1]["f1"])[:3]
    if m.get("fit_on") == "train+val":
        how = f"{m['best_epoch']} epochs on the training and validation headlines"
    else:
        how = f"epoch {m['best_epoch']} chosen on validation, {m['val_accuracy']:.2%}"
    return (f"**{LABELS[model]}**: test accuracy **{m['test_accuracy']:.2%}** on {m['test_titles']:,} headlines "
            f"({how}), {m['parameters']:,} parameters, trained in {m['train_wall_time_s'] / 60:.1f} min. "
            "Hardest classes (F1): " + ", ".join(f"{DISPLAY[c]} {v['f1']:.1%}" for c, v in worst)
            + f". Reproduce: `{m['command']}`")


TARGETS = {"textcnn": "90%", "bilstm": "89%", "textrnn_hand": "89%"}  # the TextRNN's: the BiLSTM's (issue 27)


def comparison_table() -> list[list]:
    """One row per model: test accuracy, the target, parameters, training time."""
    rows = []
    for model in MODELS:
        m = checkpoints.load_metrics(checkpoint_name(model))
        rows.append([LABELS[model], f"{m['test_accuracy']:.2%}" if m else "not trained",
                     TARGETS.get(model, "-"), f"{m['parameters']:,}" if m else "-",
                     f"{m['train_wall_time_s'] / 60:.1f} min" if m else "-"])
    return rows


def compare(model: str = "textcnn"):
    """The chosen model's confusion matrix on the test headlines and the ones it gets most
    confidently wrong (headline, true class, its answer, its probability)."""
    if model not in MODELS:
        raise BadInput(f"Unknown model {model!r}; choose one of {models()}.")
    m = checkpoints.load_metrics(checkpoint_name(model))
    if not m:
        raise BadInput(f"{LABELS[model]} is not trained yet: run `{train_command(model)}`.")
    mistakes = [[w["title"], DISPLAY[w["label"]], DISPLAY[w["predicted"]], f"{w['confidence']:.1%}"]
                for w in m.get("most_confidently_wrong", [])]
    return confusion_figure(m["confusion_matrix"], THUCNEWS_CLASSES), mistakes


# ---- what the Overview shows -----------------------------------------------------------------

OVERVIEW = Entry(TITLE, 9, train_command("textcnn"),
                 [Figure("TextCNN", checkpoint_name("textcnn"), "test_accuracy"),
                  Figure("BiLSTM", checkpoint_name("bilstm"), "test_accuracy"),
                  Figure("TextRNN", checkpoint_name("textrnn_hand"), "test_accuracy")],
                 ["TextCNN 95.2%, TextRNN 93.2% on news articles, with test batches leaking into training; "
                  "a public TextCNN on all 180,000 headlines: 91.2%"],
                 "10,000 test headlines")


def thumbnail():
    """The Overview's picture of this experiment."""
    # TextCNN and the BiLSTM train on train + validation, so the curves are training accuracy.
    return curves_image({"TextCNN": checkpoints.history(checkpoint_name("textcnn"), "train_accuracy"),
                         "BiLSTM": checkpoints.history(checkpoint_name("bilstm"), "train_accuracy"),
                         "TextRNN": checkpoints.history(checkpoint_name("textrnn_hand"), "train_accuracy")},
                        "epoch", "training accuracy", percent=True)


def build():
    gr.Markdown("Type or paste a Chinese news headline. Models trained here on THUCNews headlines (TextCNN and the "
                "BiLSTM on the 54,807 of the training and validation splits, the hand-written TextRNN on the 44,816 "
                "training ones, its epoch chosen on validation) give the probabilities of ten classes; the "
                "coloured characters show which ones pushed the chosen model's decision (red: towards its "
                "answer, blue: against), found by hiding each character in turn.")
    with gr.Row():
        with gr.Column(scale=2):
            text = gr.Textbox(label=INPUT_LABEL, lines=2, max_length=MAX_INPUT_CHARS, elem_id="text-input",
                              placeholder="例如：央行宣布下调存款准备金率")
            model = gr.Radio([(LABELS[m], m) for m in MODELS], value="textcnn", label="Explain the decision of")
            with gr.Row():
                go = gr.Button("Classify", variant="primary")
            note = gr.Markdown(elem_id="text-note")
            highlight = gr.HighlightedText(label="Characters that pushed the decision", color_map=None,
                                           show_legend=False, combine_adjacent=False)
        with gr.Column(scale=3):
            with gr.Row():
                outputs = [gr.Label(num_top_classes=3, label=LABELS[m], elem_id=f"text-label-{m}") for m in MODELS]
    gr.Examples([[e] for e in EXAMPLES], inputs=[text], label="Examples (written for this project)", api_name="text_example")
    with gr.Accordion("Model comparison: accuracy, confusion matrices, confident mistakes", open=False):
        gr.Dataframe(comparison_table(), headers=["model", "test accuracy", "target", "parameters", "training"],
                     label="10,000 test headlines", interactive=False)
        for m in MODELS:
            gr.Markdown(model_card(m))
        which = gr.Radio([(LABELS[m], m) for m in MODELS], value="textcnn", label="Model")
        try:
            first_figure, first_mistakes = compare("textcnn")
        except BadInput:
            first_figure, first_mistakes = None, []
        with gr.Row():
            confusion = gr.Plot(first_figure, label="Confusion matrix (test headlines; rows: true class)")
            wrong = gr.Dataframe(first_mistakes, headers=["headline", "true class", "model's answer", "probability"],
                                 wrap=True, label="Test headlines it gets most confidently wrong", interactive=False)
        which.change(user_errors(compare), inputs=which, outputs=[confusion, wrong], api_name="text_compare")
    gr.on([go.click, text.submit], user_errors(analyse), inputs=[text, model], outputs=[*outputs, highlight, note],
          api_name="text_classify")
