"""The Overview tab: numbers read from the committed metrics, the seed's beside them, and
buttons that open each tab."""
import importlib
import json

import gradio as gr
from PIL import Image

from core.data import REPO
from demos import overview


def committed_metrics(name: str) -> dict:
    path = REPO / "checkpoints" / name / "metrics.json"
    return json.loads(path.read_text()) if (path.parent / "model.safetensors").exists() else {}


def by_tab(rows):
    return {row["tab"]: row for row in rows}


def test_every_tab_of_the_app_is_on_the_overview():
    from app import TABS

    assert list(TABS)[0] == "overview"
    rows = by_tab(overview.results())
    assert set(TABS) - {"overview"} <= set(rows)
    for tab in list(TABS)[1:]:
        assert rows[tab]["built"] and rows[tab]["seed"] != "-"


def test_numbers_are_the_committed_metrics():
    rows = overview.results()
    for row in rows:
        for where, value in {**row["numbers"], **row["seed_numbers"]}.items():
            name, key = where.split(":")
            assert overview.lookup(committed_metrics(name), key) == value, (row["tab"], where)
    rows = by_tab(rows)
    mnist = committed_metrics("mnist/cnn")
    if mnist:
        assert f"**{mnist['test_accuracy']:.2%}**" in rows["mnist"]["ours"]
    vgg, best = committed_metrics("cifar10/vgg"), committed_metrics("cifar10/vgg_airbench")
    if vgg and best:  # the course's number comes from the metrics too
        assert f"**{best['test_accuracy']:.2%}**" in rows["cifar10"]["ours"]
        assert f"**{vgg['seed_accuracy']:.1%}**" in rows["cifar10"]["seed"]
    translation = committed_metrics("translation")
    if translation:
        assert f"**{translation['test_bleu_beam4']:.2f}**" in rows["translation"]["ours"]


def test_committed_experiments_show_results_others_say_how_to_train():
    for row in overview.results():
        entry = importlib.import_module(f"demos.{row['tab']}").OVERVIEW
        first = next((f.checkpoint for f in entry.ours), None)
        if first and committed_metrics(first):
            assert row["trained"] and overview.status(row) == row["ours"]
        elif row["built"]:
            assert row["command"] in overview.status(row)
        else:
            assert "failed to load" in overview.status(row)


def test_a_tab_that_fails_to_load_gets_a_card_that_says_so():
    row, = overview.results(tabs=["no_such_tab"])
    assert not row["built"] and "failed to load" in overview.status(row)
    assert isinstance(overview.thumbnail(row), Image.Image)


def test_missing_checkpoints_name_the_command(tmp_path):
    rows = overview.results(root=tmp_path)
    assert not any(row["trained"] or row["numbers"] for row in rows)
    for row in rows:
        if row["built"]:
            assert f"`{row['command']}`" in overview.status(row)
            assert row["command"].startswith("python -m train.")
    assert isinstance(overview.thumbnail(rows[0]), Image.Image)


def test_thumbnails_are_made_for_every_experiment():
    for row in overview.results():
        image = overview.thumbnail(row)
        assert isinstance(image, Image.Image) and min(image.size) >= 100


def test_buttons_open_the_tabs_that_are_loaded():
    from app import build_app

    demo = build_app(["overview", "fizzbuzz"])
    api_names = {dep.get("api_name") for dep in demo.config["dependencies"]}
    assert "open_fizzbuzz" in api_names and "open_mnist" not in api_names
    buttons = {b.elem_id: b for b in demo.blocks.values() if isinstance(b, gr.Button) and b.elem_id}
    assert buttons["overview-open-fizzbuzz"].visible is True
    assert buttons["overview-open-mnist"].visible is False  # its tab is not loaded
    fn = next(d.fn for d in demo.fns.values() if d.api_name == "open_fizzbuzz")
    theme, start = fn()  # the theme's bar and its tabs' bar (only "Start here" is loaded)
    assert theme.selected == "start" and start.selected == "fizzbuzz"
