"""Small helpers the tabs share: turning bad input into a clear message, and plots."""
import functools

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

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (BadInput, MissingCheckpoint) as e:
            raise gr.Error(str(e), print_exception=False) from e
    return wrapper


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
