"""Shared test helpers and the test tiers.

Tiers (markers, registered in pyproject.toml):
- slow: full evaluations of committed checkpoints, long training smoke runs;
- app: tests that start the server (`python app.py`) and talk to it;
- browser: Playwright in Debian's Chromium (also starts the server).
`python -m pytest -m "not slow and not app and not browser"` is the quick loop; `.ci/run`
runs everything."""
import contextlib
import fcntl
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

# No network here or in CI: never wait for the Hub, never phone home.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# pytest-xdist runs the suite in several workers (`-n 2` in pyproject.toml): one torch thread
# each, and for what they start (CLIs, servers), so that the workers share the cores instead
# of fighting over them.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"

from core.data import REPO  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--screenshots", metavar="DIR", default=None,
                     help="tests/test_browser.py: save a screenshot of every tab to DIR "
                          "(the README's: docs/screenshots)")


def pytest_configure(config):
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config, items):
    """With xdist's --dist loadgroup: a module's tests run on one worker (so what a module
    computes once, e.g. one --eval per session, is computed once), and every test that talks
    to the session's server (app_url) on one worker, so the server starts once."""
    groups = {}
    for item in items:
        own = item.get_closest_marker("xdist_group")  # a test may name its own group (a second long --eval)
        group = own.args[0] if own else "app" if "app_url" in getattr(item, "fixturenames", ()) else item.path.name
        if not own:
            item.add_marker(pytest.mark.xdist_group(group))
        groups[item] = group
    # The longest groups first (minutes with two workers, measured), so that no worker is
    # left alone with a long one at the end while the other has nothing to do.
    items.sort(key=lambda item: LONGEST_FIRST.index(groups[item]) if groups[item] in LONGEST_FIRST else len(LONGEST_FIRST))


def _machine_locks():
    """Two lock files shared by this run's xdist workers (None without xdist): `gate`, which a
    test that wants the machine holds while it waits, so that no new test starts meanwhile, and
    `running`, which every other test holds shared while it runs."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if not run:
        return None
    folder = Path(tempfile.gettempdir()) / f"dlp-pytest-{run}"
    folder.mkdir(exist_ok=True)
    return (folder / "gate").open("a"), (folder / "running").open("a")


@pytest.fixture(autouse=True)
def _sharing_the_machine(request):
    locks = None if "quiet" in request.fixturenames else _machine_locks()
    if locks is None:
        yield
        return
    gate, running = locks
    with gate, running:
        fcntl.flock(gate, fcntl.LOCK_EX)  # not while a quiet test waits for the machine
        fcntl.flock(gate, fcntl.LOCK_UN)
        fcntl.flock(running, fcntl.LOCK_SH)
        yield


@pytest.fixture
def quiet():
    """The machine to this test alone: it waits for the other worker's test to end and holds
    off its next one. For timings a user would see on a 2-core server that runs only the app
    (the other worker's test is not part of the scenario: a CI run measured 3.4 s for what
    takes 0.3 s on the quiet machine)."""
    locks = _machine_locks()
    if locks is None:
        yield
        return
    gate, running = locks
    with gate, running:
        fcntl.flock(gate, fcntl.LOCK_EX)
        fcntl.flock(running, fcntl.LOCK_EX)
        yield


LONGEST_FIRST = ["app", "test_cifar10.py", "test_style_transfer.py", "test_app.py", "test_transfer.py", "test_faces.py",
                 "test_detection.py", "test_translation.py", "detection_mobilenet_v3"]


def wait_for(condition, timeout: float = 10.0):
    """Poll `condition()` every 20 ms until it is true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def run_cli(*args, timeout: float = 900) -> dict:
    """Run `python -m <args>` as a user would; the last stdout line is a JSON object."""
    result = subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_cli_failing(*args, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run `python -m <args>` expecting it to refuse (non-zero exit); returns the result."""
    result = subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert result.returncode != 0, result.stdout[-3000:]
    return result


def refused_pictures(tmp_path) -> dict[str, tuple[str, str]]:
    """A text file named .png and a 2x2 picture: (path, what the message must say)."""
    notes, tiny = tmp_path / "notes.png", tmp_path / "tiny.png"
    notes.write_text("this is not a picture")
    from PIL import Image

    Image.new("RGB", (2, 2), (255, 0, 0)).save(tiny)
    return {"a text file named .png": (str(notes), "it is not a picture this tab can read"),
            "a 2x2 picture": (str(tiny), "is only 2x2 pixels: too small")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_app(log: Path, *args: str, timeout: float = 90, cwd: Path = REPO, env: dict | None = None):
    """Run `python app.py --port <free port> *args` in cwd, yield its URL once it answers, stop
    it afterwards. Fails the test with the server's log if it does not come up."""
    port = free_port()
    env = dict(env if env is not None else os.environ, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
    server = subprocess.Popen([sys.executable, "app.py", "--port", str(port), *args], cwd=cwd, env=env,
                              stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + timeout
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    pytest.fail("app did not start:\n" + log.read_text()[-3000:])
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture(scope="session")
def app_url(tmp_path_factory):
    """One `python app.py` with every tab for the whole session, shared by test_app.py,
    test_bad_input.py and test_browser.py (a start with all tabs takes tens of seconds)."""
    with running_app(tmp_path_factory.mktemp("app") / "server.log", timeout=180) as url:
        yield url
