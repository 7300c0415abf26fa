"""FizzBuzz: the encoding and truth, the tab's functions, a whole train-evaluate cycle, and
the committed checkpoint re-measured by evaluation."""
import json

import pytest

from conftest import run_cli
from core.errors import BadInput
from demos import fizzbuzz
from models.fizzbuzz import CLASSES, FizzBuzzMLP, answer, encode, fizzbuzz_class


def test_fizzbuzz_encoding_is_binary_least_significant_bit_first():
    assert encode([1, 2, 1023]).tolist() == [[1] + [0] * 9, [0, 1] + [0] * 8, [1] * 10]
    assert FizzBuzzMLP(hidden=7)(encode([3, 5])).shape == (2, 4)


@pytest.mark.parametrize("n, expected", [(1, "1"), (3, "fizz"), (5, "buzz"), (15, "fizzbuzz"),
                                         (98, "98"), (99, "fizz"), (100, "buzz"), (0, "fizzbuzz")])
def test_fizzbuzz_truth(n, expected):
    assert answer(n, fizzbuzz_class(n)) == expected
    assert CLASSES[fizzbuzz_class(n)] in (expected, "number")


def test_play_answers_like_fizzbuzz():
    assert [fizzbuzz.play(n) for n in (1, 3, 5, 15, 98)] == ["1", "fizz", "buzz", "fizzbuzz", "98"]


def test_play_range_marks_truth_and_unseen_numbers():
    rows, summary = fizzbuzz.play_range(95, 105)
    assert [r[0] for r in rows] == list(range(95, 106))
    assert all(r[2] == fizzbuzz.answer(r[0], fizzbuzz.fizzbuzz_class(r[0])) for r in rows)
    validation = fizzbuzz.validation_numbers()
    assert len(validation) == 100 and not validation & set(range(1, 101))
    assert [r[4] for r in rows] == ["no"] * 6 + ["no (validation)" if n in validation else "yes" for n in range(101, 106)]
    assert "correct" in summary


@pytest.mark.parametrize("bad, message", [(-1, "0..1023"), (1024, "0..1023"), (2.5, "whole number"),
                                          (None, "whole number"), (float("nan"), "whole number"),
                                          (float("inf"), "whole number"), ("1.5", "whole number"), ("abc", "whole number")])
def test_bad_numbers_get_clear_messages(bad, message):
    with pytest.raises(BadInput, match=message):
        fizzbuzz.play(bad)


def test_reversed_range_is_a_clear_message():
    with pytest.raises(BadInput, match="range is empty"):
        fizzbuzz.play_range(10, 1)


def test_fizzbuzz_train_then_eval(tmp_path):
    trained = run_cli("train.fizzbuzz", "--epochs", "30", "--hidden", "64", "--checkpoint-dir", str(tmp_path))
    assert 0 <= trained["test_accuracy"] <= 1
    metrics = json.loads((tmp_path / "fizzbuzz" / "metrics.json").read_text())
    assert metrics["history"][-1]["epoch"] == 30 and metrics["train_wall_time_s"] >= 0
    assert not set(range(1, 101)) & set(metrics["val_numbers"])  # test numbers never in validation
    evaluated = run_cli("train.fizzbuzz", "--eval", "--checkpoint-dir", str(tmp_path))
    assert evaluated["test_accuracy"] == trained["test_accuracy"]


def test_fizzbuzz_gets_all_of_1_to_100_right():
    result = run_cli("train.fizzbuzz", "--eval")
    assert result["test_correct"] == 100, result["test_wrong"]
    assert [fizzbuzz.play(n) for n in (3, 5, 15, 98)] == ["fizz", "buzz", "fizzbuzz", "98"]


@pytest.mark.parametrize("api_name, inputs", [("fizzbuzz_play", [3.5]), ("fizzbuzz_play_range", [1, 3.5])])
def test_a_fraction_through_the_app_is_a_message_not_rounded(api_name, inputs):
    """gr.Number(precision=0) would round 3.5 to 4 before the handler sees it; the app's input
    check (core.ui.readable_input_errors) refuses it with a sentence naming the box."""
    import asyncio

    import gradio as gr

    from core.ui import readable_input_errors

    with gr.Blocks() as demo:
        fizzbuzz.build()
    readable_input_errors(demo)
    block_fn = next(fn for fn in demo.fns.values() if fn.api_name == api_name)
    with pytest.raises(gr.Error, match=r"must be a whole number, not 3\.5"):
        asyncio.run(demo.preprocess_data(block_fn, inputs, None))
    assert asyncio.run(demo.preprocess_data(block_fn, [4.0] * len(inputs), None)) == [4] * len(inputs)
