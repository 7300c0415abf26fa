"""Chinese headline classification: tokenizer, padding and truncation, the hand-written
LSTM against torch.nn.LSTM, a tiny training run, bad input, the committed checkpoints."""
import json

import pytest
import torch

from core import checkpoints
from core.errors import BadInput
from demos import text_classification as demo
from models.text_classification import (MAX_LEN, MODELS, PAD, UNK, LSTMByHand, TextCNN, Vocab,
                                        checkpoint_name, load_model, normalize_text, predict, train_command)
from conftest import run_cli

# The targets: TextCNN >= 0.90 and BiLSTM >= 0.89; the hand-written TextRNN aims at the BiLSTM's (issue 27).
TARGETS = {"textcnn": 0.90, "bilstm": 0.89, "textrnn_hand": 0.89}


def test_normalize_and_vocab():
    assert normalize_text("ＡＢＣ　１２３ 新闻") == "abc123新闻"  # full-width -> ASCII, spaces dropped
    vocab = Vocab.build(["新闻联播", "新闻", "播报"], min_freq=2)
    assert vocab.chars[:2] == ["<pad>", "<unk>"] and set(vocab.chars[2:]) == {"新", "闻", "播"}
    assert vocab.encode("新闻天气", 10) == [vocab.index["新"], vocab.index["闻"], UNK, UNK]


def test_padding_and_truncation(tmp_path):
    vocab = Vocab(list("一二三四五"))
    ids = vocab.batch(["一二", "一二三四五一二三", ""], max_len=6, min_len=1)
    assert ids.shape == (3, 6)
    assert ids[0, 2:].eq(PAD).all() and ids[2].eq(PAD).all()
    vocab.save(tmp_path / "vocab.json")
    assert Vocab.load(tmp_path / "vocab.json").chars == vocab.chars


def test_words_ride_along_with_their_characters(tmp_path):
    titles = ["北京大学招生", "北京大学开学", "清华大学招生", "北京下雨"]  # jieba: 北京大学 / 招生, ...
    vocab = Vocab.build(titles, min_freq=2, words=True)
    assert vocab.words[2:] == ["北京大学", "招生"]
    ids = vocab.batch(["北京大学招生", "北京下雨"], max_len=5)
    assert ids.shape == (2, 5, 2)
    chars, words = ids[0, :, 0].tolist(), ids[0, :, 1].tolist()
    assert chars == [vocab.index[c] for c in "北京大学招"]  # cut at max_len, words too
    assert words == [vocab.word_index["北京大学"]] * 4 + [vocab.word_index["招生"]]
    assert ids[1, :4, 1].eq(UNK).all() and ids[1, 4].eq(PAD).all()  # rare words are unknown
    vocab.save(tmp_path / "vocab.json")
    loaded = Vocab.load(tmp_path / "vocab.json")
    assert loaded.words == vocab.words and torch.equal(loaded.batch(["北京大学招生"], 5), ids[:1])


def test_hand_written_lstm_matches_torch():
    torch.manual_seed(0)
    mine, theirs = LSTMByHand(8, 16), torch.nn.LSTM(8, 16, batch_first=True)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(theirs, f"{name}_l0").copy_(getattr(mine.cell, name))
    x = torch.randn(4, 7, 8)
    out_mine, (h_mine, c_mine) = mine(x)
    out_theirs, (h_theirs, c_theirs) = theirs(x)
    torch.testing.assert_close(out_mine, out_theirs, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(c_mine, c_theirs[0], atol=1e-6, rtol=1e-5)
    # gradients agree too
    out_mine.sum().backward()
    out_theirs.sum().backward()
    torch.testing.assert_close(mine.cell.weight_hh.grad, theirs.weight_hh_l0.grad, atol=1e-5, rtol=1e-4)


def test_padding_does_not_change_the_hand_lstm_state():
    torch.manual_seed(0)
    lstm = LSTMByHand(4, 6)
    x = torch.randn(1, 5, 4)
    _, (h_short, _) = lstm(x[:, :3])
    _, (h_padded, _) = lstm(x, mask=torch.tensor([[True, True, True, False, False]]))
    torch.testing.assert_close(h_short, h_padded)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("words", [False, True])
def test_models_map_ids_to_logits(name, words):
    model = MODELS[name](vocab_size=50, bigram_buckets=100, trigram_buckets=200, word_vocab_size=30 if words else 0)
    model.eval()
    ids = torch.tensor([[5, 6, 7, 0, 0], [8, 9, 10, 11, 12]])
    if words:
        ids = torch.stack([ids, torch.tensor([[3, 3, 4, 0, 0], [5, 5, 6, 6, 7]])], dim=2)
    out = model(ids)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    assert torch.allclose(model(ids[:1, :3]), out[:1], atol=1e-5)  # padding changes nothing


def test_trigrams_and_words_change_the_answer():
    torch.manual_seed(0)
    ids = torch.tensor([[5, 6, 7, 8]])
    plain = TextCNN(vocab_size=50, trigram_buckets=200).eval()
    out = plain(ids)
    torch.nn.init.normal_(plain.embed.trigrams.weight)  # other trigram embeddings, same characters
    assert not torch.allclose(plain(ids), out)
    with_words = TextCNN(vocab_size=50, word_vocab_size=10).eval()
    one, other = (with_words(torch.stack([ids, torch.tensor([[w, w, 4, 4]])], dim=2)) for w in (2, 3))
    assert not torch.allclose(one, other)


def test_textcnn_reads_a_single_character():
    assert TextCNN(vocab_size=20)(torch.tensor([[3]])).shape == (1, 10)
    assert TextCNN(vocab_size=20, pooling="max+mean")(torch.tensor([[3]])).shape == (1, 10)


def test_max_and_mean_pooling_count_only_real_windows():
    torch.manual_seed(0)
    model = TextCNN(vocab_size=50, widths=(2,), filters=4, pooling="max+mean").eval()
    ids = torch.tensor([[5, 6, 7]])
    model.classifier = torch.nn.Identity()  # the pooled features themselves
    h = torch.relu(model.convs[0](model.embed(torch.nn.functional.pad(ids, (0, 1))).transpose(1, 2)))[:, :, :3]
    out = model(ids)
    assert torch.allclose(out, torch.cat([h.amax(2), h.mean(2)], dim=1), atol=1e-6)
    assert torch.allclose(model(torch.tensor([[5, 6, 7, 0, 0, 0]])), out, atol=1e-6)  # padding is not averaged in
    with pytest.raises(ValueError):
        TextCNN(vocab_size=50, pooling="sum")


def test_predict_gives_probabilities_and_ignores_padding():
    torch.manual_seed(0)
    model = TextCNN(vocab_size=50)
    ids = Vocab([chr(c) for c in range(0x4e00, 0x4e30)]).batch(["一丁七", "一" * 100], MAX_LEN)
    assert ids.shape == (2, MAX_LEN)  # titles are read up to MAX_LEN characters
    probs = predict(model, ids, batch_size=1)
    assert probs.shape == (2, 10) and torch.allclose(probs.sum(1), torch.ones(2))
    torch.testing.assert_close(probs[:1], predict(model, ids[:1, :3]))


def test_checkpoint_name_and_train_command(tmp_path):
    assert checkpoint_name("bilstm") == "text_classification/bilstm"
    assert train_command("bilstm") == "python -m train.text_classification --model bilstm"
    with pytest.raises(checkpoints.MissingCheckpoint, match="python -m train.text_classification --model bilstm"):
        load_model("bilstm", root=tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("fit_on", ["train+val", "train"])
def test_train_then_eval_tiny(tmp_path, fit_on):
    trained = run_cli("train.text_classification", "--model", "textcnn", "--epochs", "1", "--limit", "400",
                      "--fit-on", fit_on, "--checkpoint-dir", str(tmp_path))["textcnn"]
    folder = tmp_path / "text_classification" / "textcnn"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert (folder / "vocab.json").exists() and len(metrics["confusion_matrix"]) == 10
    assert set(metrics["per_class"]) == set(demo.THUCNEWS_CLASSES)
    assert metrics["train_titles"] == (800 if fit_on == "train+val" else 400)
    assert (metrics["val_accuracy"] is None) == (fit_on == "train+val")
    wrong = metrics["most_confidently_wrong"]
    assert 0 < len(wrong) <= 20 and all(w["label"] != w["predicted"] for w in wrong)
    assert [w["confidence"] for w in wrong] == sorted((w["confidence"] for w in wrong), reverse=True)
    assert metrics["hyperparameters"]["pooling"] == "max+mean"
    from safetensors import safe_open
    with safe_open(str(folder / "model.safetensors"), "pt") as f:  # embedding tables stored in float16
        dtypes = {k: f.get_slice(k).get_dtype() for k in f.keys()}
    assert {d for k, d in dtypes.items() if k.startswith("embed.")} == {"F16"}
    assert {d for k, d in dtypes.items() if not k.startswith("embed.")} == {"F32"}
    evaluated = run_cli("train.text_classification", "--model", "textcnn", "--eval", "--limit", "400",
                        "--checkpoint-dir", str(tmp_path))["textcnn"]
    assert evaluated["test_accuracy"] == trained["test_accuracy"]


@pytest.mark.parametrize("text", ["", "   ", "。，！？", None])
def test_nothing_to_read_is_a_message(text):
    with pytest.raises(BadInput, match="headline"):
        demo.check_text(text)


def test_english_and_long_text_get_a_note():
    assert "no Chinese" in demo.check_text("stock market rallies")[1]
    text, note = demo.check_text("股市" * 5000)
    assert len(text) == demo.MAX_CHARS and "first" in note


def test_invisible_characters_are_removed_before_reading():
    from models.text_classification import clean_text
    assert clean_text("央行\u200b宣布\u00ad下调\u200d存款\ufeff\u200e准备金率\x07\ud800") == "央行宣布下调存款准备金率"
    assert normalize_text("Ａ\u200bＢ\u2060 新闻") == "ab新闻"
    vocab = Vocab(list("央行宣布"))
    assert vocab.encode("央\u200c行\u202e宣\u00ad布", 10) == vocab.encode("央行宣布", 10)  # no UNK between them


def test_a_lone_surrogate_is_left_out_with_a_note_and_long_text_refused():
    text, note = demo.check_text("央行\ud800宣布降息")
    assert text == "央行宣布降息" and note == "Left out 1 character(s) that are not valid text (lone UTF-16 surrogates). "
    with pytest.raises(BadInput, match="'Headline': the text is 20,000 characters long; up to 10,000 are read"):
        demo.check_text("股市" * 10_000)
    with pytest.raises(BadInput, match="headline"):
        demo.check_text("\u200b\ud800\u00ad")  # nothing visible


committed = [m for m in MODELS if checkpoints.find(checkpoint_name(m))]


@pytest.mark.slow
@pytest.mark.parametrize("model", [m for m in committed if m in TARGETS])
def test_committed_checkpoint_meets_target(model):
    result = run_cli("train.text_classification", "--model", model, "--eval")[model]
    assert result["test_titles"] == 10000 and result["test_accuracy"] >= TARGETS[model]
    recorded = checkpoints.load_metrics(checkpoint_name(model))
    assert result["test_accuracy"] == pytest.approx(recorded["test_accuracy"], abs=1e-4)  # what the tab shows


def test_every_model_in_the_tab_has_a_checkpoint():
    """No card shows a training command instead of an answer (the TextRNN did, issue 27)."""
    assert committed == list(MODELS)
    *labels, _, note = demo.analyse(demo.EXAMPLES[0])
    assert all(label is not None for label in labels) and "python -m train" not in note
    assert all("python -m train.text_classification --model" not in demo.model_card(m).split("Reproduce")[0]
               for m in MODELS)
    card = demo.model_card("textrnn_hand")
    assert "epoch 6 chosen on validation, 88.79%" in card and "test accuracy **89.44%**" in card


@pytest.mark.parametrize("model", committed)
def test_project_examples_are_classified_right(model):
    right = sum(max(p := demo.classify(text, model), key=p.get) == name
                for text, name in zip(demo.EXAMPLES, demo.THUCNEWS_CLASSES))
    assert right >= 8, (model, right)


@pytest.mark.parametrize("model", committed)
def test_comparison_shows_confusion_matrix_and_confident_mistakes(model):
    figure, mistakes = demo.compare(model)
    assert figure is not None and len(mistakes) == 20
    assert all(row[1] != row[2] for row in mistakes)  # true class != the model's answer
    assert any(row[0] == demo.LABELS[model] and row[1].endswith("%") for row in demo.comparison_table())
    assert "test accuracy" in demo.model_card(model)
    with pytest.raises(BadInput):
        demo.compare("bert")


HIDDEN = "央行\u200b宣布\u00ad下调存款\u200d准备金率\ufeff0.5个\u200e百分点"  # EXAMPLES[0] with invisible characters


@pytest.mark.parametrize("model", committed)
def test_invisible_characters_do_not_change_the_answer(model):
    assert demo.classify(HIDDEN, model) == demo.classify(demo.EXAMPLES[0], model)
    assert demo.occlusion(HIDDEN, model) == demo.occlusion(demo.EXAMPLES[0], model)


@pytest.mark.parametrize("model", committed[:1])
def test_occlusion_and_odd_input(model):
    chars = demo.occlusion("央行宣布下调存款准备金率", model)
    assert [c for c, _ in chars] == list("央行宣布下调存款准备金率")
    probs = demo.classify("😀😀 hello", model)  # still answers
    assert abs(sum(probs.values()) - 1) < 1e-4
    *labels, highlighted, note = demo.analyse("体育" * 3000, model)
    assert "first" in note and labels[0] is not None
