"""Start the app as a user does (`python app.py`) on a free port, for the tests that talk to
it through gradio_client or a browser."""
import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from core.data import REPO


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
