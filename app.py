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

from core.memory import keep_memory_flat  # noqa: E402
from core.sessions import lazy_session_configs  # noqa: E402
from core.ui import readable_input_errors  # noqa: E402

# One line per tab: the module in demos/ that lays it out. Adding a tab adds a line here.
TABS = ["overview", "fizzbuzz", "mnist", "gan", "vae", "cifar10", "transfer", "text_classification", "speech", "translation", "style_transfer", "detection", "faces"]

# Uploads: at most 25 MB a file (a phone photo is under 15 MB, a 20-second WAV, the speech
# tab's limit, under 4 MB at 48 kHz stereo), and no picture over 50 megapixels is decoded:
# PIL refuses more than twice MAX_IMAGE_PIXELS, so an 8000x8000 upload is turned away before
# it takes 256 MB of memory.
MAX_FILE_SIZE = "25mb"
# Requests waiting at once, over all tabs: beyond it a request is turned away with a "busy"
# message at once instead of waiting behind hours of work. Heavy jobs are bounded by their tabs.
MAX_QUEUE = 64
THEME = gr.themes.Default(text_size="lg")  # readable on a projector; light and dark both defined
Image.MAX_IMAGE_PIXELS = 25_000_000


def build_app(tabs=None) -> gr.Blocks:
    lazy_session_configs()
    # Every hour Gradio deletes the files it saved for results and uploads over two hours ago
    # (a Space runs for weeks; the cached examples are kept).
    with gr.Blocks(title="Deep Learning Playground", delete_cache=(3600, 7200)) as demo:
        with gr.Row():
            gr.Markdown("# Deep Learning Playground\nClassic deep-learning experiments, trained by this "
                        "project's own scripts, running live. Every number shown was measured.")
            # Light or dark for the room: the browser's setting by default, ?__theme=dark in the URL, or this.
            theme_button = gr.Button("Light / dark", size="sm", scale=0, elem_id="theme-toggle")
        theme_button.click(None, js="() => { document.body.classList.toggle('dark'); }",
                           api_name="toggle_theme", api_visibility="private")
        tabs = tabs or TABS
        links = []  # (button, tab id) pairs a tab's build() returns, e.g. the Overview's
        with gr.Tabs() as tab_bar:
            for name in tabs:
                module = importlib.import_module(f"demos.{name}")
                with gr.Tab(module.TITLE, id=name, elem_id=f"tab-{name}"):
                    try:
                        links += module.build() or []
                    except Exception as e:  # one broken tab must not take the others down
                        logging.exception("tab %s failed to build", name)
                        gr.Markdown(f"**This tab failed to load:** `{type(e).__name__}: {e}`")
        for button, target in links:
            if target in tabs:
                button.click(lambda target=target: gr.Tabs(selected=target), outputs=tab_bar,
                             api_name=f"open_{target}", api_visibility="private")
            else:
                button.visible = False  # that tab was not loaded (--tabs)
    demo.queue(default_concurrency_limit=2, max_size=MAX_QUEUE)
    say_busy_when_full(demo)
    return readable_input_errors(demo)


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
                                max_file_size=MAX_FILE_SIZE, theme=THEME)


if __name__ == "__main__":
    main()
