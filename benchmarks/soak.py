"""Soak the app: the memory probes of issue 27, then minutes of mixed traffic, printing the
server's memory, latency percentiles and errors as it goes. A benchmark, not a test.

    python -m benchmarks.soak                 # probes, then 10 minutes of traffic
    python -m benchmarks.soak --minutes 2 --users 4 --json soak.json

Probes (each one small request that once cost gigabytes): a 16 KB WAV whose header claims
4,000,037 Hz; one 4000x4000 PNG sent as 20 Sketchpad layers; 30 additions of a 2000x2000
drawing to one bring-your-own-classes session; six 49-megapixel PNGs (160 KB each) at once on
the picture endpoints. For each: the server's resident memory before, at its peak, and 10 s
after, and what the app answered. Then `--users` people click the light endpoints once a
second while a heavy job (a style-transfer optimisation, a CIFAR-10 lab run) runs back to back
and the probes repeat every minute; each minute prints memory and latency percentiles.
"""
import argparse
import concurrent.futures
import json
import struct
import tempfile
import threading
import time
from pathlib import Path

import httpx
from gradio_client import Client, handle_file
from PIL import Image, ImageDraw

from bench import LIGHT, memory_mb, start_app, stats_ms
from benchmarks.api import endpoints, http_call, page_defaults, sample_files, typical_inputs, write_sound

SETTLE_S = 10  # the server trims freed memory every 5 s


def lying_wav(folder: Path) -> Path:
    """A valid 1-second 8 kHz WAV whose header then claims 4,000,037 samples a second."""
    path = write_sound(folder / "lying.wav", seconds=1.0, rate=8000)
    data = bytearray(path.read_bytes())
    data[24:28] = struct.pack("<I", 4_000_037)  # sample rate
    data[28:32] = struct.pack("<I", 4_000_037 * 2)  # byte rate
    path.write_bytes(bytes(data))
    return path


def big_png(folder: Path, side: int, name: str) -> Path:
    """A white side x side PNG with a stroke: a few hundred KB of file, side^2 pixels."""
    image = Image.new("RGB", (side, side), "white")
    ImageDraw.Draw(image).line([(side // 4, side // 4), (3 * side // 4, 3 * side // 4)], fill="black", width=side // 40)
    image.save(folder / name, optimize=True)
    return folder / name


def probes(folder: Path) -> list[tuple[str, list[tuple[str, list, int]]]]:
    """(what, [(endpoint, args, times), ...]) for each probe; its calls run at once, each
    `times` times in a row in one session (so session state piles up)."""
    wav = handle_file(str(lying_wav(folder)))
    layer = handle_file(str(big_png(folder, 4000, "layer.png")))
    huge = handle_file(str(big_png(folder, 7000, "huge.png")))
    drawing = handle_file(str(big_png(folder, 2000, "drawing.png")))
    return [
        ("WAV claiming 4,000,037 Hz", [("/speech_transcribe", [wav], 1)]),
        ("4000x4000 PNG as 20 Sketchpad layers",
         [("/mnist_predict", [{"background": layer, "layers": [layer] * 20, "composite": layer}], 1)]),
        ("30 additions of a 2000x2000 drawing",
         [("/transfer_add_drawing", [{"background": None, "layers": [], "composite": drawing}, "1"], 30)]),
        ("six 49-megapixel PNGs at once", [(name, args, 1) for name, args in [
            ("/cifar10_classify", [huge]), ("/detection_detect", [huge, 0.5]), ("/faces_compare", [huge, huge])] * 2]),
    ]


def call(url: str, name: str, args: list, times: int) -> tuple[float, str | None]:
    """Seconds taken and the last error message (None when every call succeeded)."""
    start, error = time.perf_counter(), None
    client = Client(url, verbose=False, download_files=False)
    for _ in range(times):
        try:
            client.predict(*args, api_name=name)
        except Exception as e:  # the app's message
            error = str(e)[:200]
    client.close()
    return time.perf_counter() - start, error


def run_probe(url: str, pid: int, what: str, calls: list) -> dict:
    before = memory_mb(pid)["rss_mb"]
    peak, done = before, threading.Event()

    def watch():
        nonlocal peak
        while not done.wait(0.1):
            peak = max(peak, memory_mb(pid)["rss_mb"])

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    with concurrent.futures.ThreadPoolExecutor(len(calls)) as pool:
        answers = list(pool.map(lambda c: call(url, *c), calls))
    done.set()
    time.sleep(SETTLE_S)
    after = memory_mb(pid)["rss_mb"]
    return {"probe": what, "before_mb": round(before), "peak_mb": round(peak), "after_mb": round(after),
            "seconds": round(max(s for s, _ in answers), 1),
            "answers": sorted({f"{c[0]}: {e or 'answered'}" for c, (_, e) in zip(calls, answers)})}


def traffic(url: str, config: dict, files: dict, users: int, seconds: float, pid: int, probe_calls: list) -> list[dict]:
    """Light clicks once a second per user, heavy jobs back to back, probes every minute;
    one row per minute."""
    found = {ep.name: ep for ep in endpoints(config)}
    light = {n: typical_inputs(config, found[n], files) for n in LIGHT if n in found}
    heavy = [n for n in ("/style_transfer_stylize", "/cifar10_lab_train") if n in found]
    # the style transfer as the page starts (an optimisation), the lab at its smallest
    heavy_args = {n: page_defaults(config, found[n], files) if "style" in n else typical_inputs(config, found[n], files, cheap=True)
                  for n in heavy}
    results, lock, stop = [], threading.Lock(), time.perf_counter() + seconds

    def user(k: int):
        http, names, i = httpx.Client(), list(light), k
        time.sleep(k / users)
        while time.perf_counter() < stop:
            began = time.perf_counter()
            status, error = http_call(url, names[i % len(names)], light[names[i % len(names)]], http=http)
            with lock:
                results.append((time.perf_counter(), time.perf_counter() - began, error))
            i += 1
            time.sleep(max(0.0, began + 1.0 - time.perf_counter()))

    def heavy_jobs():
        i = 0
        while heavy and time.perf_counter() < stop:
            name = heavy[i % len(heavy)]
            http_call(url, name, heavy_args[name], timeout=900)
            i += 1

    threads = [threading.Thread(target=user, args=(k,), daemon=True) for k in range(users)]
    threads.append(threading.Thread(target=heavy_jobs, daemon=True))
    for t in threads:
        t.start()
    rows, begin = [], time.perf_counter()
    while time.perf_counter() < stop:
        minute_end = min(stop, time.perf_counter() + 60)
        run_probe(url, pid, "probe", probe_calls[(len(rows)) % len(probe_calls)][1][:2])
        time.sleep(max(0.0, minute_end - time.perf_counter()))
        with lock:
            mine = [(s, e) for t, s, e in results if t > minute_end - 60]
        rows.append({"minute": len(rows) + 1, "rss_mb": round(memory_mb(pid)["rss_mb"]),
                     "light_requests": len(mine), **{k: v for k, v in stats_ms([s for s, _ in mine]).items()},
                     "errors": sum(e is not None for _, e in mine)})
        print(json.dumps(rows[-1]), flush=True)
    for t in threads:
        t.join(timeout=900)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10, help="minutes of mixed traffic after the probes")
    parser.add_argument("--users", type=int, default=4, help="people clicking the light endpoints once a second")
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args(argv)

    folder = Path(tempfile.mkdtemp(prefix="dlp_soak_"))
    server, url, _ = start_app(None, folder / "server.log")
    try:
        client = Client(url, verbose=False, download_files=False)
        config = client.config
        client.close()
        files = sample_files(folder / "files")
        time.sleep(SETTLE_S)
        baseline = memory_mb(server.pid)["rss_mb"]
        print(f"baseline resident memory: {baseline:.0f} MB", flush=True)
        probe_calls = probes(folder)
        report = {"baseline_mb": round(baseline), "probes": [], "minutes": []}
        for what, calls in probe_calls:
            report["probes"].append(run_probe(url, server.pid, what, calls))
            print(json.dumps(report["probes"][-1]), flush=True)
        report["minutes"] = traffic(url, config, files, args.users, args.minutes * 60, server.pid, probe_calls)
        time.sleep(SETTLE_S)
        report["end_mb"] = round(memory_mb(server.pid)["rss_mb"])
        report["peak_mb"] = round(memory_mb(server.pid)["peak_rss_mb"])
        print(json.dumps({k: report[k] for k in ("baseline_mb", "end_mb", "peak_mb")}))
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=1))
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
