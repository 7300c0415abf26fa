"""Bad input, everywhere: launch the app once and send every endpoint it exposes (found in
its config, so a new tab is covered without editing this file) the nasty inputs of each of
its parameters' kinds: nothing, wrong types, empty and 100,000-character strings, 1x1 and
8000x8000 pictures, a text file named .png, a truncated PNG, NaN and infinity, silence, ten
minutes of audio, a server path nobody uploaded. Each call must return or raise a gr.Error
that says what is wrong in words, and none may hang. Then a burst of 500 requests, the
upload limit, the file routes (nothing outside the app's own files can be read) and a check
that nothing in the code unpickles. At the end the app must still answer correctly.
"""
import ast
import collections
import concurrent.futures
import http.client
import io
import itertools
import math
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlparse

import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from benchmarks.api import (Endpoint, Input, endpoints, http_call, sample_files, typical_inputs, write_sound,
                            write_wav)
from core.data import REPO

CALL_TIMEOUT = 120  # s; the slowest honest call here (a training lab at its smallest) takes about 15 s
BURST = 500  # 20-30 s on 2 cores (80 s beside a training run); the 1,000 takes twice that
PASSWD = {"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}  # a server path nobody uploaded


@dataclass
class Raw:
    """A value gradio_client cannot send (NaN is not JSON to it, and it would upload a local
    /etc/passwd itself): sent with plain HTTP through the /call API instead."""
    value: object


# ---- the app, and the files a careless or hostile user sends -------------------------------

@pytest.fixture(scope="module")
def app(app_url):
    return app_url, Client(app_url, verbose=False, download_files=False)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("nasty")
    found = sample_files(d)
    Image.new("RGB", (1, 1), "red").save(d / "one_pixel.png")
    Image.new("RGB", (8000, 8000), "white").save(d / "8000x8000.png")
    (d / "notes.png").write_text("this is a text file, not a picture\n")
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    (d / "truncated.png").write_bytes(buf.getvalue()[:len(buf.getvalue()) // 2])
    (d / "empty.png").write_bytes(b"")
    write_wav(d / "silence.wav", np.zeros(16000))
    write_sound(d / "ten_minutes.wav", seconds=600)
    (d / "notes.wav").write_text("this is a text file, not audio\n")
    sound = (d / "ten_minutes.wav").read_bytes()
    (d / "truncated.wav").write_bytes(sound[:1043])  # the header promises 10 minutes, 999 bytes follow
    (d / "empty.wav").write_bytes(b"")
    write_wav(d / "one_sample.wav", np.array([0.5]))
    return {**found, **{p.name: p for p in d.iterdir()}}


# ---- nasty values by kind of input --------------------------------------------------------

def nasty_values(inp: Input, files) -> list[tuple[str, object]]:
    """(what it is, value) pairs for one input, chosen by the input's component type."""
    f = {name: handle_file(str(path)) for name, path in files.items()}
    pictures = [("a 1x1 picture", f["one_pixel.png"]), ("an 8000x8000 picture", f["8000x8000.png"]),
                ("a text file named .png", f["notes.png"]), ("a truncated PNG", f["truncated.png"]),
                ("an empty file", f["empty.png"])]
    wrong = [("a word", "hello"), ("a number", 12345)]
    kind, props = inp.type, inp.props
    if kind in ("number", "slider"):
        return [("nothing", None), ("a word", "abc"), ("1e308", 1e308), ("a fraction", 0.5), ("NaN", Raw(math.nan)),
                ("infinity", Raw(math.inf))]
    if kind == "textbox":
        return [("nothing", None), ("an empty string", ""), ("a number", 12345),
                ("100,000 characters", "字x" * 50_000),
                ("control characters, markup, emoji and right-to-left text",
                 "  \x00\x1b[2J<script>alert(1)</script>{{7*7}}%s 👍🏽 \u202edlrow\u202c עברית\n\t")]
    if kind in ("dropdown", "radio"):
        return [("nothing", None), ("an empty string", ""), ("a choice that is not there", "no such choice"),
                ("100,000 characters", "x" * 100_000), ("a number", 12345), ("a list", ["a", "b"])]
    if kind == "checkbox":
        return [("nothing", None), ("a word", "yes"), ("a number", 2)]
    if kind == "image":
        return [("nothing", None), *pictures, *wrong, ("a server path nobody uploaded", Raw(PASSWD))]
    if kind == "imageeditor":
        def drawn(value):
            return {"background": None, "layers": [], "composite": value}
        return [("nothing", None), ("an empty canvas", drawn(None)), *[(what, drawn(v)) for what, v in pictures],
                *wrong, ("a dict of words", {"composite": "hello"}), ("an empty dict", {}),
                ("a server path nobody uploaded", Raw(drawn(PASSWD)))]
    if kind == "file":
        if props.get("file_count") in ("multiple", "directory"):
            return [("nothing", None), ("no files", []), *[(what, [v]) for what, v in pictures], *wrong,
                    ("a server path nobody uploaded", Raw([PASSWD]))]
        return [("nothing", None), *pictures, *wrong, ("a server path nobody uploaded", Raw(PASSWD))]
    if kind == "audio":
        return [("nothing", None), ("silence", f["silence.wav"]), ("10 minutes of audio", f["ten_minutes.wav"]),
                ("a text file named .wav", f["notes.wav"]), ("a truncated WAV", f["truncated.wav"]),
                ("an empty file", f["empty.wav"]), ("a single sample", f["one_sample.wav"]), *wrong,
                ("a server path nobody uploaded", Raw(PASSWD))]
    if kind == "dataset":  # an Examples table: the value is the row's index
        return [("nothing", None), ("a word", "x"), ("a negative index", -1), ("an index past the end", 10 ** 6),
                ("a fraction", 1.5)]
    return [("nothing", None), *wrong, ("an empty list", []), ("an empty dict", {})]


@dataclass
class Case:
    endpoint: Endpoint
    what: str  # e.g. "'Seed' = NaN"
    args: list


def cases(config, found: list[Endpoint], files) -> list[Case]:
    """Per endpoint: its typical input, nothing at all, None everywhere, then the typical
    input with one value at a time replaced by a nasty one. The first two inputs of each kind
    get every nasty value of that kind, further ones (the third class name of five) only
    None: they take the same path. Interleaved across endpoints, so a slow endpoint's calls
    do not all queue at the end."""
    per_endpoint = []
    for ep in found:
        out = []
        base = typical_inputs(config, ep, files, cheap=True)  # sliders at their minimum: labs train in seconds
        out.append(Case(ep, "typical input", base))
        out.append(Case(ep, "nothing at all", Raw([])))
        if ep.inputs:
            out.append(Case(ep, "None everywhere", [None] * len(ep.inputs)))
        seen = collections.Counter()
        for k, inp in enumerate(ep.inputs):
            seen[inp.type] += 1
            for what, value in nasty_values(inp, files)[:None if seen[inp.type] <= 2 else 1]:
                args = list(base)
                args[k] = value
                out.append(Case(ep, f"'{inp.label}' = {what}", args))
        per_endpoint.append(out)
    return [case for group in itertools.zip_longest(*per_endpoint) for case in group if case]


# ---- calling, and judging the answer ---------------------------------------------------------

def raw_call(url: str, api_name: str, data: list) -> tuple[str, str | None]:
    """("ok", None) or ("error", message) through POST /gradio_api/call/<name> and its event stream."""
    raw = tuple(k for k, v in enumerate(data) if isinstance(v, Raw))
    return http_call(url, api_name, [v.value if isinstance(v, Raw) else v for v in data], CALL_TIMEOUT, raw_values=raw)


def submit(client: Client, args: list, api_name: str, timeout: float = CALL_TIMEOUT):
    """client.submit(...).result(), asked again when gradio_client loses the answer: in
    gradio_client 2.7 a job submitted just as the server closes the session's event stream
    (it does whenever the session has nothing queued) ends in CancelledError, answered or not."""
    for attempt in range(3):
        try:
            return client.submit(*args, api_name=api_name).result(timeout=timeout)
        except concurrent.futures.CancelledError:
            if attempt == 2:
                raise


def call(url: str, client: Client, case: Case) -> tuple[str, str | None]:
    """("ok", None), ("error", message), ("hung", ...) or ("broke", what the client raised)."""
    try:
        if isinstance(case.args, Raw) or any(isinstance(a, Raw) for a in case.args):
            return raw_call(url, case.endpoint.name, case.args.value if isinstance(case.args, Raw) else case.args)
        submit(client, case.args, case.endpoint.name)
        return "ok", None
    except (TimeoutError, concurrent.futures.TimeoutError, httpx.TimeoutException):
        return "hung", f"no answer within {CALL_TIMEOUT} s"
    except Exception as e:
        if type(e).__name__ == "AppError":  # a gr.Error, or Gradio's "no details" stand-in
            return "error", str(e)
        return "broke", f"{type(e).__name__}: {e}"


PYTHONESE = re.compile(r"Traceback|NoneType|object is not|not supported between|has no attribute|unhashable|"
                       r"index out of range|invalid literal for|unexpected keyword")


def unclear(message: str | None) -> str | None:
    """Why an error message does not tell a person what is wrong (None if it does)."""
    if message and "verbose error reporting" in message:  # gradio_client's stand-in for an empty error
        return "a bare 'Error': an unexpected exception inside the app"
    if not message or len(re.findall(r"[^\W\d_]{2,}", message)) < 4:
        return "no message, or too short to explain anything"
    if PYTHONESE.search(message):
        return "reads like a Python exception, not a sentence"
    return None


# ---- the tests --------------------------------------------------------------------------------

@pytest.mark.parametrize("component, value, message", [
    (lambda gr: gr.Slider(1, 20, step=1, label="Epochs"), float("nan"), "'Epochs' must be a finite number"),
    (lambda gr: gr.Slider(1, 20, step=1, label="Epochs"), 0.5, "'Epochs' must be a whole number"),
    (lambda gr: gr.Slider(1, 20, step=1, label="Epochs"), 21, "'Epochs' must be from 1 to 20"),
    (lambda gr: gr.Slider(1, 20, step=1, label="Epochs"), None, "'Epochs' needs a number"),
    (lambda gr: gr.Number(label="Seed"), "abc", "'Seed' must be a number, not 'abc'"),
    (lambda gr: gr.Number(label="One number", precision=0), 3.5, "'One number' must be a whole number, not 3.5"),
    (lambda gr: gr.Number(label="Style weight"), 3.5, None),
    (lambda gr: gr.Textbox(label="English"), "a" * 10_001, "'English' takes at most 10,000 characters, not 10,001"),
    (lambda gr: gr.Textbox(label="English"), "a" * 10_000, None),
    (lambda gr: gr.Checkbox(label="Batch norm"), "yes", "'Batch norm' must be true or false"),
    (lambda gr: gr.Radio(["a", "b"], label="Model"), "x" * 100_000, "'Model' must be one of 'a', 'b'; not a text of 100,000"),
    (lambda gr: gr.Image(label="Your picture"), "hello", "'Your picture' cannot take 'hello': it takes a picture"),
    (lambda gr: gr.Number(label="Seed"), None, None), (lambda gr: gr.Slider(0, 1, label="alpha"), 0.55, None),
    (lambda gr: gr.Radio(["a", "b"], label="Model"), "b", None),
])
def test_input_problem_names_the_input_and_the_fault(component, value, message):
    import gradio as gr

    from core.ui import input_problem

    problem = input_problem(component(gr), value)
    assert problem == message if message is None else problem.startswith(message), problem


@pytest.mark.slow
@pytest.mark.app
def test_every_endpoint_answers_nasty_input_clearly(app, files):
    url, client = app
    found = endpoints(client.config)
    assert any(ep.name == "/fizzbuzz_play" for ep in found) and len(found) > 10, [ep.name for ep in found]
    todo = cases(client.config, found, files)
    own = threading.local()  # a client (a session) per worker: like several users, none waiting on another

    def run(case):
        if not hasattr(own, "client"):
            own.client = Client(url, verbose=False, download_files=False)
        return case, *call(url, own.client, case)

    start = time.time()
    with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(run, todo))
    problems, summary = [], {}
    for case, outcome, message in results:
        row = summary.setdefault(case.endpoint.name, {"ok": 0, "error": 0, "bad": 0})
        reason = {"hung": message, "broke": message}.get(outcome) or (unclear(message) if outcome == "error" else None)
        row["bad" if reason else outcome] += 1
        if reason:
            problems.append(f"{case.endpoint.name} with {case.what}: {reason} ({(message or '')[:160]!r})")
    print(f"\n{len(todo)} calls to {len(found)} endpoints in {time.time() - start:.0f} s")
    for name, row in summary.items():
        print(f"  {name:40s} answered {row['ok']:3d}  clear errors {row['error']:3d}  problems {row['bad']}")
    assert not problems, f"{len(problems)} calls without a clear answer:\n" + "\n".join(problems[:60])


@pytest.mark.app
def test_a_burst_of_requests(app):
    """BURST quick submits to a light endpoint from one client: every one answered, and right."""
    _, client = app
    numbers = [i % 100 + 1 for i in range(BURST)]
    truth = {n: "fizzbuzz" if n % 15 == 0 else "fizz" if n % 3 == 0 else "buzz" if n % 5 == 0 else str(n) for n in numbers}
    start = time.time()
    jobs = [client.submit(n, api_name="/fizzbuzz_play") for n in numbers]
    answers, lost = [], []
    for n, job in zip(numbers, jobs):
        try:
            answers.append((n, job.result(timeout=CALL_TIMEOUT)))
        except concurrent.futures.CancelledError:  # gradio_client's race (see submit()): ask again below
            lost.append(n)
    seconds = time.time() - start
    answers += [(n, client.predict(n, api_name="/fizzbuzz_play")) for n in lost]
    print(f"\n{BURST} requests answered in {seconds:.1f} s ({BURST / seconds:.0f}/s); "
          f"{len(lost)} lost by gradio_client and asked again")
    assert len(lost) <= BURST // 20
    assert all(answer == truth[n] for n, answer in answers) and len(answers) == BURST


@pytest.mark.app
def test_uploads_over_the_limit_are_refused(app, tmp_path):
    url, client = app
    limit = client.config["max_file_size"]
    assert limit and limit <= 100 * 2 ** 20, f"no upload limit set in launch() (max_file_size={limit})"
    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * (limit + 1))
    with open(big, "rb") as fh:
        r = httpx.post(f"{url}gradio_api/upload", files={"files": ("big.png", fh)}, timeout=60)
    assert r.status_code == 413, (r.status_code, r.text[:200])
    picture_endpoint = next(ep for ep in endpoints(client.config) if [i.type for i in ep.inputs] == ["image"])
    with pytest.raises(Exception, match="413|too large|size"):
        client.predict(handle_file(str(big)), api_name=picture_endpoint.name)


def raw_get(url: str, path: str) -> tuple[int, bytes]:
    """GET a path exactly as written: no client tidies up ../ or percent-escapes first."""
    u = urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.mark.app
def test_file_routes_serve_nothing_outside_the_app(app):
    url, client = app
    port = urlparse(url).port
    # Something the app made is served (so a refusal below means something)...
    *_, seen, _ = client.predict({"background": None, "layers": [], "composite": handle_file(
        str(REPO / "demos" / "examples" / "mnist" / "digit_7.png"))}, api_name="/mnist_predict")
    assert raw_get(url, "/gradio_api/file=" + quote(seen["path"]))[0] == 200
    cache = str(Path(seen["path"]).parent)
    # ...but nothing else: system files, the app's own source and checkpoints, other hosts.
    secret_paths = ["/etc/passwd", "/proc/self/environ", str(REPO / "app.py"), "app.py",
                    str(REPO / "checkpoints" / "fizzbuzz" / "config.json"), "../../../../../../etc/passwd",
                    f"{cache}/../../../etc/passwd", f"{cache}/../../../../{REPO}/app.py",
                    quote("../../../../../../etc/passwd", safe=""), quote("/etc/passwd", safe=""),
                    "%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "file:///etc/passwd", f"http://127.0.0.1:{port}/config",
                    "http://169.254.169.254/latest/meta-data/"]
    routes = [f"{prefix}{p}" for p in secret_paths for prefix in ("/gradio_api/file=", "/file=")]
    routes += ["/gradio_api/file/../../../../../etc/passwd", "/gradio_api/file/etc/passwd",
               "/static/../../../../../etc/passwd", "/assets/../../../../../etc/passwd",
               "/assets/..%2f..%2f..%2f..%2f..%2fetc%2fpasswd", "/gradio_api/static/../../../../etc/passwd",
               "/..%2f..%2f..%2f..%2fetc%2fpasswd", "//etc/passwd", "/favicon.ico/../../../../etc/passwd"]
    source = (REPO / "app.py").read_bytes()[:200]
    leaked = []
    for route in routes:
        status, body = raw_get(url, route)
        if status == 200 and (b"root:" in body or source in body or b"PATH=" in body or b'"components"' in body):
            leaked.append(route)
    assert not leaked, f"served a file outside the app: {leaked}"


UNPICKLING = {("pickle", "load"), ("pickle", "loads"), ("pickle", "Unpickler"), ("joblib", "load"),
              ("dill", "load"), ("dill", "loads"), ("cloudpickle", "load"), ("cloudpickle", "loads"),
              ("pd", "read_pickle"), ("pandas", "read_pickle")}


def test_nothing_unpickles():
    """Checkpoints are safetensors and JSON: no .py file may unpickle, nor let torch.load do it."""
    found = []
    for path in REPO.rglob("*.py"):
        rel = path.relative_to(REPO)
        if rel.parts[0] in ("data", ".git") or rel == Path(__file__).relative_to(REPO):
            continue
        source = path.read_text(encoding="utf-8", errors="replace")
        if re.search(r"weights_only\s*=\s*False", source):
            found.append(f"{rel}: weights_only=False")
        for node in ast.walk(ast.parse(source, str(rel))):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            owner = node.func.value.id if isinstance(node.func.value, ast.Name) else None
            keywords = {k.arg: k.value for k in node.keywords}
            if (owner, node.func.attr) in UNPICKLING:
                found.append(f"{rel}:{node.lineno}: {owner}.{node.func.attr}")
            if owner == "torch" and node.func.attr == "load" and not (
                    isinstance(keywords.get("weights_only"), ast.Constant) and keywords["weights_only"].value is True):
                found.append(f"{rel}:{node.lineno}: torch.load without weights_only=True")
            if node.func.attr == "load" and isinstance(keywords.get("allow_pickle"), ast.Constant) \
                    and keywords["allow_pickle"].value is True:
                found.append(f"{rel}:{node.lineno}: allow_pickle=True")
    assert not found, found


@pytest.mark.app
def test_the_app_still_answers_correctly(app):
    """After everything above: the same server still gets the easy things right."""
    _, client = app
    assert client.predict(15, api_name="/fizzbuzz_play") == "fizzbuzz"
    assert client.predict(98, api_name="/fizzbuzz_play") == "98"
    *labels, seen, status = client.predict({"background": None, "layers": [], "composite": handle_file(
        str(REPO / "demos" / "examples" / "mnist" / "digit_7.png"))}, api_name="/mnist_predict")
    assert status == "" and [label["label"] for label in labels] == ["7"] * 3


def test_drawing_canvas_decodes_only_a_bounded_composite(tmp_path, monkeypatch):
    """A request naming one big PNG as 20 layers cost 20 decodes (+1.1 GB); the tabs read only
    the composite, so layers and background are never decoded, and a composite over
    MAX_DRAWING_SIDE is refused from its header."""
    import gradio as gr
    from gradio.components.image_editor import EditorData
    from gradio.data_classes import FileData

    from core.ui import MAX_DRAWING_SIDE, drawing_canvas

    with gr.Blocks():
        canvas = drawing_canvas("Your digit", elem_id="test-canvas")
    small, big = tmp_path / "small.png", tmp_path / "big.png"
    Image.new("RGBA", (280, 280), (0, 0, 0, 0)).save(small)
    Image.new("RGBA", (MAX_DRAWING_SIDE + 1, 40), (0, 0, 0, 0)).save(big)
    decoded = []
    convert = canvas.convert_and_format_image
    monkeypatch.setattr(canvas, "convert_and_format_image", lambda f, **kw: decoded.append(f) or convert(f, **kw))
    layer = FileData(path=str(big))
    value = canvas.preprocess(EditorData(background=layer, layers=[layer] * 20, composite=FileData(path=str(small))))
    assert value["composite"].shape == (280, 280, 4) and value["layers"] == [] and value["background"] is None
    assert [f.path for f in decoded if f is not None] == [str(small)]
    with pytest.raises(gr.Error, match=f"the drawing is {MAX_DRAWING_SIDE + 1}x40 pixels"):
        canvas.preprocess(EditorData(composite=layer))


def test_output_files_do_not_pile_up_on_a_long_running_server():
    """A download or GIF a handler returns is a file; those made over an hour ago are removed
    when the next is made, and Gradio deletes its own copies of old results (delete_cache)."""
    import os

    from app import build_app
    from core.ui import KEEP_OUTPUT_FILES_S, output_file

    old, recent = output_file(".png", prefix="stylised_"), output_file(".gif")
    hours_ago = time.time() - KEEP_OUTPUT_FILES_S - 60
    os.utime(old, (hours_ago, hours_ago))
    new = output_file(".png")
    assert not os.path.exists(old) and os.path.exists(recent) and os.path.exists(new)
    assert os.path.basename(recent).endswith(".gif") and os.path.dirname(new) == os.path.dirname(recent)
    frequency, age = build_app(["fizzbuzz"]).delete_cache
    assert frequency <= 3600 and age <= 86400
