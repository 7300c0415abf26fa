"""Inside a network, for one input, as CNN Explainer shows it: what every layer outputs, and
where the last convolutional layer looked for the class it chose (Grad-CAM, Selvaraju et al.
2017: the layer's maps weighted by the class score's mean gradient over each map)."""
import math
import threading
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass
class Layer:
    name: str  # e.g. "conv 2"
    module: nn.Module
    about: str  # what it does, in a line


def layers_of(model: nn.Module, most: int = 12) -> list[Layer]:
    """The layers worth showing, in order: the convolutions that look at neighbouring pixels
    (1x1 ones only mix channels; with more than `most`, `most` spread evenly from the first to
    the last) and the hidden dense layers after them."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    convs = [c for c in convs if c.kernel_size != (1, 1)] or convs
    if len(convs) > most:
        convs = [convs[i] for i in sorted({round(j) for j in np.linspace(0, len(convs) - 1, most)})]
    named = dict(model.named_modules())

    def in_a_conv_block(name: str) -> bool:  # e.g. squeeze-and-excitation's dense layers
        parts = name.split(".")
        return any(any(isinstance(m, nn.Conv2d) for m in named[".".join(parts[:i])].modules())
                   for i in range(1, len(parts)))

    linears = [m for name, m in named.items() if isinstance(m, nn.Linear) and not in_a_conv_block(name)]
    linears = linears[:-1]  # the last one gives the scores
    found = []
    for i, conv in enumerate(convs):
        k, s = conv.kernel_size[0], conv.stride[0]
        what = ("simple patterns: edges, strokes, spots of colour or ink" if i == 0 else
                "whole parts at coarse positions: what the classifier reads" if i == len(convs) - 1 else
                "combinations of the patterns of the layer before, over a wider area")
        found.append(Layer(f"conv {i + 1}", conv,
                           f"{conv.out_channels} filters of {k}x{k}" + (f", stride {s}" if s > 1 else "")
                           + (", one per channel (depthwise)" if conv.groups > 1 else "") + f": {what}"))
    for i, linear in enumerate(linears):
        found.append(Layer(f"dense {i + 1}", linear, f"{linear.out_features} units, each a weighted sum of "
                                                     f"all {linear.in_features} values before it"))
    return found


ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.SiLU, nn.GELU, nn.Hardswish, nn.LeakyReLU)


def shown_module(model: nn.Module, layer: Layer) -> nn.Module:
    """What to read a layer's output from: the activation that follows a convolution in its block
    (before the next convolution), so the maps are what the next layer reads; else the layer."""
    modules = list(model.modules())
    for m in modules[modules.index(layer.module) + 1:]:
        if isinstance(m, nn.Conv2d):
            break
        if isinstance(m, ACTIVATIONS):
            return m
    return layer.module


def layer_outputs(model: nn.Module, x: torch.Tensor, layers: list[Layer]) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Each layer's output for one input x (1, ...), after the activation that follows it (see
    shown_module), and the model's scores."""
    captured = {}
    handles = []
    caller = threading.get_ident()
    for i, layer in enumerate(layers):
        def keep(mod, inp, out, i=i):
            if threading.get_ident() != caller:  # another request's pass through the same cached model
                return
            captured.setdefault(i, out.detach()[0].float().clone())  # a shared activation runs more than once
        handles.append(shown_module(model, layer).register_forward_hook(keep))
    try:
        with torch.inference_mode():
            logits = model(x)
    finally:
        for handle in handles:
            handle.remove()
    return [captured[i] for i in range(len(layers))], logits[0].float()


def grad_cam(model: nn.Module, x: torch.Tensor, layer: nn.Module | None, target: int) -> np.ndarray:
    """Where `layer` looked for class `target`: a (H, W) map in [0, 1] at x's size. Without a
    layer (a network with no convolution) the input's own gradient times the input."""
    # Gradients by torch.autograd.grad, not backward(): nothing accumulates in the parameters of
    # a model the app shares between requests.
    if layer is None:
        with torch.enable_grad():
            pixels = x.clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(model(pixels)[0, target], pixels)
        heat = torch.relu(grad * pixels).detach()[0].sum(0)
        return (heat / heat.max().clamp_min(1e-8)).numpy()
    saved, caller = {}, threading.get_ident()

    def keep(mod, inp, out):
        if threading.get_ident() == caller:  # not another request's pass through the same cached model
            saved["maps"] = out

    handle = layer.register_forward_hook(keep)
    try:
        with torch.enable_grad():  # the input asks for gradients: a model frozen elsewhere still gives them
            scores = model(x.clone().requires_grad_(True))
            maps = saved["maps"]
            (grad,) = torch.autograd.grad(scores[0, target], maps)
    finally:
        handle.remove()
    weights = grad[0].mean(dim=(1, 2), keepdim=True)
    heat = torch.relu((weights * maps[0]).sum(0)).detach()[None, None]
    heat = nn.functional.interpolate(heat, size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    return (heat / heat.max().clamp_min(1e-8)).numpy()


def tile(output: torch.Tensor, count: int = 16, cols: int = 4, cell: int = 48) -> np.ndarray:
    """A layer's output as a uint8 picture: for maps (C, H, W) the `count` most active channels
    (each scaled to its own range, bright = strong), for a vector its values as a square of
    cells (bright = strong)."""
    if output.dim() == 1:
        side = math.ceil(math.sqrt(output.numel()))
        values = torch.zeros(side * side)
        values[:output.numel()] = output
        picture = _scaled(values.view(1, side, side))[0]
        return np.kron(picture, np.ones((max(1, 192 // side),) * 2, dtype=np.uint8))
    strongest = output.mean(dim=(1, 2)).argsort(descending=True)[:count]
    maps = _scaled(output[strongest])
    repeat = max(1, cell // maps.shape[-1])
    h, w = maps.shape[1] * repeat, maps.shape[2] * repeat
    rows = math.ceil(len(maps) / cols)
    grid = np.full((rows * (h + 2), min(cols, len(maps)) * (w + 2)), 128, dtype=np.uint8)
    for i, m in enumerate(maps):
        r, c = divmod(i, cols)
        grid[r * (h + 2) + 1:r * (h + 2) + 1 + h, c * (w + 2) + 1:c * (w + 2) + 1 + w] = np.kron(
            m, np.ones((repeat, repeat), dtype=np.uint8))
    return grid


def captioned(layers: list[Layer], outputs: list[torch.Tensor]) -> list[tuple[np.ndarray, str]]:
    """Each layer's output as (tile picture, caption saying its size and what it does)."""
    shown = []
    for layer, output in zip(layers, outputs):
        size = f"{output.shape[0]} maps of {output.shape[1]}x{output.shape[2]}" if output.dim() == 3 else \
            f"{output.numel()} values"
        strongest = ", the 16 strongest shown" if output.dim() == 3 and output.shape[0] > 16 else ""
        shown.append((tile(output), f"{layer.name} ({size}{strongest}): {layer.about}"))
    return shown


def _scaled(maps: torch.Tensor) -> np.ndarray:
    lo = maps.amin(dim=(1, 2), keepdim=True)
    hi = maps.amax(dim=(1, 2), keepdim=True)
    return ((maps - lo) / (hi - lo).clamp_min(1e-6) * 255).round().byte().numpy()


def overlay(picture: np.ndarray, heat: np.ndarray, size: int = 192) -> np.ndarray:
    """The heat map (H, W) in [0, 1] over a dimmed picture (H, W) or (H, W, 3) uint8, from dark
    red to yellow, scaled up to `size` pixels for the eye."""
    rgb = np.repeat(picture[..., None], 3, axis=2) if picture.ndim == 2 else picture
    colour = np.stack([np.clip(2 * heat, 0, 1), np.clip(2 * heat - 1, 0, 1), np.zeros_like(heat)], axis=2)
    mixed = np.clip(0.45 * rgb + 255 * colour * heat[..., None] ** 0.5, 0, 255).round().astype(np.uint8)
    repeat = max(1, size // mixed.shape[0])
    return np.kron(mixed, np.ones((repeat, repeat, 1), dtype=np.uint8))
