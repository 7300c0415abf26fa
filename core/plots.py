"""Plots the tabs share, drawn with matplotlib (no Gradio): per-epoch curves, a confusion
matrix, and the Overview's small thumbnails."""
import matplotlib
import numpy as np
from PIL import Image

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# Plots are read from the back of a lecture hall: larger type than matplotlib's 10 pt. They are
# drawn on transparent: the page inverts them in its dark theme (app.CSS), so they are never a
# white box there. A figure saved for the docs asks for a white background itself.
plt.rcParams.update({"font.size": 12, "axes.titlesize": 13, "axes.labelsize": 12, "legend.fontsize": 11,
                     "xtick.labelsize": 11, "ytick.labelsize": 11, "figure.dpi": 100,
                     "figure.facecolor": "none", "axes.facecolor": "none", "savefig.facecolor": "none",
                     "legend.framealpha": 0.6})


def curves(history: list[dict], panels: dict[str, list[str]], title: str = ""):
    """A row of line plots from a per-epoch history: panels maps a y-label to the keys
    plotted on it, e.g. {"loss": ["train_loss", "val_loss"]}."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2), squeeze=False)
    epochs = [h["epoch"] for h in history]
    for ax, (ylabel, keys) in zip(axes[0], panels.items()):
        for key in keys:
            # a key missing or None in an epoch (e.g. not validated then) leaves a gap
            values = [h.get(key) for h in history]
            ax.plot(epochs, [float("nan") if v is None else v for v in values], label=key.replace("_", " "))
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def confusion_figure(matrix, names: list[str]):
    """A confusion matrix (rows: true class), shaded by each row's share, with the counts."""
    matrix = np.array(matrix)
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    ax.imshow(matrix / matrix.sum(1, keepdims=True).clip(min=1), cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right")
    ax.set_yticks(range(len(names)), names)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, matrix[i, j], ha="center", va="center", fontsize=7,
                    color="white" if matrix[i, j] > matrix[i].sum() / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.tight_layout()
    return fig


# ---- the Overview's thumbnails --------------------------------------------------------------

def figure_image(fig) -> Image.Image:
    """A matplotlib figure as an RGBA PIL image on transparent, marked as a chart
    (image.info["chart"], which the page inverts in its dark theme); the figure is closed."""
    fig.tight_layout()
    fig.canvas.draw()
    image = Image.fromarray(np.asarray(fig.canvas.buffer_rgba()).copy(), "RGBA")
    image.info["chart"] = True
    plt.close(fig)
    return image


def is_chart(image) -> bool:
    return isinstance(image, Image.Image) and bool(image.info.get("chart"))


def curves_image(lines: dict[str, tuple[list, list]], xlabel: str, ylabel: str, percent: bool = False,
                 xticks: list[str] | None = None) -> Image.Image:
    """A small plot with large type (it is read from the back of a room): lines maps a
    label to its (x, y) values."""
    fig, ax = plt.subplots(figsize=(4.5, 3), dpi=80)
    for label, (x, y) in lines.items():
        ax.plot(x, [v * 100 for v in y] if percent else y, label=label, linewidth=2.5)
    ax.set_xlabel(xlabel, fontsize=13)
    ax.set_ylabel(ylabel + (" (%)" if percent else ""), fontsize=13)
    ax.tick_params(labelsize=11)
    if xticks:
        ax.set_xticks(range(len(xticks)), xticks)
    ax.grid(alpha=0.3)
    if len(lines) > 1:
        ax.legend(fontsize=10)
    return figure_image(fig)


def placeholder(text: str) -> Image.Image:
    fig, ax = plt.subplots(figsize=(4.5, 3), dpi=80)
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=16, color="0.4", wrap=True)
    ax.set_axis_off()
    return figure_image(fig)
