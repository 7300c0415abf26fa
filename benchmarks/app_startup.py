"""Seconds from `python app.py` to the first page served, and the server's memory then.

    python -m benchmarks.app_startup [--tabs mnist]
"""
import socket
import subprocess
import sys
import time
import urllib.request

from core.data import REPO


def main():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.perf_counter()
    server = subprocess.Popen([sys.executable, "app.py", "--port", str(port), *sys.argv[1:]], cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except OSError:
                if server.poll() is not None:
                    raise SystemExit("app exited during start-up")
                time.sleep(0.1)
        ready = time.perf_counter() - start
        rss_kb = next(int(line.split()[1]) for line in open(f"/proc/{server.pid}/status") if line.startswith("VmRSS"))
        print(f"ready to serve in {ready:.1f} s; resident memory {rss_kb / 1024:.0f} MB")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
