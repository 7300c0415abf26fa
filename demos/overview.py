"""Overview: every experiment on one page, our measured result beside the seed's, a
thumbnail, and a button that opens its tab. Made for the first slide of a talk.

Each tab describes itself: demos/<exp>.py exports OVERVIEW (a core.results.Entry: its
headline numbers, read from the checkpoints' metrics.json when the app starts, never typed
in, and the seed's) and thumbnail(). This page loops over app.TABS.
"""
import functools
import importlib
import logging

import gradio as gr

from core import checkpoints
from core.plots import is_chart, placeholder
from core.results import lookup

TITLE = "Overview"


def experiment_tabs() -> list[str]:
    """The tabs an Overview card is made for: every tab of app.TABS but this one."""
    from app import TABS  # app.py imports this module when it builds the page

    return [tab for tab in TABS if tab != "overview"]


def _read(figures, metrics_of) -> tuple[list[str], dict]:
    """Formatted "label **number**" parts and the raw numbers, for the figures found."""
    parts, numbers = [], {}
    for fig in figures:
        if isinstance(fig, str):
            parts.append(fig)
            continue
        value = lookup(metrics_of(fig.checkpoint), fig.key)
        if value is not None:
            parts.append(f"{fig.label} **{fig.fmt.format(value)}**")
            numbers[f"{fig.checkpoint}:{fig.key}"] = value
    return parts, numbers


def results(root=None, tabs=None) -> list[dict]:
    """Every experiment (of `tabs`, default app.TABS) with our headline numbers (read from
    the checkpoints' metrics.json under `root`, default checkpoints/) and the seed's. Keys:
    tab, title, issue, built (its demos module loads), trained, ours (markdown), seed
    (markdown), numbers ({"<checkpoint>:<key>": value} as read), command (what trains it)."""
    metrics_of = functools.cache(lambda name: checkpoints.load_metrics(name, root))
    rows = []
    for tab in tabs or experiment_tabs():
        try:
            entry = importlib.import_module(f"demos.{tab}").OVERVIEW
        except Exception:  # a broken tab gets a card that says so, not a broken Overview
            logging.exception("demos.%s has no Overview entry", tab)
            rows.append({"tab": tab, "title": tab, "issue": None, "built": False, "trained": False, "ours": "",
                         "seed": "-", "numbers": {}, "seed_numbers": {}, "command": ""})
            continue
        ours, numbers = _read(entry.ours, metrics_of)
        seed, seed_numbers = _read(entry.seed, metrics_of)
        rows.append({
            "tab": tab, "title": entry.title, "issue": entry.issue, "built": True,
            "trained": bool(numbers),
            "ours": ", ".join(ours) + (f" ({entry.where})" if ours and entry.where else ""),
            "seed": ", ".join(seed) if seed else "-",
            "numbers": numbers, "seed_numbers": seed_numbers, "command": entry.command,
        })
    return rows


def status(row: dict) -> str:
    """Our result, or why there is none yet."""
    if row["trained"]:
        return row["ours"]
    if not row["built"]:
        return "This tab failed to load."
    return f"Not trained yet. Train it with `{row['command']}`."


def thumbnail(row: dict):
    """A picture of the experiment: its model's output or its training curve."""
    if not row["built"]:
        return placeholder("failed to load")
    if not row["trained"]:
        return placeholder("not trained yet")
    try:
        return importlib.import_module(f"demos.{row['tab']}").thumbnail()
    except Exception:  # a thumbnail must never take the overview down
        logging.exception("the Overview's thumbnail of %s failed", row["tab"])
        return placeholder(row["title"])


# ---- the tab ------------------------------------------------------------------------------

def card(row: dict) -> str:
    return (f"### {row['title']}\n"
            f"**Ours:** {status(row)}  \n"
            f"**The seed:** {row['seed']}")


def build():
    """Lay out the cards; returns (button, tab id) pairs for app.py to wire to its tabs."""
    gr.Markdown("Every experiment of the playground: what our model measured (read from its checkpoint's "
                "metrics when the app started) beside what the seed it comes from reported. Open a tab to "
                "try it live.")
    links = []
    rows = results()
    for start in range(0, len(rows), 3):
        with gr.Row():
            for row in rows[start:start + 3]:
                with gr.Column(min_width=280):
                    picture = thumbnail(row)
                    gr.Image(picture, show_label=False, interactive=False, height=200, buttons=[], format="png",
                             elem_id=f"overview-thumb-{row['tab']}", elem_classes=["chart"] if is_chart(picture) else [])
                    gr.Markdown(card(row), elem_id=f"overview-card-{row['tab']}")
                    if row["built"]:
                        links.append((gr.Button(f"Open {row['title']}", size="sm",
                                                elem_id=f"overview-open-{row['tab']}"), row["tab"]))
    return links
