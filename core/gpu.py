"""Optional GPU on Hugging Face Spaces (ZeroGPU).

On a ZeroGPU Space no GPU is attached while the app runs: one is lent for the duration of
each call to a function wrapped in `spaces.GPU`. `on_gpu` wraps a heavy function that way
when the `spaces` package is importable and there is a GPU to get (a ZeroGPU Space, or a
machine with CUDA); everywhere else it returns the function unchanged, so the same code
runs on a laptop's CPU. `spaces` is not in requirements.txt: Spaces installs it.

    @on_gpu(duration=120)
    def stylize(image, style, steps): ...
"""
import torch


def on_gpu(duration: int = 60):
    """Decorator: run the function on a lent GPU for at most `duration` seconds per call
    (plain and generator functions alike), or leave it as it is when there is none."""

    def decorate(fn):
        try:
            import spaces
            from spaces.config import Config
        except ImportError:
            return fn
        if not (getattr(Config, "zero_gpu", False) or torch.cuda.is_available()):
            return fn
        return spaces.GPU(duration=duration)(fn)

    return decorate
