import pytest

from core.errors import BadInput
from demos import fizzbuzz


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
