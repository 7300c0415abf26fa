"""The Hub path, offline: huggingface_hub talks real HTTP to a fake Hub on 127.0.0.1.

huggingface_hub reads HF_ENDPOINT and HF_HUB_OFFLINE when it is imported, and conftest.py
has made this process offline, so everything that talks to the fake runs in a subprocess
with its own environment. The fake implements only the endpoints snapshot_download and
train.push use (huggingface_hub 2.4.0), and answers "regular" to every preupload, so file
contents travel base64-encoded inside the commit instead of through LFS/Xet storage.
"""
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import torch
import yaml

from core import checkpoints
from core.data import REPO
from core.gpu import on_gpu
from models.fizzbuzz import FizzBuzzMLP
from train import push


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub:
    """Repos as {branch: commit} plus {commit: {path: bytes}}; every request is logged."""

    def __init__(self):
        self.repos = {}  # (repo_type, repo_id) -> {"branches": {...}, "commits": {...}}
        self.variables = {}  # space id -> {key: value}
        self.log = []  # (method, path, Authorization header)
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def commit(self, repo_type, repo_id, files: dict, branch="main", deleted=()) -> str:
        with self.lock:
            repo = self.repos.setdefault((repo_type, repo_id), {"branches": {}, "commits": {}})
            parent = repo["commits"].get(repo["branches"].get(branch), {})
            tree = {path: data for path, data in parent.items() if path not in deleted}
            tree.update(files)
            sha = hashlib.sha1(f"{repo_id} {branch} {len(repo['commits'])}".encode()).hexdigest()
            repo["commits"][sha] = tree
            repo["branches"][branch] = sha
            return sha

    def files(self, repo_type, repo_id, revision="main") -> dict:
        repo = self.repos[(repo_type, repo_id)]
        return repo["commits"][repo["branches"].get(revision, revision)]

    def handler(hub):
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def reply(self, status, body=b"", headers=None, head=False):
                if not isinstance(body, bytes):
                    body = json.dumps(body).encode()
                    headers = {"Content-Type": "application/json", **(headers or {})}
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def error(self, status, code):
                self.reply(status, {"error": code}, {"X-Error-Code": code})

            def body(self) -> bytes:
                return self.data

            def route(self, method):
                # Read every body, used or not: a leftover would be parsed as the next request.
                self.data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                path = urlsplit(self.path).path
                parts = [unquote(p) for p in path.strip("/").split("/")]
                hub.log.append((method, unquote(path), self.headers.get("Authorization")))
                try:
                    self.dispatch(method, parts)
                except KeyError:
                    self.error(404, "RepoNotFound")

            def resolve(self, repo_type, repo_id, revision) -> str | None:
                repo = hub.repos[(repo_type, repo_id)]
                sha = repo["branches"].get(revision, revision)
                return sha if sha in repo["commits"] else None

            def dispatch(self, method, parts):
                if parts[:1] == ["api"] and parts[1] in ("models", "spaces"):
                    repo_type, repo_id, action, rest = parts[1][:-1], "/".join(parts[2:4]), parts[4], parts[5:]
                    if action == "variables":
                        payload = json.loads(self.body())
                        hub.variables.setdefault(repo_id, {})[payload["key"]] = payload["value"]
                        return self.reply(200, {k: {"value": v} for k, v in hub.variables[repo_id].items()})
                    sha = self.resolve(repo_type, repo_id, rest[0])
                    if action == "branch":  # create rest[0] from the default branch
                        if sha is not None:
                            return self.error(409, "BranchExists")
                        repo = hub.repos[(repo_type, repo_id)]
                        repo["branches"][rest[0]] = repo["branches"]["main"]
                        return self.reply(200, {})
                    if sha is None:
                        return self.error(404, "RevisionNotFound")
                    if action == "revision":
                        files = hub.repos[(repo_type, repo_id)]["commits"][sha]
                        return self.reply(200, {"id": repo_id, "sha": sha, "private": False,
                                                "siblings": [{"rfilename": p} for p in sorted(files)]})
                    if action == "tree":
                        files = hub.repos[(repo_type, repo_id)]["commits"][sha]
                        return self.reply(200, [{"type": "file", "path": p, "size": len(data), "oid": git_blob_id(data)}
                                                for p, data in sorted(files.items())])
                    if action == "preupload":
                        files = json.loads(self.body())["files"]
                        return self.reply(200, {"files": [{"path": f["path"], "uploadMode": "regular",
                                                           "shouldIgnore": False} for f in files]})
                    if action == "commit":
                        return self.commit(repo_type, repo_id, rest[0])
                if parts == ["api", "repos", "create"]:
                    payload = json.loads(self.body())
                    repo_type, repo_id = payload.get("type", "model"), f"{payload['organization']}/{payload['name']}"
                    prefix = "spaces/" if repo_type == "space" else ""
                    exists = (repo_type, repo_id) in hub.repos
                    if not exists:
                        hub.commit(repo_type, repo_id, {".gitattributes": b"*.safetensors filter=lfs\n"})
                    return self.reply(409 if exists else 200, {"url": f"{hub.url}/{prefix}{repo_id}"})
                if parts == ["api", "validate-yaml"]:
                    return self.reply(200, {})
                if "resolve" in parts:  # /[spaces/]{org}/{name}/resolve/{revision}/{path}
                    at = parts.index("resolve")
                    repo_type = "space" if parts[0] == "spaces" else "model"
                    repo_id, revision, path = "/".join(parts[at - 2:at]), parts[at + 1], "/".join(parts[at + 2:])
                    sha = self.resolve(repo_type, repo_id, revision)
                    if sha is None:
                        return self.error(404, "RevisionNotFound")
                    data = hub.repos[(repo_type, repo_id)]["commits"][sha].get(path)
                    if data is None:
                        return self.error(404, "EntryNotFound")
                    headers = {"X-Repo-Commit": sha, "ETag": f'"{git_blob_id(data)}"'}
                    return self.reply(200, data, headers, head=method == "HEAD")
                self.error(404, "NotImplementedInFakeHub")

            def commit(self, repo_type, repo_id, branch):
                lines = [json.loads(line) for line in self.body().splitlines() if line.strip()]
                files, deleted = {}, []
                for line in lines[1:]:  # lines[0] is the header: summary, description
                    if line["key"] == "file":
                        files[line["value"]["path"]] = base64.b64decode(line["value"]["content"])
                    elif line["key"] == "deletedFile":
                        deleted.append(line["value"]["path"])
                    else:
                        return self.error(400, f"FakeHubCannot:{line['key']}")
                sha = hub.commit(repo_type, repo_id, files, branch, deleted)
                prefix = "spaces/" if repo_type == "space" else ""
                self.reply(200, {"commitUrl": f"{hub.url}/{prefix}{repo_id}/commit/{sha}", "commitOid": sha})

            def do_GET(self):
                self.route("GET")

            def do_HEAD(self):
                self.route("HEAD")

            def do_POST(self):
                self.route("POST")

        return Handler


@pytest.fixture(scope="module")
def hub():
    hub = FakeHub()
    thread = threading.Thread(target=hub.server.serve_forever, daemon=True)
    thread.start()
    yield hub
    hub.server.shutdown()
    hub.server.server_close()


def hub_env(hub, home: Path, **extra) -> dict:
    """An environment in which huggingface_hub talks only to the fake, with a fresh cache."""
    return dict(os.environ, HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0", HF_HOME=str(home), HF_TOKEN="hf_fake",
                HF_HUB_DISABLE_PROGRESS_BARS="1", HF_HUB_DISABLE_TELEMETRY="1", **extra)


def run(args, env) -> str:
    result = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


# Loads fizzbuzz at every revision given, with an empty checkpoints/ so it must come from the
# Hub, and compares it with the committed checkpoint; prints one JSON object.
FETCH = """
import json, os, sys, tempfile
from pathlib import Path
import torch
from core import checkpoints
from models.fizzbuzz import FizzBuzzMLP

committed = checkpoints.load(FizzBuzzMLP, "fizzbuzz", "", root=checkpoints.CHECKPOINTS).state_dict()
checkpoints.CHECKPOINTS = Path(tempfile.mkdtemp())
out = {}
for revision in sys.argv[1:]:
    os.environ["DLP_HUB_REVISION"] = revision
    try:
        model = checkpoints.load(FizzBuzzMLP, "fizzbuzz", "python -m train.fizzbuzz")
    except checkpoints.MissingCheckpoint as e:
        out[revision] = {"missing": str(e)}
        continue
    same = all(torch.equal(a, b) for a, b in zip(committed.values(), model.state_dict().values()))
    out[revision] = {"same_weights": same, "path": str(checkpoints.find("fizzbuzz")),
                     "metrics": checkpoints.load_metrics("fizzbuzz")}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def fetched(hub, tmp_path_factory):
    """The committed fizzbuzz (and an unrelated mnist file) pushed to the fake at one commit,
    then other weights pushed on top of main; the app's loader run at several revisions."""
    committed = {f"fizzbuzz/{p.name}": p.read_bytes() for p in (checkpoints.CHECKPOINTS / "fizzbuzz").iterdir()
                 if p.is_file()}
    pinned = hub.commit("model", "me/dlp", {**committed, "mnist/cnn/config.json": b"{}"})
    retrained = checkpoints.save(FizzBuzzMLP(hidden=1000), "fizzbuzz", {}, root=tmp_path_factory.mktemp("retrained"))
    retrained_weights = (retrained / "model.safetensors").read_bytes()
    latest = hub.commit("model", "me/dlp", {"fizzbuzz/model.safetensors": retrained_weights})
    home = tmp_path_factory.mktemp("hf_home")
    hub.log.clear()
    revisions = {"pinned": pinned, "main": "main", "unknown_commit": "0" * 40, "unknown_branch": "no-such-branch"}
    out = run(["-c", FETCH, *revisions.values()], hub_env(hub, home, DLP_HUB_REPO="me/dlp"))
    results = json.loads(out.strip().splitlines()[-1])
    return {name: results[rev] for name, rev in revisions.items()} | {"pinned_sha": pinned, "latest_sha": latest,
                                                                      "home": home, "log": list(hub.log)}


def test_missing_checkpoint_comes_from_the_hub_at_the_pinned_revision(fetched):
    pinned = fetched["pinned"]
    assert pinned["same_weights"]
    assert Path(pinned["path"]).is_relative_to(fetched["home"])  # the HF cache, not checkpoints/
    assert pinned["path"].endswith(f"snapshots/{fetched['pinned_sha']}/fizzbuzz")
    assert pinned["metrics"] == checkpoints.load_metrics("fizzbuzz")
    # The checkpoint's own folder was downloaded at the pinned commit, and no other folder ever.
    downloaded = {path for method, path, _ in fetched["log"] if method == "GET" and "/resolve/" in path}
    assert {path for path in downloaded if fetched["pinned_sha"] in path} == {
        f"/me/dlp/resolve/{fetched['pinned_sha']}/fizzbuzz/{name}"
        for name in ("config.json", "metrics.json", "model.safetensors")}
    assert all("/fizzbuzz/" in path for path in downloaded)


def test_unpinned_follows_the_branch(fetched):
    assert fetched["main"]["same_weights"] is False  # the retrained weights pushed after the pin
    assert f"snapshots/{fetched['latest_sha']}/" in fetched["main"]["path"]


def test_wrong_revision_counts_as_missing(fetched):
    for name in ("unknown_commit", "unknown_branch"):
        assert fetched[name] == {"missing": "No checkpoint 'fizzbuzz' yet. Train it with: python -m train.fizzbuzz"}


def fake_checkpoints(root: Path) -> dict:
    """A checkpoints/ folder as training leaves it, resume state and a log included."""
    files = {
        "mnist/cnn/model.safetensors": b"w" * 2000, "mnist/cnn/config.json": b"{}", "mnist/cnn/metrics.json": b"{}",
        "mnist/cnn/mistakes.safetensors": b"m" * 10, "mnist/cnn/train.log": b"epoch 1",
        "gan/dcgan/model.safetensors": b"g", "gan/dcgan/config.json": b"{}", "gan/dcgan/metrics.json": b"{}",
        "gan/dcgan/timelapse.safetensors": b"t", "gan/dcgan/resume/ema.safetensors": b"e",
        "gan/dcgan/resume/generator/last.safetensors": b"l", "gan/dcgan/resume/generator/last.json": b"{}",
        "translation/model.safetensors": b"x", "translation/config.json": b"{}", "translation/spm.model": b"s",
        "translation/resume/spm.model": b"s", "text_classification/textcnn/vocab.json": b"[]",
    }
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    return {path: data for path, data in files.items() if "/resume/" not in path and not path.endswith(".log")}


def listed(out: str) -> list[str]:
    return [line.split()[0] for line in out.splitlines() if line.startswith("  ")]


def test_push_dry_run_lists_what_the_demos_read_and_never_resume(tmp_path, capsys):
    expected = fake_checkpoints(tmp_path)
    push.main(["--repo", "me/dlp", "--checkpoint-dir", str(tmp_path), "--dry-run"])
    out = capsys.readouterr().out
    assert listed(out) == sorted(expected)
    assert out.splitlines()[0] == f"checkpoints for me/dlp (main): {len(expected)} files, 2.0 kB"
    push.main(["--repo", "me/dlp", "--checkpoint-dir", str(tmp_path), "--dry-run",
               "--only", "gan/dcgan", "translation"])
    only = sorted(p for p in expected if p.startswith(("gan/dcgan/", "translation/")))
    assert listed(capsys.readouterr().out) == only


def test_push_dry_run_for_a_space_lists_the_app(capsys):
    push.main(["--repo", "me/dlp", "--space", "me/app", "--dry-run"])
    app = listed(capsys.readouterr().out.split("app for Space")[1])
    assert {"app.py", "requirements.txt", "README.md", "core/checkpoints.py", "core/gpu.py", "demos/mnist.py",
            "models/mnist.py", "train/mnist.py", "train/push.py"} <= set(app)
    assert not [p for p in app if p.startswith(("checkpoints/", "tests/", "data/")) or "__pycache__" in p]
    push.main(["--space", "me/app", "--dry-run"])  # no model repo: the checkpoints go into the Space
    app = listed(capsys.readouterr().out)
    assert "checkpoints/fizzbuzz/model.safetensors" in app and not [p for p in app if "/resume/" in p]


def test_push_uploads_checkpoints_and_app_and_pins_the_space(hub, tmp_path):
    expected = fake_checkpoints(tmp_path / "checkpoints")
    out = run(["-m", "train.push", "--repo", "me/pushed", "--checkpoint-dir", str(tmp_path / "checkpoints"),
               "--space", "me/app"], hub_env(hub, tmp_path / "hf_home"))
    head = hub.repos[("model", "me/pushed")]["branches"]["main"]
    assert f"DLP_HUB_REPO=me/pushed DLP_HUB_REVISION={head}" in out
    assert hub.files("model", "me/pushed") == {".gitattributes": hub.files("model", "me/pushed")[".gitattributes"],
                                               **expected}
    space = hub.files("space", "me/app")
    app = push.selection(REPO, push.space_patterns(with_checkpoints=False))
    assert set(space) == {".gitattributes", *app}
    assert space["app.py"] == (REPO / "app.py").read_bytes()
    assert hub.variables["me/app"] == {"DLP_HUB_REPO": "me/pushed", "DLP_HUB_REVISION": head}
    assert {auth for method, _, auth in hub.log if method == "POST"} == {"Bearer hf_fake"}


def test_push_only_some_checkpoints_to_a_new_branch(hub, tmp_path):
    expected = fake_checkpoints(tmp_path)
    hub.commit("model", "me/branched", {"old/model.safetensors": b"o"})
    out = run(["-m", "train.push", "--repo", "me/branched", "--checkpoint-dir", str(tmp_path),
               "--only", "mnist/cnn", "--branch", "try"], hub_env(hub, tmp_path / "hf_home"))
    repo = hub.repos[("model", "me/branched")]
    assert f"DLP_HUB_REVISION={repo['branches']['try']}" in out
    assert set(hub.files("model", "me/branched", "try")) == {"old/model.safetensors",
                                                             *(p for p in expected if p.startswith("mnist/cnn/"))}
    assert set(hub.files("model", "me/branched", "main")) == {"old/model.safetensors"}


def test_readme_front_matter_matches_the_gradio_pin():
    front = re.match(r"---\n(.*?)\n---\n", (REPO / "README.md").read_text(), re.S)
    config = yaml.safe_load(front.group(1))
    pin = re.search(r"^gradio==(\S+)$", (REPO / "requirements.txt").read_text(), re.M).group(1)
    assert config["sdk"] == "gradio" and config["sdk_version"] == pin
    assert config["python_version"] == "3.11" and (REPO / config["app_file"]).exists()
    assert push.space_sdk() == config["sdk"]  # what train.push creates the Space with


def fake_spaces(monkeypatch, zero_gpu: bool) -> list:
    """A stand-in for the `spaces` package; returns the (function, duration) pairs it wrapped."""
    wrapped = []

    def GPU(duration=None):
        def wrap(fn):
            wrapped.append((fn, duration))
            return lambda *args, **kwargs: fn(*args, **kwargs)
        return wrap

    config = types.ModuleType("spaces.config")
    config.Config = type("Config", (), {"zero_gpu": zero_gpu})
    spaces = types.ModuleType("spaces")
    spaces.GPU, spaces.config = GPU, config
    monkeypatch.setitem(sys.modules, "spaces", spaces)
    monkeypatch.setitem(sys.modules, "spaces.config", config)
    return wrapped


def square(x):
    return x * x


def count(n):
    yield from range(n)


def test_on_gpu_leaves_functions_alone_without_spaces(monkeypatch):
    monkeypatch.setitem(sys.modules, "spaces", None)  # import spaces -> ImportError
    assert on_gpu()(square) is square and on_gpu(120)(count) is count
    assert list(on_gpu()(count)(3)) == [0, 1, 2]


def test_on_gpu_leaves_functions_alone_on_a_cpu_space(monkeypatch):
    wrapped = fake_spaces(monkeypatch, zero_gpu=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert on_gpu()(square) is square and wrapped == []


@pytest.mark.parametrize("zero_gpu, cuda", [(True, False), (False, True)])
def test_on_gpu_wraps_with_spaces_gpu_when_there_is_a_gpu(monkeypatch, zero_gpu, cuda):
    wrapped = fake_spaces(monkeypatch, zero_gpu)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    fast, stream = on_gpu()(square), on_gpu(duration=120)(count)
    assert wrapped == [(square, 60), (count, 120)]
    assert fast(3) == 9 and list(stream(3)) == [0, 1, 2]


@pytest.mark.slow  # a second server, started as a Space starts it, caching its examples
@pytest.mark.app
def test_the_space_layout_serves_offline(tmp_path):
    """A dry run of the Space: exactly the files `train.push --space` uploads (checkpoints
    committed into the Space), copied to an empty folder and started as a Space starts it:
    `python app.py`, SPACE_ID set (so examples are cached at start-up), no dataset mirror,
    an empty data directory, no network."""
    from gradio_client import Client, handle_file

    from conftest import running_app

    space = tmp_path / "space"
    for name in push.selection(REPO, push.space_patterns(with_checkpoints=True)):
        (space / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, space / name)
    assert not (space / "tests").exists() and (space / "checkpoints" / "mnist" / "cnn" / "model.safetensors").exists()
    env = {k: v for k, v in os.environ.items() if k not in ("DLP_DATA_MIRROR", "DLP_HUB_REPO", "DLP_HUB_REVISION")}
    env.update(SPACE_ID="me/app", DLP_DATA_DIR=str(tmp_path / "data"), PYTHONPATH="")
    with running_app(tmp_path / "server.log", "--tabs", "overview", "fizzbuzz", "mnist", "faces", cwd=space, env=env,
                     timeout=180) as url:
        client = Client(url, verbose=False)
        assert client.predict(15, api_name="/fizzbuzz_play") == "fizzbuzz"
        drawing = handle_file(str(space / "demos" / "examples" / "mnist" / "digit_7.png"))
        *labels, seen, status = client.predict({"background": None, "layers": [drawing], "composite": drawing},
                                               api_name="/mnist_predict")
        assert [label["label"] for label in labels] == ["7"] * 3
        face_a, face_b, verdict = client.predict(0, api_name="/faces_example")  # cached at start-up
        assert "same person" in verdict.lower()
    log = (tmp_path / "server.log").read_text()
    assert "Caching examples" in log and "Traceback" not in log, log[-3000:]
