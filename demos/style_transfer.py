"""Neural style transfer: a photo in a painting's style, by Gatys et al.'s optimisation
(streamed step by step) or by a feed-forward network trained here per painting.

Optimisations take minutes and feed-forward runs a second, so they never share a queue:
the tab's one event lets feed-forward runs through at once and sends optimisations to
LANE, which runs one at a time (the others wait, told their place and the time left) and
which Stop empties within half a step."""
import contextlib
import functools
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd
import skimage
import torch
from PIL import Image

from core import checkpoints, links
from core.errors import BadInput
from core.gpu import on_gpu
from core.pictures import open_picture, read_picture
from core.results import Entry, Figure
from core.training import pick_device
from core.ui import clear_refused_uploads, output_file, user_errors
from models.style_transfer import (ADAIN_STYLE_SIZE, ARBITRARY, FEATURE_NETWORKS, HELD_OUT_PAINTINGS, MULTI, PAINTINGS,
                                   AdaINNet, FeatureNetworkUnavailable, MultiStyleNet, available_feature_networks,
                                   best_feature_network, brush_strokes, checkpoint_name, load_feature_network,
                                   load_network, stained_glass, style_images_dir, stylise, stylize_steps, to_pil,
                                   to_tensor, train_command)
from models.style_transfer import keep_colours as with_photo_colours, painting as painting_tensor

TITLE = "Style transfer"
SKIMAGE_DATA = Path(skimage.__file__).parent / "data"
# Pictures that ship inside scikit-image (a dependency) and two the project draws itself.
CONTENT_EXAMPLES = [SKIMAGE_DATA / n for n in ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg",
                                                "motorcycle_left.png")]
STYLE_EXAMPLES = [SKIMAGE_DATA / n for n in ("ihc.png", "hubble_deep_field.jpg", "gravel.png")]
MADE_EXAMPLES = Path(tempfile.gettempdir()) / "dlp_style_transfer_examples"
HUGE = 2048  # a longer side above this gets a note that the picture was scaled down
SIZES = {"optimize": (64, 768), "fast": (64, 1024)}  # output's longer side, per method
ANY = "any"  # the painting dropdown's "the style image above": the AdaIN network
ARBITRARY_COMMAND = "python -m train.style_transfer_arbitrary"
MAX_STEPS = 1000
# On a shared server (a Hugging Face Space, or DLP_SHARED_SERVER=1) one optimisation is bounded
# tighter: 200 steps at 384 px take about 2 minutes on a free 2-core CPU (500 at 768 px: 22).
SHARED_MAX_STEPS, SHARED_MAX_SIZE = 200, 384
MIN_SIDE = 32  # the shorter side after resizing: VGG-19 halves it four times, the feed-forward net twice
WAITING_AT_MOST = 2  # optimisations waiting behind the running one; more are refused until one ends
# Gradio's concurrency for the tab's event: the optimisations (running and waiting) hold at most
# 1 + WAITING_AT_MOST of these, so feed-forward runs always find two free.
SLOTS = 1 + WAITING_AT_MOST + 2
WAIT_UPDATE_S = 1.0  # a waiting optimisation says its place and time left this often
# The running optimisation pauses between half steps while a feed-forward run computes (both
# want every core), but for at most this long at a time, so a stream of them cannot starve it.
YIELD_TO_LIGHT_AT_MOST_S = 5.0
PREVIEW_EVERY_S = 0.7  # the tab shows a new picture at most this often


# ---- inputs ---------------------------------------------------------------------------------

def load_picture(image, what: str, size: int, min_side: int = 1) -> tuple[Image.Image, list[str]]:
    """Any picture core.pictures.read_picture reads -> RGB with its longer side `size`, and
    notes on what was changed: transparency over white, grayscale to colour, huge images
    shrunk. A picture whose shorter side would then be under `min_side` is refused."""
    notes = []
    picture = read_picture(image, what, min_side=8, max_side=size, notes=notes)
    shorter = round(min(picture.size) * size / max(picture.size))
    if shorter < min_side:
        width, height = _original_size(image)
        raise BadInput(f"The {what} is {width}x{height} pixels: at {size} px on its longer side its shorter side "
                       f"would be {shorter} px, and style transfer needs at least {min_side}. Crop it to a less long "
                       f"and thin picture (at most {size // min_side}:1 at this output size).")
    if not any("grayscale" in note for note in notes) and _is_gray(picture):
        notes.append(f"the {what} is grayscale: used as gray RGB")
    if max(picture.size) != size:  # smaller pictures are scaled up to the size asked for
        scale = size / max(picture.size)
        picture = picture.resize((max(1, round(picture.width * scale)), max(1, round(picture.height * scale))),
                                 Image.Resampling.LANCZOS)
    original = _original_size(image)
    if max(original) > HUGE:
        notes.append(f"the {what} is large ({original[0]}x{original[1]}): "
                     f"scaled down to {picture.width}x{picture.height}")
    return picture, notes


def _original_size(image) -> tuple[int, int]:
    """The size of the picture as uploaded (a file's from its header: read_picture has
    already decoded it smaller)."""
    if isinstance(image, dict):  # a Sketchpad value, or an upload's file dict (preprocess=False)
        image = image.get("composite") if "composite" in image else image.get("path")
    if isinstance(image, (str, Path)):
        with open_picture(image) as probe:
            return probe.size
    if isinstance(image, Image.Image):
        return image.size
    array = np.asarray(image)
    return array.shape[1], array.shape[0]


def _is_gray(image: Image.Image) -> bool:
    """An RGB picture whose three channels are (almost) the same."""
    small = np.asarray(image.resize((32, 32))).astype(int)
    return bool(np.abs(small[..., 0] - small[..., 1]).max() <= 2 and np.abs(small[..., 1] - small[..., 2]).max() <= 2)


def _check_number(value, name: str, lo, hi, integer: bool = False, why: str = ""):
    if value is None or not np.isfinite(float(value)) or not lo <= float(value) <= hi:
        raise BadInput(f"{name} must be {lo}..{hi}{why}, not {value!r}.")
    return int(value) if integer else float(value)


def shared_server() -> bool:
    """A Hugging Face Space (which sets SPACE_ID) or DLP_SHARED_SERVER=1: optimisations are
    bounded tighter, since one holds the CPU for everyone."""
    return bool(os.environ.get("SPACE_ID")) or os.environ.get("DLP_SHARED_SERVER") == "1"


def optimisation_limits() -> tuple[int, int]:
    """(most steps, largest output side) of one optimisation on this server."""
    return (SHARED_MAX_STEPS, SHARED_MAX_SIZE) if shared_server() else (MAX_STEPS, SIZES["optimize"][1])


# ---- the two methods ------------------------------------------------------------------------

def has_multi() -> bool:
    """Whether the one network for all six paintings (train_command(MULTI)) is trained."""
    return checkpoints.find(checkpoint_name(MULTI)) is not None


def has_arbitrary() -> bool:
    """Whether the network that takes any painting (ARBITRARY_COMMAND) is trained."""
    return checkpoints.find(checkpoint_name(ARBITRARY)) is not None


@functools.cache
def load_arbitrary(device: str = "cpu") -> AdaINNet:
    # channels-last memory: a third faster on this CPU (benchmarks/style_transfer_lite.py)
    return checkpoints.load(AdaINNet, checkpoint_name(ARBITRARY), ARBITRARY_COMMAND, device).to(
        memory_format=torch.channels_last)


def fast_paintings() -> list[str]:
    """Paintings that have a trained feed-forward network (committed or on the Hub)."""
    if has_multi():
        return list(PAINTINGS)
    return [p for p in PAINTINGS if checkpoints.find(checkpoint_name(p)) is not None]


@functools.cache
def load_fast(painting: str, device: str = "cpu", network: str = "auto"):
    """(network, its checkpoint name) for a painting: the multi-style network when it is
    trained (network="auto" or "multi"), else the painting's own (network="single")."""
    if painting not in PAINTINGS:
        raise BadInput(f"Unknown painting {painting!r}; the feed-forward networks are for {list(PAINTINGS)}.")
    if network not in ("auto", "multi", "single"):
        raise BadInput(f"The feed-forward network is 'auto', 'multi' or 'single', not {network!r}.")
    style = MULTI if network == "multi" or (network == "auto" and has_multi()) else painting
    return load_network(style, device), checkpoint_name(style)


def feature_network(name: str = "auto", device="cpu"):
    if name not in ("auto", *FEATURE_NETWORKS):
        raise BadInput(f"Unknown feature network {name!r}; choose 'auto' or one of {list(FEATURE_NETWORKS)}.")
    try:
        return load_feature_network(name, device)
    except FeatureNetworkUnavailable as e:
        raise BadInput(str(e)) from e


def stylize_stream(content, style, steps: int = 60, size: int = 256, method: str = "optimize",
                   feature_net: str = "auto", style_weight: float | None = None, content_weight: float = 1.0,
                   optimizer: str = "adam", init: str = "content", style_layers=None, content_layers=None,
                   lr: float | None = None, fast_network: str = "auto", strength: float = 1.0,
                   keep_colours: bool = False, should_stop=None):
    """The generator behind stylize(): yields (picture, info) after every optimisation step
    (once for method="fast"). info holds "step", "steps", "losses" (for "optimize"),
    "feature_network", "notes" (what was done to the inputs) and "content" (the photo as
    it was used, for before/after).

    content: a picture (path, PIL image or array). style: a picture, or the name of one of
    PAINTINGS. method="fast" with a painting's name goes through the multi-style network when
    it is trained (fast_network="single": the painting's own; "arbitrary": the AdaIN network),
    with any other picture through the AdaIN network. style_weight and lr default to the
    feature network's (FEATURE_NETWORKS). strength: 1 is the full style, 0 the photo (the
    AdaIN network blends features, the others pixels); keep_colours keeps the photo's colours
    and takes only the brightness from the style.
    should_stop: a function asked every half step; when it answers True the stream ends."""
    if method not in SIZES:
        raise BadInput(f"method must be 'optimize' or 'fast', not {method!r}.")
    strength = _check_number(strength, "The strength", 0, 1)
    if method == "optimize":
        yield from _optimise(_prepare_optimisation(content, style, steps, size, feature_net, style_weight,
                                                   content_weight, optimizer, init, style_layers, content_layers, lr,
                                                   strength=strength, keep_colours=keep_colours), should_stop)
        return
    size = _check_number(size, "The output size", *SIZES["fast"], integer=True)
    device = pick_device("auto")
    if fast_network not in ("auto", "multi", "single", ARBITRARY):
        raise BadInput(f"The feed-forward network is 'auto', 'multi', 'single' or '{ARBITRARY}', not {fast_network!r}.")
    named = isinstance(style, str) and style in PAINTINGS
    if style is None or (isinstance(style, str) and not style.strip()):
        raise BadInput("Choose a painting or upload a style image.")
    arbitrary = fast_network == ARBITRARY or not named
    photo, notes = load_picture(content, "content photo", size, MIN_SIDE)
    if arbitrary:  # the painting at ADAIN_STYLE_SIZE whatever the output's size: its strokes keep their scale
        net, name = load_arbitrary(str(device)), checkpoint_name(ARBITRARY)
        if named:
            painting = painting_tensor(style, ADAIN_STYLE_SIZE)
        else:
            picture, style_notes = load_picture(style, "style image", ADAIN_STYLE_SIZE, MIN_SIDE)
            painting, notes = to_tensor(picture), notes + style_notes
    else:
        net, name = load_fast(style, str(device), fast_network)
    start = time.perf_counter()
    with LANE.light_run(), torch.inference_mode():
        x = to_tensor(photo).to(device)
        if arbitrary:
            out = net(x.contiguous(memory_format=torch.channels_last),
                      painting.to(device).contiguous(memory_format=torch.channels_last), strength).clamp(0, 1)
        else:
            out = stylise(net, x, PAINTINGS.index(style)).clamp(0, 1)
            out = strength * out + (1 - strength) * x
        if keep_colours:
            out = with_photo_colours(out, x)
    trained_with = net.encoder.name if arbitrary else checkpoints.load_metrics(name).get("feature_network", "?")
    info = {"step": 1, "steps": 1, "feature_network": trained_with,
            "fast_network": ARBITRARY if arbitrary else "multi" if isinstance(net, MultiStyleNet) else "single",
            "painting": style if named else None, "notes": notes, "content": photo,
            "seconds": time.perf_counter() - start}
    yield to_pil(out), info


def _prepare_optimisation(content, style, steps, size, feature_net, style_weight, content_weight, optimizer, init,
                          style_layers, content_layers, lr=None, strength: float = 1.0, keep_colours: bool = False) -> dict:
    """Every setting checked and both pictures read (before an optimisation waits for its
    turn, so a mistake is told at once): what _optimise() runs."""
    most_steps, largest = optimisation_limits()
    why = " on this shared server" if shared_server() else ""
    size = _check_number(size, "The output size", SIZES["optimize"][0], largest, integer=True, why=why)
    steps = _check_number(steps, "Steps", 1, most_steps, integer=True, why=why)
    extractor = feature_network(feature_net, pick_device("auto"))
    network = FEATURE_NETWORKS[extractor.name]
    style_weight = _check_number(network.style_weight if style_weight is None else style_weight, "The style weight",
                                 0, 1e6)
    content_weight = _check_number(content_weight, "The content weight", 0, 1e6)
    if optimizer not in ("adam", "lbfgs"):
        raise BadInput(f"optimizer must be 'adam' or 'lbfgs', not {optimizer!r}.")
    if init not in ("content", "noise"):
        raise BadInput(f"Start from 'content' or 'noise', not {init!r}.")
    photo, notes = load_picture(content, "content photo", size, MIN_SIDE)
    if isinstance(style, str) and style in PAINTINGS:
        painting, style_notes = to_pil(painting_tensor(style, size)), []
    else:
        painting, style_notes = load_picture(style, "style image", size, MIN_SIDE)
    layers = network.layers
    for chosen, kind in ((style_layers, "style"), (content_layers, "content")):
        # the tab passes what the request sent (preprocess=False): it may be any JSON value
        if chosen is not None and (not isinstance(chosen, (list, tuple)) or not chosen
                                   or not all(isinstance(c, str) and c in layers for c in chosen)):
            raise BadInput(f"Pick at least one {kind} layer of {extractor.name}: {list(layers)}.")
    return {"extractor": extractor, "photo": photo, "painting": painting, "steps": steps, "notes": notes + style_notes,
            "strength": strength, "keep_colours": bool(keep_colours),
            "settings": dict(style_weight=style_weight, content_weight=content_weight, optimizer=optimizer,
                             lr=network.lr if lr is None else lr, tv_weight=network.tv_weight, init=init,
                             style_layers=style_layers or None, content_layers=content_layers or None)}


def _optimise(prepared: dict, should_stop=None):
    """Gatys et al.'s optimisation of a _prepare_optimisation(): (picture, info) every step."""
    extractor, device = prepared["extractor"], pick_device("auto")
    info = {"steps": prepared["steps"], "feature_network": extractor.name, "notes": prepared["notes"],
            "content": prepared["photo"], "losses": []}
    start = time.perf_counter()
    photo = to_tensor(prepared["photo"]).to(device)
    strength = prepared.get("strength", 1.0)
    for image, step, losses in stylize_steps(extractor, photo, to_tensor(prepared["painting"]).to(device),
                                             steps=prepared["steps"], should_stop=should_stop, **prepared["settings"]):
        info["losses"].append({"step": step, **losses})
        if strength != 1:
            image = strength * image + (1 - strength) * photo
        if prepared.get("keep_colours"):
            image = with_photo_colours(image, photo)
        yield to_pil(image), dict(info, step=step, seconds=time.perf_counter() - start)


def stylize(content, style, steps: int = 60, size: int = 256, method: str = "optimize", **options) -> Image.Image:
    """A photo in a painting's style. method="optimize": Gatys et al., `steps` steps on
    the picture itself, style is any picture; method="fast": one pass through the network
    trained for painting `style` (a name, see fast_paintings()). size is the output's
    longer side. options: see stylize_stream()."""
    picture = None
    for picture, _ in stylize_stream(content, style, steps=steps, size=size, method=method, **options):
        pass
    return picture


# ---- one optimisation at a time ---------------------------------------------------------------

@dataclass(eq=False)
class Ticket:
    """An optimisation's place in the lane: who asked (a Gradio session), how much work it
    is, how far it got and how fast, and its stop flag."""
    session: str | None
    steps: int
    pixels: int
    step: int = 0
    seconds_per_step: float | None = None
    first_step_at: float = 0.0
    stop: threading.Event = field(default_factory=threading.Event)


class OptimisationLane:
    """Optimisations in arrival order: the first runs, at most `waiting_at_most` wait, later
    ones are refused (try again) instead of queueing for an hour. A ticket leaves when its
    work has ended (finished, stopped, cancelled or its client gone), never before."""

    def __init__(self, waiting_at_most: int):
        self.waiting_at_most = waiting_at_most
        self.tickets: list[Ticket] = []  # the first one runs
        self.changed = threading.Condition()
        self.steps_computed = 0  # every optimisation step taken here (for tests and the soak benchmark)
        self.light_runs = 0  # feed-forward runs computing now

    @contextlib.contextmanager
    def light_run(self):
        """Around a feed-forward run: the running optimisation pauses meanwhile."""
        with self.changed:
            self.light_runs += 1
        try:
            yield
        finally:
            with self.changed:
                self.light_runs -= 1
                self.changed.notify_all()

    def yield_to_light(self, ticket: Ticket, at_most: float):
        """Pause while feed-forward runs compute (at most `at_most` seconds, less when stopped)."""
        with self.changed:
            self.changed.wait_for(lambda: self.light_runs == 0 or ticket.stop.is_set(), at_most)

    def join(self, ticket: Ticket):
        with self.changed:
            if len(self.tickets) > self.waiting_at_most:
                raise BadInput(f"Busy: one optimisation is running and {len(self.tickets) - 1} are waiting. Try again "
                               "in a few minutes, or use the feed-forward method, which does not wait.")
            self.tickets.append(ticket)

    def wait_turn(self, ticket: Ticket, timeout: float) -> bool:
        """Whether it is `ticket`'s turn, after waiting at most `timeout` seconds (less when stopped)."""
        with self.changed:
            self.changed.wait_for(lambda: self.tickets[0] is ticket or ticket.stop.is_set(), timeout)
            return self.tickets[0] is ticket and not ticket.stop.is_set()

    def record(self, ticket: Ticket, step: int, seconds: float) -> bool:
        """A step of the running ticket, `seconds` after it started: False (not recorded) once it
        was stopped, so the step Stop reported stays the last one shown. Its pace is measured
        from its first step on (the start, computing the painting's Gram matrices, is slower)."""
        with self.changed:
            if ticket.stop.is_set():
                return False
            self.steps_computed += 1
            if step == 0:
                ticket.first_step_at, ticket.seconds_per_step = seconds, seconds
            else:
                ticket.seconds_per_step = (seconds - ticket.first_step_at) / step
            ticket.step = step
            return True

    def leave(self, ticket: Ticket):
        with self.changed:
            if ticket in self.tickets:
                self.tickets.remove(ticket)
            self.changed.notify_all()

    def stop(self, session: str) -> Ticket | None:
        """Stop every optimisation of a session, running or waiting; the first of them, or None."""
        with self.changed:
            mine = [t for t in self.tickets if session is not None and t.session == session]
            for ticket in mine:
                ticket.stop.set()
            self.changed.notify_all()
            return mine[0] if mine else None

    def ahead_of(self, ticket: Ticket) -> tuple[list[Ticket], float | None]:
        """The tickets before `ticket` and the seconds until its turn: the running one's steps
        left at its measured pace, and the waiting ones' steps at that pace scaled by their
        pixels (None until the running one has taken a step)."""
        with self.changed:
            ahead = self.tickets[:self.tickets.index(ticket)] if ticket in self.tickets else []
            if not ahead or ahead[0].seconds_per_step is None:
                return ahead, None
            running = ahead[0]
            per_pixel_step = running.seconds_per_step / running.pixels
            return ahead, (max(0, running.steps - running.step - 1) * running.seconds_per_step
                           + sum(t.steps * t.pixels * per_pixel_step for t in ahead[1:]))

    def running(self) -> Ticket | None:
        with self.changed:
            return self.tickets[0] if self.tickets else None


LANE = OptimisationLane(WAITING_AT_MOST)


def waiting_status(ahead: list[Ticket], seconds: float | None) -> str:
    """What a waiting optimisation tells its user: its place and the time until its turn."""
    others = "optimisation" if len(ahead) == 1 else "optimisations"
    text = f"Waiting for {len(ahead)} {others} ahead of yours (the running one is at step {ahead[0].step}/{ahead[0].steps}"
    text += f"; your turn in about {seconds:.0f} s)." if seconds is not None else "; timing its first step)."
    return text + " Feed-forward runs do not wait. Stop gives up your place."


def _in_turn(prepared: dict, session: str | None):
    """An optimisation in the lane: yields ("waiting", status) about once a second until its
    turn, then ("step", picture, info) every step, then ("stopped", ticket) if it was stopped.
    It leaves the lane however it ends, also when Gradio closes it (cancelled, client gone)."""
    ticket = Ticket(session, prepared["steps"], prepared["photo"].width * prepared["photo"].height)
    LANE.join(ticket)
    try:
        while not LANE.wait_turn(ticket, WAIT_UPDATE_S):
            if ticket.stop.is_set():
                break
            yield ("waiting", waiting_status(*LANE.ahead_of(ticket)))
        else:
            def pause_or_stop():  # asked every half step
                LANE.yield_to_light(ticket, YIELD_TO_LIGHT_AT_MOST_S)
                return ticket.stop.is_set()

            for picture, info in _optimise(prepared, pause_or_stop):
                if not LANE.record(ticket, info["step"], info["seconds"]):
                    break
                yield "step", picture, info
        if ticket.stop.is_set():
            yield "stopped", ticket
    finally:
        LANE.leave(ticket)


# ---- examples the project makes itself ------------------------------------------------------

def made_examples() -> list[Path]:
    """Two style images drawn here (deterministically): stained glass and brush strokes."""
    MADE_EXAMPLES.mkdir(parents=True, exist_ok=True)
    paths = [MADE_EXAMPLES / "stained_glass.png", MADE_EXAMPLES / "brush_strokes.png"]
    if not paths[0].exists():
        stained_glass().save(paths[0])
    if not paths[1].exists():
        brush_strokes().save(paths[1])
    return paths


def mirror_examples() -> tuple[list[Path], list[Path]]:
    """The data directory's photos and paintings, offered only when it is configured (they
    are not the project's to ship)."""
    folder = style_images_dir(download=False)
    if folder is None:
        return [], []
    return sorted((folder / "photos").glob("*.jpg")), sorted((folder / "paintings").glob("*.jpg"))


# ---- the tab ----------------------------------------------------------------------------------

LOSS_TERMS = ("style x style weight", "content x content weight", "total")


def loss_table(losses: list[dict], style_weight: float, content_weight: float) -> pd.DataFrame:
    """Long-format rows (step, term, value) of the weighted losses, for gr.LinePlot."""
    rows = []
    for h in losses:
        rows += [(h["step"], LOSS_TERMS[0], style_weight * h["style"]),
                 (h["step"], LOSS_TERMS[1], content_weight * h["content"]),
                 (h["step"], LOSS_TERMS[2], h["total"])]
    return pd.DataFrame(rows, columns=["step", "term", "loss"])


def describe(info: dict, method: str) -> str:
    network = FEATURE_NETWORKS.get(info["feature_network"])
    label = network.label if network else info["feature_network"]
    if method == "fast":
        which = {"multi": "the network for all six paintings", ARBITRARY: "the network for any painting (AdaIN)"}.get(
            info.get("fast_network"), "this painting's own network")
        text = f"Feed-forward, {which}: {info['seconds'] * 1000:.0f} ms. It was trained with {label}."
        if info.get("fast_network") == ARBITRARY and info.get("painting") in HELD_OUT_PAINTINGS:
            text += " It never saw this painting in training."
    else:
        last = info["losses"][-1]
        # item k comes after k + 1 optimiser steps (its losses are the picture's before the step)
        left = info["seconds"] / (info["step"] + 1) * max(0, info["steps"] - info["step"] - 1)
        text = (f"Step {info['step']}/{info['steps']} ({info['seconds']:.1f} s"
                + (f", about {left:.0f} s left" if info["step"] < info["steps"] else "")
                + f"), feature network: **{label}**. "
                f"Style loss {last['style']:.3f}, content loss {last['content']:.3f}.")
    if info["notes"]:
        text += " Note: " + "; ".join(info["notes"]) + "."
    return text


def save_result(picture: Image.Image) -> str:
    path = output_file(".png", prefix="stylised_")
    picture.save(path)
    return path


@on_gpu(duration=120)
def run_tab(content, style, method, painting, feature_net, style_weight, content_weight, steps, size, optimizer,
            init, style_layers, content_layers, strength=1.0, keep_colours=False, progress=gr.Progress(),
            request: gr.Request = None):
    """The Stylise button: streams (result, before/after, loss curves, status, download). A
    feed-forward run goes at once (painting ANY: the style image through the AdaIN network);
    an optimisation waits in LANE (saying its place and the time left) and ends within half a
    step of its session's Stop."""
    if method == "fast":
        if not painting:
            raise BadInput(f"No feed-forward networks are trained yet: run `{ARBITRARY_COMMAND}` (any painting) "
                           f"or `{train_command(MULTI)}` (six paintings).")
        if painting == ANY and style is None:
            raise BadInput("Upload a style image (any painting), or pick one of the six paintings.")
        # The running optimisation pauses for the whole request (reading the uploads, sending the
        # result), not only the network's pass: on a slow 2-core CPU that is what keeps it within 3 s.
        with LANE.light_run():
            for picture, info in stylize_stream(content, style if painting == ANY else painting, size=size,
                                                method="fast", strength=strength, keep_colours=keep_colours):
                yield picture, (info["content"], picture), None, describe(info, method), save_result(picture)
        return
    if method not in SIZES:
        raise BadInput(f"method must be 'optimize' or 'fast', not {method!r}.")
    prepared = _prepare_optimisation(content, style, steps, size, feature_net, style_weight, content_weight,
                                     optimizer, init, style_layers, content_layers, strength=strength,
                                     keep_colours=keep_colours)
    shown, last, skip = 0.0, None, gr.skip()
    weights = prepared["settings"]["style_weight"], prepared["settings"]["content_weight"]
    for kind, *item in _in_turn(prepared, getattr(request, "session_hash", None)):
        if kind == "waiting":
            progress(0.0, desc=item[0])
            yield skip, skip, skip, item[0], skip
            continue
        if kind == "stopped":
            if last is None:
                yield skip, skip, skip, "Stopped before it started (it was waiting its turn).", skip
            else:
                picture, info = last
                yield (picture, (info["content"], picture), loss_table(info["losses"], *weights),
                       f"Stopped at step {info['step']}/{info['steps']}. " + describe(info, method),
                       save_result(picture))
            return
        picture, info = last = item
        progress((info["step"], info["steps"]), desc="Stylising", unit="steps")
        done = info["step"] == info["steps"]
        if done or time.perf_counter() - shown >= PREVIEW_EVERY_S:
            shown = time.perf_counter()
            yield (picture, (info["content"], picture), loss_table(info["losses"], *weights),
                   describe(info, method), save_result(picture) if done else None)


def stylise_in_tab(content, style, method, painting, feature_net, style_weight, content_weight, steps, size, optimizer,
                   init, style_layers, content_layers, strength=1.0, keep_colours=False, progress=gr.Progress(),
                   request: gr.Request = None):
    """run_tab for the Stylise button, which reads the uploads itself (preprocess=False): a
    picture it cannot use (or any other mistake) is said once in the status with the other
    outputs emptied, not raised as a red "Error" on every output."""
    try:
        yield from run_tab(content, style, method, painting, feature_net, style_weight, content_weight, steps, size,
                           optimizer, init, style_layers, content_layers, strength, keep_colours, progress=progress,
                           request=request)
    except (BadInput, checkpoints.MissingCheckpoint) as e:
        yield None, None, None, str(e), None


def open_linked_view(content, style, method, *settings, progress=gr.Progress(), request: gr.Request = None):
    """A link's prepared view: a feed-forward one is stylised at once (under a second); an
    optimisation takes minutes of a shared queue, so it waits for the Stylise button."""
    if method != "fast" or content is None:
        yield (gr.skip(),) * 5
        return
    yield from stylise_in_tab(content, style, method, *settings, progress=progress, request=request)


def named_picture(paths: list[Path]):
    """A link's parser: a picture's name without its extension -> its path (a copy in the temp
    folder: Gradio sends only files from there or the app's own)."""
    def parse(name: str) -> str:
        for path in paths:
            if path.stem == name and path.exists():
                copy = MADE_EXAMPLES / "linked" / path.name
                if not copy.exists():
                    copy.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(path, copy)
                return str(copy)
        raise ValueError(f"no picture named {name!r}")

    return parse


def stop_tab(request: gr.Request = None):
    """The Stop button: stops this session's optimisation (running or waiting) within half a
    step and says where it stopped, at once. (Its event also cancels the Stylise event, which
    ends a feed-forward run.)"""
    ticket = LANE.stop(getattr(request, "session_hash", None))
    if ticket is None:
        return gr.skip()
    if ticket is not LANE.running() or ticket.seconds_per_step is None:
        return "Stopped before it started (it was waiting its turn)."
    return f"Stopped at step {ticket.step}/{ticket.steps}."


def run_example(content, style, method, painting):
    """A finished example: what Stylise gives at the tab's starting settings, as (result,
    before/after, status). Cached when the app runs with --cache-examples. Its optimisations
    wait their turn in LANE like the Stylise button's."""
    if method not in SIZES:  # an API call may send none: a message, not a minute of optimisation
        raise BadInput(f"method must be 'optimize' or 'fast', not {method!r}.")
    if method == "fast":
        picture, info = list(stylize_stream(content, style if painting == ANY else painting, method="fast"))[-1]
    else:
        prepared = _prepare_optimisation(content, style, 60, 256, "auto", None, 1.0, "adam", "content", None, None)
        *_, (picture, info) = [item for kind, *item in _in_turn(prepared, None) if kind == "step"]
    return picture, (info["content"], picture), describe(info, method)


def showcase_painting(trained: list[str]) -> str | None:
    """The feed-forward network shown first (examples, the Overview): The Scream when trained."""
    return "munch_the_scream" if "munch_the_scream" in trained else (trained[0] if trained else None)


def finished_examples(trained: list[str]) -> tuple[list[list], list[str]]:
    """Rows (content, style, method, painting) and their labels: one feed-forward network (The
    Scream when trained), two optimisations with the style images the project draws, and the
    network for any painting with one of them. The quick row comes first: it is the one tools
    that try "the first example" will run."""
    rows, labels = [], []
    painting = showcase_painting(trained)
    if painting and CONTENT_EXAMPLES[2].exists():
        rows.append([str(CONTENT_EXAMPLES[2]), None, "fast", painting])
        labels.append(f"{CONTENT_EXAMPLES[2].stem.capitalize()} as "
                      f"{painting.split('_', 1)[1].replace('_', ' ').title()} (feed-forward)")
    for photo, style, name in zip(CONTENT_EXAMPLES[:2], made_examples(), ("stained glass", "brush strokes")):
        if photo.exists():
            rows.append([str(photo), str(style), "optimize", painting])
            labels.append(f"{photo.stem.capitalize()} in {name} (optimisation, 60 steps)")
    if has_arbitrary() and CONTENT_EXAMPLES[3].exists():  # a style image, as a user's own painting goes
        rows.append([str(CONTENT_EXAMPLES[3]), str(made_examples()[1]), "fast", ANY])
        labels.append(f"{CONTENT_EXAMPLES[3].stem.capitalize()} in brush strokes (feed-forward, any painting)")
    return rows, labels


def layer_choices(feature_net: str):
    """The style and content layer pickers for a feature network, its defaults ticked, and its
    default style weight."""
    name = best_feature_network() if feature_net == "auto" else feature_net
    if name not in FEATURE_NETWORKS:
        raise BadInput(f"Unknown feature network {feature_net!r}.")
    return *layer_pickers(name), gr.Number(FEATURE_NETWORKS[name].style_weight, label="Style weight", minimum=0)


def layer_pickers(name: str):
    network = FEATURE_NETWORKS[name]
    return (gr.CheckboxGroup(choices=list(network.layers), value=network.style_layers,
                             label="Style layers (Gram matrices)"),
            gr.CheckboxGroup(choices=list(network.layers), value=network.content_layers, label="Content layers"))


# ---- what the Overview shows -----------------------------------------------------------------

OVERVIEW = Entry(TITLE, 6, train_command(MULTI),
                 [Figure("feed-forward (one network, six paintings): style loss", checkpoint_name(MULTI), "style_loss",
                         "{:.3f}"),
                  Figure("ms per 512x512 photo", checkpoint_name(MULTI), "ms_per_512px_image", "{:.0f}"),
                  Figure("any painting (AdaIN), paintings it never saw: style loss", checkpoint_name(ARBITRARY),
                         "held_out.style_loss", "{:.3f}"),
                  Figure("any painting: ms per 512x512 photo", checkpoint_name(ARBITRARY), "ms_per_512px_image",
                         "{:.0f}")],
                 ["no numbers; it calls its own result mediocre"])


def thumbnail():
    """The Overview's picture of this experiment."""
    painting = showcase_painting(fast_paintings())
    return stylize(CONTENT_EXAMPLES[0], painting, size=280, method="fast")


def build():
    if has_arbitrary():  # loaded now, not in the first user's one-second run
        load_arbitrary(str(pick_device("auto")))
    best = best_feature_network()
    available = available_feature_networks()
    trained = fast_paintings()
    gr.Markdown(
        "Put a photo in a painting's style. **Optimisation** (Gatys et al.) changes the photo's pixels until a "
        "network's features match the photo's content and the painting's textures (their Gram matrices); it "
        "streams every step and takes seconds to minutes; one runs at a time, and the others wait their turn, "
        "told how long. **Feed-forward** is one pass through a network trained here, well under a second, and it "
        "never waits behind an optimisation: *your style image* goes through the network for any painting (AdaIN, "
        "Huang and Belongie), a named painting through the network trained for the six (Dumoulin et al.). "
        f"Feature network in use: **{FEATURE_NETWORKS[best].label}**. "
        "Even a random network transfers colour and some texture, so judge the pictures, not only the loss.")
    with gr.Row():
        with gr.Column():
            content = gr.Image(type="filepath", image_mode=None, label="Content photo", height=300, elem_id="style-content")
            gr.Examples([[str(p)] for p in CONTENT_EXAMPLES if p.exists()], inputs=[content],
                        label="Photos (from scikit-image)")
        with gr.Column():
            style = gr.Image(type="filepath", image_mode=None, label="Style image (your painting)", height=300,
                             elem_id="style-style")
            gr.Examples([[str(p)] for p in made_examples() + [p for p in STYLE_EXAMPLES if p.exists()]],
                        inputs=[style], label="Styles (drawn by this project; from scikit-image)")
    photos, paintings = mirror_examples()
    if photos:
        with gr.Accordion("The data directory's photos and paintings", open=False):
            gr.Examples([[str(p)] for p in photos], inputs=[content], label="Photos")
            gr.Examples([[str(p)] for p in paintings], inputs=[style], label="Paintings")
    with gr.Row():
        method = gr.Radio([("Optimisation (Gatys et al.)", "optimize"), ("Feed-forward (a trained network, one pass)", "fast")],
                          value="optimize", label="Method")
        painting_choices = ([("your style image (any painting)", ANY)] if has_arbitrary() else []) + trained
        first = painting_choices[0] if painting_choices else None
        painting = gr.Dropdown(painting_choices, value=first[1] if isinstance(first, tuple) else first,
                               label="Painting (feed-forward)",
                               info=None if painting_choices else f"None trained yet: {ARBITRARY_COMMAND}")
        most_steps, largest = optimisation_limits()
        shared = " on this shared server" if shared_server() else ""
        size = gr.Slider(64, largest, 256, step=32, label="Output size (longer side, px)",
                         info=f"optimisation: at most {largest} px{shared}", elem_id="style-size")
        steps = gr.Slider(1, min(500, most_steps), 60, step=1, label="Steps (optimisation)",
                          info=f"at most {min(500, most_steps)}{shared}", elem_id="style-steps")
    with gr.Row():
        strength = gr.Slider(0, 1, 1, step=0.05, label="Style strength",
                             info="1: the painting's style in full; 0: the photo (any painting: blends features)")
        colours = gr.Checkbox(False, label="Keep the photo's colours", info="take only light and dark from the style")
    with gr.Accordion("Optimisation settings", open=False):
        with gr.Row():
            feature_net = gr.Dropdown([(f"auto: {FEATURE_NETWORKS[best].label}", "auto")]
                                      + [(FEATURE_NETWORKS[n].label, n) for n in available],
                                      value="auto", label="Feature network")
            optimizer = gr.Radio([("Adam", "adam"), ("L-BFGS", "lbfgs")], value="adam", label="Optimiser")
            init = gr.Radio([("the photo", "content"), ("noise", "noise")], value="content", label="Start from")
        with gr.Row():
            style_weight = gr.Number(FEATURE_NETWORKS[best].style_weight, label="Style weight", minimum=0)
            content_weight = gr.Number(1.0, label="Content weight", minimum=0)
        style_layers, content_layers = layer_pickers(best)  # created here, so laid out here
    with gr.Row():
        go = gr.Button("Stylise", variant="primary")
        stop = gr.Button("Stop", variant="stop")
    status = gr.Markdown(elem_id="style-status")
    with gr.Row():
        result = gr.Image(label="Result", type="pil", interactive=False, height=420, format="png")
        compare = gr.ImageSlider(label="Before / after", type="pil", height=420)
    with gr.Row():
        # the loss terms keep their colours from run to run
        curves = gr.LinePlot(x="step", y="loss", color="term", label="Losses (weighted)", height=300, color_title="",
                             color_map=dict(zip(LOSS_TERMS, ("#d62728", "#1f77b4", "#7f7f7f"))), elem_id="style-losses")
        download = gr.DownloadButton("Download the result (PNG)")

    rows, labels = finished_examples(trained)
    if rows:
        gr.Examples(rows, inputs=[content, style, method, painting], outputs=[result, compare, status],
                    fn=user_errors(run_example), run_on_click=True, example_labels=labels,
                    label="Finished examples",
                    api_name="style_transfer_example")

    # The tab reads the uploads itself (preprocess=False): a refused picture is said once in the
    # status and leaves its box, instead of a red "Error" on every output (core.ui).
    clear_refused_uploads(content, "content photo", api_name="style_transfer_check_content")
    clear_refused_uploads(style, "style image", api_name="style_transfer_check_style")
    run = go.click(user_errors(stylise_in_tab),
                   inputs=[content, style, method, painting, feature_net, style_weight, content_weight, steps, size,
                           optimizer, init, style_layers, content_layers, strength, colours],
                   outputs=[result, compare, curves, status, download], api_name="style_transfer_stylize",
                   concurrency_limit=SLOTS, concurrency_id="style_transfer", show_progress_on=[status],
                   preprocess=False)
    # Not queued: Stop must answer at once, however busy the queue is.
    stop.click(user_errors(stop_tab), None, status, api_name="style_transfer_stop", queue=False, cancels=[run],
               show_progress="hidden")
    # A link such as ?tab=style_transfer&content=rocket&style=brush_strokes&method=fast opens
    # this view; a feed-forward one is run at once, an optimisation waits for Stylise.
    links.field("content", content, parse=named_picture([*CONTENT_EXAMPLES, *photos]))
    links.field("style", style, parse=named_picture([*made_examples(), *STYLE_EXAMPLES, *paintings]))
    links.field("method", method, parse=links.choice(method))
    links.field("painting", painting, parse=links.choice(painting))
    links.field("size", size)
    links.field("strength", strength)
    links.field("keep_colours", colours, parse=lambda text: text.lower() in ("1", "true", "yes"))
    links.on_open(open_linked_view,
                  [content, style, method, painting, feature_net, style_weight, content_weight, steps, size, optimizer,
                   init, style_layers, content_layers, strength, colours],
                  [result, compare, curves, status, download], preprocess=False, concurrency_limit=SLOTS,
                  concurrency_id="style_transfer")
    feature_net.change(user_errors(layer_choices), inputs=feature_net, outputs=[style_layers, content_layers, style_weight],
                       api_name="style_transfer_layers")
