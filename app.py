"""Deep Learning Playground: one Gradio app, a tab per classic deep-learning experiment.

    python app.py                      # serve every tab on http://127.0.0.1:7860
    python app.py --tabs mnist         # only some tabs (faster start, less memory)
    python app.py --cache-examples     # run every example once at start: clicks are instant (for talks)
"""
import argparse
import importlib
import logging
import os
import tempfile

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
from PIL import Image  # noqa: E402

from core import links  # noqa: E402
from core.memory import keep_memory_flat  # noqa: E402
from core.sessions import lazy_session_configs  # noqa: E402
from core.ui import readable_input_errors  # noqa: E402

# The navigation: a bar of themes, each with a bar of its tabs (both wrap onto more rows
# rather than hide a tab behind a menu, on a phone too).
GROUPS = {"start": "Start here", "vision": "Vision", "generative": "Generative", "language": "Language and speech"}
# One line per tab: the module in demos/ that lays it out, and its theme. Adding a tab adds a line here.
TABS = {
    "overview": "start",
    "fizzbuzz": "start",
    "mnist": "vision",
    "gan": "generative",
    "vae": "generative",
    "cifar10": "vision",
    "transfer": "vision",
    "text_classification": "language",
    "speech": "language",
    "translation": "language",
    "style_transfer": "generative",
    "detection": "vision",
    "faces": "vision",
    "image_to_image": "generative",
}

# Uploads: at most 25 MB a file (a phone photo is under 15 MB, a 20-second WAV, the speech
# tab's limit, under 4 MB at 48 kHz stereo), and no picture over 50 megapixels is decoded:
# PIL refuses more than twice MAX_IMAGE_PIXELS, so an 8000x8000 upload is turned away before
# it takes 256 MB of memory.
MAX_FILE_SIZE = "25mb"
# Requests waiting at once, over all tabs: beyond it a request is turned away with a "busy"
# message at once instead of waiting behind hours of work. Heavy jobs are bounded by their tabs.
MAX_QUEUE = 64
THEME = gr.themes.Default(text_size="lg")  # readable on a projector; light and dark both defined
CSS = """
#title h1 { font-size: clamp(1.5rem, 6vw, 2.4rem); overflow-wrap: normal; word-break: normal; margin-bottom: 0; }
/* A block's label floats over the top of its box: pictures, charts and answers start below it,
   so it never covers their top row or first word. */
.gradio-container .block:has(> label.float) { padding-top: 2.4rem; }
/* A native plot's chart is as tall as its box, label not counted, so the box cut off the legend
   drawn under the axis: the chart takes the height left below the label. */
.gradio-container .block:has(> .vega-embed) { display: flex; flex-direction: column; }
.gradio-container .block > .vega-embed { flex: 1 1 0; min-height: 0; height: auto !important; }
/* The translation's focused attention: a table of shaded cells, keys written upwards. */
.attention-table { overflow-x: auto; }
.attention-table table { border-collapse: collapse; width: auto; font-size: 0.8rem; }
.attention-table td { width: 1.6rem; height: 1.6rem; min-width: 1.6rem; border: 1px solid var(--border-color-primary); padding: 0; }
.attention-table th { padding: 0 0.4rem; font-weight: normal; background: none; border: none; }
.attention-table th.query { text-align: right; white-space: nowrap; }
.attention-table th.key span { writing-mode: vertical-rl; transform: rotate(180deg); white-space: nowrap; }
/* Drawings are black ink on transparent: they keep white paper in the dark theme too. */
#mnist-examples img, #vae-examples img { background: white; }
/* Charts are drawn dark on transparent (core/plots.py); in the dark theme they are inverted
   and their hues turned back, so text and lines are light and the colours keep their meaning
   (heat maps use one-hue colour maps, which stay readable inverted). */
.dark .gradio-container [data-testid="matplotlib"] img, .dark .gradio-container .chart img {
  filter: invert(1) hue-rotate(180deg);
}
"""
Image.MAX_IMAGE_PIXELS = 25_000_000


def build_app(tabs=None) -> gr.Blocks:
    lazy_session_configs()
    links.clear()
    tabs = [name for name in TABS if name in (tabs or TABS)]
    # Every hour Gradio deletes the files it saved for results and uploads over two hours ago
    # (a Space runs for weeks; the cached examples are kept).
    with gr.Blocks(title="Deep Learning Playground", delete_cache=(3600, 7200)) as demo:
        with gr.Row(equal_height=True):
            gr.Markdown("# Deep Learning Playground", elem_id="title")
            # Light or dark for the room: the browser's setting by default, ?__theme=dark in the URL, or this.
            theme_button = gr.Button("Light / dark", size="sm", scale=0, min_width=100, elem_id="theme-toggle")
        gr.Markdown("Classic deep-learning experiments, each trained by this project's own scripts, running live "
                    "on your own drawing, photo or sentence. *The seed*, where a page compares with it, is the "
                    "course notebooks this playground grew from.", elem_id="intro")
        theme_button.click(None, js="() => { document.body.classList.toggle('dark'); }",
                           api_name="toggle_theme", api_visibility="private")
        openers = []  # (button, tab id) pairs a tab's build() returns, e.g. the Overview's
        groups = [g for g in GROUPS if any(TABS[name] == g for name in tabs)]
        bars = {}
        with gr.Tabs(overflow_behavior="wrap", elem_id="groups") as group_bar:
            for group in groups:
                with gr.Tab(GROUPS[group], id=group, elem_id=f"group-{group}") as group_tab:
                    members = [name for name in tabs if TABS[name] == group]
                    links.on_tab_select(group_tab, group, members, is_theme=True)
                    with gr.Tabs(overflow_behavior="wrap", elem_id=f"tabs-{group}") as bars[group]:
                        for name in members:
                            openers += build_tab(name, group)

        def select(name: str) -> list:
            """The updates of [group_bar, *bars] that show tab `name`."""
            return [gr.Tabs(selected=TABS[name])] + [gr.Tabs(selected=name) if g == TABS[name] else gr.skip()
                                                       for g in groups]

        outputs = [group_bar] + [bars[g] for g in groups]
        for button, target in openers:
            if target in tabs:
                button.click(lambda target=target: select(target), outputs=outputs,
                             api_name=f"open_{target}", api_visibility="private")
            else:
                button.visible = False  # that tab was not loaded (--tabs)
        links.wire(demo, select, outputs, set(tabs))
    demo.queue(default_concurrency_limit=2, max_size=MAX_QUEUE)
    say_busy_when_full(demo)
    return readable_input_errors(demo)


def build_tab(name: str, group: str) -> list:
    """One tab of the page; returns the (button, tab id) pairs its build() made."""
    module = importlib.import_module(f"demos.{name}")
    with gr.Tab(module.TITLE, id=name, elem_id=f"tab-{name}") as tab, links.tab(name):
        links.on_tab_select(tab, group, [name], is_theme=False)
        try:
            openers = module.build() or []
        except Exception as e:  # one broken tab must not take the others down
            logging.exception("tab %s failed to build", name)
            gr.Markdown(f"**This tab failed to load:** `{type(e).__name__}: {e}`")
            return []
        if name != "overview":
            with gr.Accordion("About this model: how it was trained and how to reproduce it", open=False,
                              elem_id=f"about-{name}"):
                gr.Markdown(about(name, module.OVERVIEW))
        return openers


def about(name: str, entry) -> str:
    """The developer's part of a tab: what trains it, where its weights are, where it is explained."""
    return (f"Trained on this project's CPU by `{entry.command}`, from a fixed seed; the weights, their "
            f"config and the measured metrics are in `checkpoints/` (safetensors and JSON, nothing pickled). "
            f"How each number was measured, the curves and the choices made on validation data: "
            f"`docs/{name}.md` in the repository. Serve only this tab with `python app.py --tabs {name}`.")


def say_busy_when_full(demo: gr.Blocks):
    """Gradio answers a full queue with "Queue is full. Max size is 64 and size is 64."; say
    what it means for the user instead."""
    push = demo._queue.push

    async def push_or_busy(*args, **kwargs):
        ok, message, status = await push(*args, **kwargs)
        if status == "queue_full":
            message = (f"The playground is busy: {demo._queue.max_size} requests are waiting already. "
                       "Please try again in a minute.")
        return ok, message, status

    demo._queue.push = push_or_busy


def main(argv=None):
    parser = argparse.ArgumentParser(description="Serve the Deep Learning Playground.")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="interface to listen on (0.0.0.0 to serve a network)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
                        help="port to listen on")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    parser.add_argument("--tabs", nargs="+", choices=TABS, metavar="TAB",
                        help=f"load only these tabs (default: all of {', '.join(TABS)})")
    parser.add_argument("--cache-examples", action=argparse.BooleanOptionalAction, default="SPACE_ID" in os.environ,
                        help="compute every example's output at start-up, so a click on one shows it at once "
                             "(default: on in a Hugging Face Space, off here)")
    args = parser.parse_args(argv)
    keep_memory_flat()
    if args.cache_examples:
        # Examples with a function leave cache_examples unset, so Gradio reads these. A fresh
        # folder per start: a cache kept from an older checkpoint would show stale results.
        os.environ["GRADIO_CACHE_EXAMPLES"] = "true"
        os.environ["GRADIO_CACHE_MODE"] = "eager"
        os.environ["GRADIO_EXAMPLES_CACHE"] = tempfile.mkdtemp(prefix="dlp_examples_")
    build_app(args.tabs).launch(server_name=args.host, server_port=args.port, share=args.share,
                                max_file_size=MAX_FILE_SIZE, theme=THEME, css=CSS,
                                js=links.ADDRESS_BAR_JS)


if __name__ == "__main__":
    main()
