"""FizzBuzz played by a two-layer network that never saw the numbers 1..100."""
import functools

import gradio as gr

from core import checkpoints
from core.errors import BadInput
from core.plots import curves, curves_image
from core.results import Entry, Figure
from core.ui import user_errors
import models.fizzbuzz
from models.fizzbuzz import TRAIN_RANGE, answer, checkpoint_name, fizzbuzz_class, load_model, train_command

TITLE = "FizzBuzz"
MAX_NUMBER = 2 ** 10 - 1  # the network reads 10 bits


def _check(n) -> int:
    try:
        whole = float(n) == int(float(n))
    except (TypeError, ValueError, OverflowError):
        whole = False
    if not whole:
        raise BadInput(f"Expected a whole number, got {n!r}.")
    n = int(float(n))
    if not 0 <= n <= MAX_NUMBER:
        raise BadInput(f"The network reads 10-bit numbers: choose 0..{MAX_NUMBER}, not {n}.")
    return n


def predict_classes(numbers: list[int]) -> list[int]:
    return models.fizzbuzz.predict_classes(load_model(), numbers)


def play(n: int) -> str:
    """The network's answer for one number: "fizz", "buzz", "fizzbuzz" or the number."""
    n = _check(n)
    return answer(n, predict_classes([n])[0])


@functools.cache
def validation_numbers() -> frozenset[int]:
    """Numbers of 101..1023 held out of training for validation."""
    return frozenset(checkpoints.load_metrics(checkpoint_name()).get("val_numbers", []))


def seen_in_training(n: int) -> str:
    if n in validation_numbers():
        return "no (validation)"
    return "yes" if TRAIN_RANGE[0] <= n <= TRAIN_RANGE[1] else "no"


def play_range(start: int, end: int) -> tuple[list[list], str]:
    """The network's answers for start..end beside the truth, and a summary line."""
    start, end = _check(start), _check(end)
    if start > end:
        raise BadInput(f"The range is empty: start ({start}) is after end ({end}).")
    numbers = list(range(start, end + 1))
    rows, wrong = [], []
    for n, cls in zip(numbers, predict_classes(numbers)):
        truth, said = answer(n, fizzbuzz_class(n)), answer(n, cls)
        rows.append([n, said, truth, "✓" if said == truth else "✗ wrong", seen_in_training(n)])
        if said != truth:
            wrong.append(n)
    accuracy = 1 - len(wrong) / len(numbers)
    unseen = sum(1 for r in rows if r[4] != "yes")
    summary = (f"**{len(numbers) - len(wrong)}/{len(numbers)} correct ({accuracy:.1%})** on {start}..{end}; "
               f"{unseen} of these numbers were never seen in training. "
               + (f"Wrong on: {', '.join(map(str, wrong[:50]))}{' ...' if len(wrong) > 50 else ''}." if wrong
                  else "No mistakes."))
    return rows, summary


def model_card() -> tuple[str, object]:
    metrics = checkpoints.load_metrics(checkpoint_name())
    if not metrics:
        return f"No checkpoint yet: run `{train_command()}`.", None
    hp = metrics["hyperparameters"]
    text = (f"Linear(10, {hp['hidden']}) - ReLU - Linear({hp['hidden']}, 4), trained on "
            f"{metrics['train_numbers']} numbers from 101..1023 ({hp['epochs']} epochs, "
            f"{metrics['train_wall_time_s']:.0f} s on {metrics['device']}). Test on 1..100, never seen: "
            f"**{metrics['test_correct']}/100** (the seed's 100-unit net: 97/99, wrong on 68 and 84). "
            f"Reproduce: `{metrics['command']}`")
    fig = curves(metrics["history"], {"loss": ["train_loss", "val_loss"],
                                      "accuracy": ["train_accuracy", "val_accuracy"]},
                 "Training on 101..1023 (validation: 100 held-out numbers from that range)")
    return text, fig


# ---- what the Overview shows -----------------------------------------------------------------

OVERVIEW = Entry("FizzBuzz", 2, train_command(),
                 [Figure("right on 1..100", "fizzbuzz", "test_correct", "{}/100")],
                 ["97/99 right (wrong on 68 and 84), 10-100-4 network"],
                 "numbers it never saw")


def thumbnail():
    """The Overview's picture of this experiment."""
    return curves_image({"train": checkpoints.history("fizzbuzz", "train_accuracy"),
                         "validation": checkpoints.history("fizzbuzz", "val_accuracy")}, "epoch", "accuracy", percent=True)


def build():
    gr.Markdown("A two-layer network reads a number in binary and answers *fizz* (divisible by 3), "
                "*buzz* (by 5), *fizzbuzz* (by both) or the number. It was trained on 101..1023 only, "
                "so 1..100 is a fair test.")
    with gr.Row():
        start = gr.Number(1, label="From", precision=0, minimum=0, maximum=MAX_NUMBER)
        end = gr.Number(100, label="To", precision=0, minimum=0, maximum=MAX_NUMBER)
        run = gr.Button("Play", variant="primary")
    try:
        rows, first_summary = play_range(1, 100)
    except checkpoints.MissingCheckpoint as e:
        rows, first_summary = None, f"**{e}**"
    summary = gr.Markdown(first_summary)
    table = gr.Dataframe(rows, headers=["number", "network says", "truth", "", "seen in training"],
                         datatype=["number", "str", "str", "str", "str"], interactive=False,
                         max_height=420, label="Answers")
    with gr.Row():
        one = gr.Number(15, label="One number", precision=0, minimum=0, maximum=MAX_NUMBER)
        ask = gr.Button("Ask the network")
        one_answer = gr.Textbox(label="Network's answer", interactive=False)
    with gr.Accordion("Model card and training curve", open=False):
        text, fig = model_card()
        gr.Markdown(text)
        gr.Plot(fig, label="Training curve")

    run.click(user_errors(play_range), inputs=[start, end], outputs=[table, summary], api_name="fizzbuzz_play_range")
    gr.on([one.submit, ask.click], user_errors(play), inputs=one, outputs=one_answer, api_name="fizzbuzz_play")
