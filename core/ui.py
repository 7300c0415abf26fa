"""Small helpers the tabs share: turning bad input into a clear message, and plots."""
import functools
import inspect

import gradio as gr
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


class BadInput(ValueError):
    """Input a user can fix (empty canvas, number out of range): shown as a message."""


def user_errors(fn):
    """Wrap a Gradio handler so a BadInput (or a missing checkpoint) becomes a gr.Error
    with its message, instead of a generic 'Error' and a traceback in the log."""
    from core.checkpoints import MissingCheckpoint

    if inspect.isgeneratorfunction(fn):  # streaming handlers stay generators for Gradio
        @functools.wraps(fn)
        def streaming(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except (BadInput, MissingCheckpoint) as e:
                raise gr.Error(str(e), print_exception=False) from e
        return streaming

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (BadInput, MissingCheckpoint) as e:
            raise gr.Error(str(e), print_exception=False) from e
    return wrapper


# The Sketchpad opens with no tool selected ("select the draw tool to start"), so a first
# stroke draws nothing. Pick the brush for the user whenever a canvas shows that hint.
PICK_BRUSH_JS = """
window.dlpPickBrush = window.dlpPickBrush || setInterval(() => {
  for (const pad of document.querySelectorAll('.dlp-sketchpad')) {
    if (pad.offsetParent !== null && pad.innerText.includes('select the draw tool')) {
      pad.querySelector('button[aria-label="Brush"]')?.click();
    }
  }
}, 500);
"""


def drawing_canvas(label: str, elem_id: str) -> gr.Sketchpad:
    """A 280x280 Sketchpad with a black brush thick enough to survive shrinking to 28x28,
    whose brush is picked automatically."""
    canvas = gr.Sketchpad(label=label, type="numpy", image_mode="RGBA", canvas_size=(280, 280),
                          brush=gr.Brush(default_size=18, colors=["#000000"], color_mode="fixed"),
                          layers=False, elem_id=elem_id, elem_classes=["dlp-sketchpad"])
    gr.HTML("", js_on_load=PICK_BRUSH_JS, visible="hidden")
    return canvas


def curves(history: list[dict], panels: dict[str, list[str]], title: str = ""):
    """A row of line plots from a per-epoch history: panels maps a y-label to the keys
    plotted on it, e.g. {"loss": ["train_loss", "val_loss"]}."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2), squeeze=False)
    epochs = [h["epoch"] for h in history]
    for ax, (ylabel, keys) in zip(axes[0], panels.items()):
        for key in keys:
            ax.plot(epochs, [h[key] for h in history], label=key.replace("_", " "))
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
