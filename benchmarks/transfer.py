"""Speed of the transfer tab on ImageNet's EfficientNet-Lite0 (224 px), on real photo files
(the ants/bees JPEGs, as an upload reaches the app):

- a photo through the network: bring-your-own-classes' predict (read, resize, crop, features,
  head) and "what the pretrained network sees" (top-5 and heat map); target < 150 ms
- a bring-your-own-classes head on 5 classes x 10 photos (features of each photo and its mirror
  image, then the head); target < 10 s
- a live ants-vs-bees run (10 photos a class): seconds until its first epoch streams, for each
  strategy, the first run in the process (cold: data and weights loaded) and again; target < 30 s

    python -m benchmarks.transfer
    python -m benchmarks.transfer --threads 1    # one thread: 10x faster when other jobs share the 2 cores
    python -m benchmarks.transfer --repeats 5 --skip-live
"""
import argparse
import statistics
import time

import torch

from core import data
from demos import transfer
from models import efficientnet


def photo_files() -> list:
    data.hymenoptera("train")  # unpacks the photos (once)
    root = data.data_dir() / "hymenoptera" / "hymenoptera_data"
    return [sorted((root / split / name).glob("*.jpg")) for split in ("train", "val") for name in ("ants", "bees")]


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20, help="photos timed through the network")
    parser.add_argument("--threads", type=int, help="torch's CPU threads (default: torch's choice)")
    parser.add_argument("--skip-live", action="store_true", help="leave out the live training runs")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    ants, bees, val_ants, val_bees = photo_files()

    # bring your own classes: 5 classes x 10 photo files (ants and bees, train and val, and more ants)
    classes = {f"class {k + 1}": files[:10] for k, files in enumerate((ants, bees, val_ants, val_bees, ants[10:]))}
    cold = timed(transfer.fit_head, classes)  # loads the weights first
    warm = [timed(transfer.fit_head, classes) for _ in range(2)]
    print(f"fit_head, 5 classes x 10 photos: {cold:.2f} s the first time (weights loaded), "
          f"then {statistics.median(warm):.2f} s (target < 10 s)")

    head = transfer.fit_head({"ants": ants[:5], "bees": bees[:5]})
    photos = (val_ants + val_bees)[:args.repeats]
    for name, fn in (("predict (features + head)", lambda p: transfer.predict(head, p)),
                     ("what_it_sees (top-5 + heat map)", transfer.what_it_sees),
                     ("efficientnet.top5", efficientnet.top5)):
        fn(photos[0])
        times = sorted(timed(fn, p) * 1000 for p in photos)
        print(f"{name}, one {photos[0].suffix} photo at 224 px: median {statistics.median(times):.0f} ms, "
              f"max {times[-1]:.0f} ms over {len(times)} photos (target < 150 ms)")

    if args.skip_live:
        return
    for strategy in ("frozen", "finetune", "scratch", "frozen"):
        start = time.perf_counter()
        run = transfer.live_train("ants", strategy, 10, 10, "efficientnet_lite0")
        accs = next(run)
        first = time.perf_counter() - start
        run.close()
        print(f"live ants vs bees, {strategy}, 10 photos a class: first epoch streamed after {first:.1f} s "
              f"(held-out {accs[0]:.1%}) (target < 30 s)")


if __name__ == "__main__":
    main()
