"""The running app's API as gradio_client sees it, read from the app's own config: every
endpoint a client may call, its inputs, and a typical value for each input (what a person
would send). `python -m bench` and tests/test_bad_input.py both start from here, so a new
tab is benchmarked and attacked without editing either. Calls go through gradio_client or,
as a browser's do, straight through the HTTP API (http_call).
"""
import json
import math
import re
import wave
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from gradio_client import handle_file
from PIL import Image, ImageDraw

SKIPPED = {"state"}  # gradio_client fills State inputs itself
# Where the generic typical value would be refused: classes 3-5 have no names on the page,
# so images there are an error ("Class 3 has images but no name").
TYPICAL_OVERRIDES = {"/transfer_fit_head": {"Class 3 images": None, "Class 4 images": None, "Class 5 images": None}}


@dataclass
class Input:
    id: int
    type: str  # the component's type in the config: "slider", "image", "imageeditor", ...
    label: str
    props: dict = field(repr=False)


@dataclass
class Endpoint:
    name: str  # what api_name= takes, e.g. "/fizzbuzz_play"
    inputs: list[Input]
    generator: bool  # streams updates (the training labs)
    documented: bool  # listed under "Use via API"; False: callable but undocumented (examples)


def endpoints(config: dict) -> list[Endpoint]:
    """Every endpoint the app lets a client call (public or undocumented), in page order."""
    components = {c["id"]: c for c in config["components"]}
    found = []
    for dep in config["dependencies"]:
        if not dep.get("backend_fn") or dep.get("api_visibility") == "private" or not dep.get("api_name"):
            continue
        inputs = [Input(i, components[i]["type"], components[i]["props"].get("label") or components[i]["type"],
                        components[i]["props"])
                  for i in dep["inputs"] if components[i]["type"] not in SKIPPED]
        found.append(Endpoint("/" + dep["api_name"], inputs, dep["types"]["generator"],
                              dep.get("api_visibility") == "public"))
    return found


# ---- files a person might send ------------------------------------------------------------

def write_picture(path: Path, size=(96, 64)) -> Path:
    """A small photo-like RGB picture: a sky gradient, grass, a red disc."""
    w, h = size
    sky = np.linspace(230, 120, h)[:, None, None] * np.ones((1, w, 1)) * np.array([0.6, 0.8, 1.0])
    image = Image.fromarray(sky.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, h * 2 // 3, w, h), fill=(60, 140, 60))
    draw.ellipse((w // 3, h // 4, w // 3 + h // 2, h // 4 + h // 2), fill=(200, 40, 40))
    image.save(path)
    return path


def write_drawing(path: Path) -> Path:
    """A Sketchpad-like 280x280 RGBA drawing of a 7: black strokes on transparency."""
    image = Image.new("RGBA", (280, 280), (0, 0, 0, 0))
    ImageDraw.Draw(image).line([(80, 70), (200, 70), (120, 220)], fill=(0, 0, 0, 255), width=18, joint="curve")
    image.save(path)
    return path


def write_wav(path: Path, samples: np.ndarray, rate: int = 8000) -> Path:
    """16-bit mono WAV from float samples in [-1, 1]."""
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def write_sound(path: Path, seconds: float = 1.0, rate: int = 8000) -> Path:
    """Two swelling tones with pauses: sound that rises and falls, like speech does."""
    t = np.arange(int(seconds * rate)) / rate
    envelope = np.clip(np.sin(2 * math.pi * 1.5 * t), 0, None)
    return write_wav(path, 0.3 * envelope * (np.sin(2 * math.pi * 440 * t) + 0.5 * np.sin(2 * math.pi * 1100 * t)), rate)


def sample_files(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return {"picture": write_picture(folder / "picture.png"), "drawing": write_drawing(folder / "drawing.png"),
            "sound": write_sound(folder / "sound.wav")}


# ---- typical values -------------------------------------------------------------------------

def _as_input(value):
    """A value from the config (file dicts hold the server's paths) -> what gradio_client sends."""
    if isinstance(value, dict) and value.get("meta", {}).get("_type") == "gradio.FileData":
        path = value.get("path")
        return handle_file(path if path and Path(path).exists() else value["url"])
    if isinstance(value, dict):
        return {k: _as_input(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_input(v) for v in value]
    return value


def examples(config: dict) -> dict[int, object]:
    """The first gr.Examples row that fills each component, by component id."""
    found = {}
    for c in config["components"]:
        if c["type"] == "dataset" and c["props"].get("samples"):
            for component_id, value in zip(c["props"].get("component_ids") or [], c["props"]["samples"][0]):
                found.setdefault(component_id, value)
    return found


def typical_value(inp: Input, files: dict[str, Path], example=None, cheap: bool = False):
    """What a person would send to this input: the page's example for it, else the value it
    starts with, else a small file or word of its kind. cheap=True puts sliders at their
    minimum (one epoch, the fewest images: the training labs finish in seconds)."""
    props, kind = inp.props, inp.type
    if kind == "slider":
        return props["minimum"] if cheap else props.get("value", props["minimum"])
    if example is not None:
        return _as_input(example)
    value = props.get("value")
    if kind == "number":
        return value if value is not None else (props.get("minimum") or 1)
    if kind in ("dropdown", "radio"):
        choices = [c[1] if isinstance(c, (list, tuple)) else c for c in props.get("choices") or []]
        return value if value is not None else (choices[0] if choices else None)
    if kind == "textbox":
        return value if value is not None else "A dog runs in the snow."
    if kind == "checkbox":
        return bool(value)
    if kind == "dataset":
        return 0
    if value is not None:
        return _as_input(value)
    if kind == "image":
        return handle_file(str(files["picture"]))
    if kind == "imageeditor":
        drawing = handle_file(str(files["drawing"]))
        return {"background": None, "layers": [drawing], "composite": drawing}
    if kind == "audio":
        return handle_file(str(files["sound"]))
    if kind == "file":
        picture = handle_file(str(files["picture"]))
        return [picture] if props.get("file_count") in ("multiple", "directory") else picture
    return None


def typical_inputs(config: dict, endpoint: Endpoint, files: dict[str, Path], cheap: bool = False) -> list:
    """A typical value for each of the endpoint's inputs, in order."""
    found = examples(config)
    overrides = TYPICAL_OVERRIDES.get(endpoint.name, {})
    return [overrides[inp.label] if inp.label in overrides else typical_value(inp, files, found.get(inp.id), cheap)
            for inp in endpoint.inputs]


def page_defaults(config: dict, endpoint: Endpoint, files: dict[str, Path]) -> list:
    """The endpoint's inputs as the page starts, examples used only for pictures and sounds:
    what pressing its button at once sends (for style transfer: the optimisation, not the
    feed-forward network an example row picks)."""
    found = examples(config)
    return [typical_value(inp, files, found.get(inp.id) if inp.type in ("image", "audio") else None)
            for inp in endpoint.inputs]


# ---- the HTTP API, without gradio_client ---------------------------------------------------------

def upload_local_files(url: str, value, http: httpx.Client | None = None):
    """Upload the local files in a gradio_client-style value (handle_file dicts), as
    gradio_client would, and return the value pointing at the uploaded copies."""
    if isinstance(value, dict) and value.get("meta", {}).get("_type") == "gradio.FileData" and Path(value["path"]).exists():
        with open(value["path"], "rb") as fh:
            r = (http or httpx).post(f"{url}gradio_api/upload", files={"files": (Path(value["path"]).name, fh)}, timeout=60)
        r.raise_for_status()
        return {"path": r.json()[0], "meta": {"_type": "gradio.FileData"}}
    if isinstance(value, dict):
        return {k: upload_local_files(url, v, http) for k, v in value.items()}
    if isinstance(value, list):
        return [upload_local_files(url, v, http) for v in value]
    return value


def http_call(url: str, api_name: str, data: list, timeout: float = 120, http: httpx.Client | None = None,
              raw_values: tuple = ()) -> tuple[str, str | None]:
    """("ok", None) or ("error", message): POST /gradio_api/call/<name>, then read its event
    stream to the end. Values whose positions are in raw_values are sent exactly as given."""
    http = http or httpx
    data = [v if k in raw_values else upload_local_files(url, v, http) for k, v in enumerate(data)]
    body = json.dumps({"data": data}, allow_nan=True)  # NaN goes over the wire as the JSON extension NaN
    r = http.post(f"{url}gradio_api/call{api_name}", content=body, headers={"content-type": "application/json"},
                  timeout=30)
    if r.status_code != 200:
        return "error", r.text
    events = http.get(f"{url}gradio_api/call{api_name}/{r.json()['event_id']}", timeout=timeout).text
    found = re.findall(r"event: (\w+)\ndata: (.*)", events)
    if not found:
        return "error", events[:200] or "no events"
    kind, payload = found[-1]
    if kind == "complete":
        return "ok", None
    return "error", (json.loads(payload) or {}).get("error") if payload.startswith("{") else payload
