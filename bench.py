"""Benchmark the app as its users reach it: `python app.py` started here, every endpoint
called through gradio_client, and the light ones also straight through the HTTP API, as a
browser calls them (gradio_client polls for answers every 50 ms, which a browser does not).

    python -m bench                     # the full run
    python -m bench --quick             # a few calls each, short phases: checks that it works
    python -m bench --json bench.json   # also write every number as JSON

Prints markdown tables: the cold start to the first page and the first answer; for every
endpoint (found in the app's config, so new tabs are included) the median and 95th
percentile latency over repeated calls; the server's peak memory once every tab has been
used; and latency and throughput with 8 concurrent users on the light endpoints, alone and
while a style transfer runs, through each way of calling.
"""
import argparse
import concurrent.futures
import importlib.metadata
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import httpx
import numpy as np
from gradio_client import Client

from benchmarks.api import endpoints, http_call, page_defaults, sample_files, typical_inputs

REPO = Path(__file__).resolve().parent
LIGHT = ["/mnist_predict", "/fizzbuzz_play", "/gan_sample", "/text_classify"]  # the light endpoints
HTTP_BELOW_MS = 2000  # endpoints answering faster than this are also timed through plain HTTP
CALL_TIMEOUT = 900  # s


# ---- the server -------------------------------------------------------------------------------

def memory_mb(pid: int) -> dict[str, float]:
    """Resident memory now and at its peak (VmRSS, VmHWM) of a process, in MB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {"rss_mb": int(fields["VmRSS"].split()[0]) / 1024, "peak_rss_mb": int(fields["VmHWM"].split()[0]) / 1024}


def start_app(tabs: list[str] | None, log: Path) -> tuple[subprocess.Popen, str, float]:
    """`python app.py` on a free port; returns (process, URL, seconds until the page is served)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, HF_HUB_OFFLINE=os.environ.get("HF_HUB_OFFLINE", "1"), GRADIO_ANALYTICS_ENABLED="False")
    start = time.perf_counter()
    server = subprocess.Popen([sys.executable, "app.py", "--port", str(port), *(["--tabs", *tabs] if tabs else [])],
                              cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return server, url, time.perf_counter() - start
        except OSError:
            if server.poll() is not None or time.perf_counter() - start > 300:
                server.kill()
                raise SystemExit("the app did not start:\n" + log.read_text()[-3000:])
            time.sleep(0.1)


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    ram = int(Path("/proc/meminfo").read_text().split()[1]) / 2 ** 20
    versions = {}
    for package in ("torch", "gradio", "gradio_client"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gb": round(ram, 1), "python": platform.python_version(),
            **versions, "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


# ---- calling ----------------------------------------------------------------------------------

def timed_call(client: Client, name: str, args: list) -> tuple[float, str | None]:
    """(seconds, None) or (seconds, the error's message). A call gradio_client loses is timed
    again: in gradio_client 2.7 a job submitted just as the server closes the session's event
    stream (it does whenever the session has nothing queued) ends in CancelledError."""
    for attempt in range(3):
        start = time.perf_counter()
        try:
            client.submit(*args, api_name=name).result(timeout=CALL_TIMEOUT)
            return time.perf_counter() - start, None
        except concurrent.futures.CancelledError:
            if attempt == 2:
                return time.perf_counter() - start, "CancelledError: gradio_client lost the answer three times"
        except Exception as e:
            return time.perf_counter() - start, f"{type(e).__name__}: {str(e)[:200]}"


def timed_http_call(http: httpx.Client, url: str, name: str, args: list) -> tuple[float, str | None]:
    """Like timed_call, through POST /gradio_api/call/<name> and its event stream (files
    uploaded first, inside the time, as a browser uploads them)."""
    start = time.perf_counter()
    try:
        outcome, message = http_call(url, name, args, CALL_TIMEOUT, http=http)
    except Exception as e:
        outcome, message = "error", f"{type(e).__name__}: {str(e)[:200]}"
    return time.perf_counter() - start, message if outcome != "ok" else None


def stats_ms(seconds: list[float]) -> dict:
    if not seconds:
        return {"calls": 0}
    ms = np.array(seconds) * 1000
    return {"calls": len(ms), "median_ms": float(np.median(ms)), "p95_ms": float(np.percentile(ms, 95)),
            "min_ms": float(ms.min()), "max_ms": float(ms.max())}


def repeat(call, repeats: int, budget: float) -> tuple[list[float], list[str]]:
    """Up to `repeats` timed calls, stopping early once `budget` seconds are spent (at least one)."""
    times, errors = [], []
    started = time.perf_counter()
    while len(times) < repeats and (not times or time.perf_counter() - started < budget):
        seconds, error = call()
        times.append(seconds)
        if error:
            errors.append(error)
    return times, errors


def bench_endpoint(client: Client, url: str, ep, args: list, repeats: int, budget: float) -> dict:
    """One untimed first call (it loads the models), then timed calls through gradio_client;
    a quick endpoint is timed through plain HTTP too."""
    first, error = timed_call(client, ep.name, args)
    times, errors = repeat(lambda: timed_call(client, ep.name, args), repeats, budget)
    errors = ([error] if error else []) + errors
    result = {"endpoint": ep.name, "first_call_ms": first * 1000, **stats_ms(times), "errors": len(errors),
              "error": errors[0] if errors else None, "streams": ep.generator}
    if times and np.median(times) * 1000 < HTTP_BELOW_MS:
        with httpx.Client() as http:
            times, errors = repeat(lambda: timed_http_call(http, url, ep.name, args), repeats, budget)
        result["http"] = {**stats_ms(times), "errors": len(errors)}
    return result


def style_transfer_endpoint(found, name: str | None):
    if name:
        return next((ep for ep in found if ep.name == name), None)
    candidates = [ep for ep in found if "style" in ep.name and any(i.type == "image" for i in ep.inputs)]
    return max(candidates, key=lambda ep: (ep.documented, sum(i.type == "image" for i in ep.inputs)), default=None)


def concurrent_users(url: str, calls: dict[str, list], users: int, seconds: float, background=None,
                     http: bool = False, pace: float | None = None) -> dict:
    """`users` clients (gradio_client's, or with http=True plain HTTP ones), each calling the
    light endpoints in turn for `seconds`: back to back (a stress test: the throughput), or
    with `pace`, one call every `pace` seconds each, like a person clicking. Optionally with
    `background` (name, args) called back to back through gradio_client meanwhile."""
    clients = [Client(url, verbose=False, download_files=False) for _ in range(users + 1)]
    sessions = [httpx.Client() for _ in range(users)] if http else []
    stop = time.perf_counter() + seconds
    names = list(calls)
    heavy = {"calls": 0, "seconds": []}
    halt = threading.Event()

    def user(k: int):
        done = []
        i = k
        if pace:  # users arrive spread over one period, not all at once
            time.sleep(pace * k / users)
        while time.perf_counter() < stop:
            began = time.perf_counter()
            name = names[i % len(names)]
            if http:
                done.append((name, *timed_http_call(sessions[k], url, name, calls[name])))
            else:
                done.append((name, *timed_call(clients[k], name, calls[name])))
            i += 1
            if pace:
                time.sleep(max(0.0, began + pace - time.perf_counter()))
        return done

    def keep_busy():
        while not halt.is_set():
            heavy["seconds"].append(timed_call(clients[-1], background[0], background[1])[0])
            heavy["calls"] += 1

    busy = threading.Thread(target=keep_busy, daemon=True) if background else None
    if busy:
        busy.start()
        time.sleep(2)  # let it get going before the users arrive
        stop = time.perf_counter() + seconds
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(users) as pool:
        results = [r for rs in pool.map(user, range(users)) for r in rs]
    elapsed = time.perf_counter() - start
    halt.set()
    for session in sessions:
        session.close()
    out = {"transport": "HTTP API" if http else "gradio_client", "pace_s": pace, "users": users, "seconds": elapsed, "requests": len(results),
           "throughput_per_s": len(results) / elapsed, "all": stats_ms([s for _, s, _ in results]), "endpoints": {}}
    for name in names:
        mine = [(s, e) for n, s, e in results if n == name]
        out["endpoints"][name] = {**stats_ms([s for s, _ in mine]), "errors": sum(e is not None for _, e in mine),
                                  "throughput_per_s": len(mine) / elapsed}
    if background:
        out["background"] = {"endpoint": background[0], "calls_started": heavy["calls"],
                             "finished_s": [round(s, 1) for s in heavy["seconds"]]}
    return out


# ---- report -----------------------------------------------------------------------------------

def markdown(report: dict) -> str:
    m, start = report["machine"], report["start"]
    lines = [f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gb']} GB RAM; Python {m['python']}, torch "
             f"{m.get('torch', '?')}, gradio {m.get('gradio', '?')}; load average at start "
             f"{', '.join(map(str, m['load_average_at_start']))}. Mode: {report['mode']}.", "",
             "| start-up | |", "|---|---|",
             f"| `python app.py` to the first page served | {start['page_s']:.1f} s |",
             f"| ... to the first answer ({start['first_endpoint']}) | {start['first_answer_s']:.1f} s |",
             f"| resident memory then | {start['rss_mb']:.0f} MB |",
             f"| peak resident memory, every endpoint used once | {report['memory']['peak_rss_mb']:.0f} MB |", "",
             "One user at a time. gradio_client waits for answers by polling every 50 ms; the HTTP API "
             "columns are the same calls made as a browser makes them (files uploaded inside the time).", "",
             "| endpoint | first call | median | p95 | calls | errors | median (HTTP API) | p95 (HTTP API) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in report["endpoints"]:
        note = " (streams; smallest settings)" if r["streams"] else ""
        h = r.get("http")
        lines.append(f"| `{r['endpoint']}`{note} | {r['first_call_ms']:.0f} ms | {r.get('median_ms', 0):.0f} ms | "
                     f"{r.get('p95_ms', 0):.0f} ms | {r['calls']} | {r['errors']}"
                     + (f": {r['error'][:60]}" if r["error"] else "")
                     + (f" | {h.get('median_ms', 0):.0f} ms | {h.get('p95_ms', 0):.0f} ms |" if h else " | | |"))
    for c in report.get("concurrency", []):
        how = f"one call every {c['pace_s']:g} s each" if c.get("pace_s") else "calls back to back"
        title = "while a style transfer runs" if c.get("background") else "alone"
        lines += ["", f"{c['users']} concurrent users through {c['transport']} on the light endpoints, {how}, "
                      f"{title} ({c['seconds']:.0f} s, {c['throughput_per_s']:.1f} requests/s in all, median "
                      f"{c['all'].get('median_ms', 0):.0f} ms):", "",
                  "| endpoint | requests/s | median | p95 | errors |", "|---|---|---|---|---|"]
        for name, e in c["endpoints"].items():
            lines.append(f"| `{name}` | {e['throughput_per_s']:.1f} | {e.get('median_ms', 0):.0f} ms | "
                         f"{e.get('p95_ms', 0):.0f} ms | {e['errors']} |")
        if c.get("background"):
            b = c["background"]
            lines.append(f"\nBackground: `{b['endpoint']}` called back to back, {b['calls_started']} calls "
                         f"(finished in {b['finished_s']} s).")
    if report.get("style_transfer_note"):
        lines += ["", report["style_transfer_note"]]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Benchmark every endpoint of the app through gradio_client.")
    parser.add_argument("--quick", action="store_true",
                        help="3 calls per endpoint, smallest slider settings, 8-second concurrency phases")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per endpoint (default 20, quick 3)")
    parser.add_argument("--budget", type=float, default=None,
                        help="stop repeating an endpoint after this many seconds (default 60, quick 10)")
    parser.add_argument("--users", type=int, default=8, help="concurrent users on the light endpoints (default 8)")
    parser.add_argument("--duration", type=float, default=None,
                        help="seconds of each concurrency phase (default 30, quick 8)")
    parser.add_argument("--pace", type=float, default=1.0,
                        help="seconds between one paced user's calls (default 1: a person clicking)")
    parser.add_argument("--tabs", nargs="+", metavar="TAB", help="start the app with only these tabs")
    parser.add_argument("--style-endpoint", help="the style-transfer endpoint (default: found by name)")
    parser.add_argument("--json", metavar="PATH", help="also write every number to this JSON file")
    args = parser.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 20)
    budget = args.budget or (10.0 if args.quick else 60.0)
    duration = args.duration or (8.0 if args.quick else 30.0)

    report = {"mode": ("quick" if args.quick else "full") + f", {repeats} timed calls per endpoint",
              "machine": machine()}
    workdir = Path(tempfile.mkdtemp(prefix="dlp-bench-"))
    server, url, page_s = start_app(args.tabs, workdir / "server.log")
    try:
        started = time.perf_counter()
        client = Client(url, verbose=False, download_files=False)
        found = endpoints(client.config)
        files = sample_files(workdir)
        first = next((ep for ep in found if ep.name == "/fizzbuzz_play"), found[0])
        seconds, error = timed_call(client, first.name, typical_inputs(client.config, first, files))
        report["start"] = {"page_s": page_s, "first_endpoint": first.name, "first_answer_s":
                           page_s + time.perf_counter() - started, "first_answer_error": error, **memory_mb(server.pid)}
        print(f"serving in {page_s:.1f} s; {len(found)} endpoints", file=sys.stderr)

        report["endpoints"] = []
        for ep in found:
            inputs = typical_inputs(client.config, ep, files, cheap=args.quick or ep.generator)
            result = bench_endpoint(client, url, ep, inputs, repeats, budget)
            report["endpoints"].append(result)
            http = f", HTTP API {result['http'].get('median_ms', 0):.0f} ms" if "http" in result else ""
            print(f"  {ep.name}: median {result.get('median_ms', 0):.0f} ms ({result['calls']} calls){http}",
                  file=sys.stderr)
        report["memory"] = memory_mb(server.pid)

        light = {ep.name: typical_inputs(client.config, ep, files) for ep in found if ep.name in LIGHT}
        if light:
            style = style_transfer_endpoint(found, args.style_endpoint)
            background = None
            if style:  # what one click starts with the page's own settings (optimisation, 60 steps, 256 px)
                inputs = (typical_inputs(client.config, style, files, cheap=True) if args.quick
                          else page_defaults(client.config, style, files))
                background = (style.name, inputs)
            phases = [dict(http=http, pace=pace) for pace in (None, args.pace) for http in (False, True)]
            if background:
                phases += [dict(background=background, http=http, pace=pace)
                           for pace in (None, args.pace) for http in (False, True)]
            report["concurrency"] = []
            for phase in phases:
                report["concurrency"].append(concurrent_users(url, light, args.users, duration, **phase))
                c = report["concurrency"][-1]
                print(f"  {c['users']} users, {c['transport']}, pace {phase['pace']}, background "
                      f"{bool(phase.get('background'))}: median {c['all'].get('median_ms', 0):.0f} ms", file=sys.stderr)
            if not style:
                report["style_transfer_note"] = ("This app has no style-transfer endpoint yet, so the light endpoints "
                                                 "were measured only without one running.")
        report["memory_at_end"] = memory_mb(server.pid)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(workdir, ignore_errors=True)
    print(markdown(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
