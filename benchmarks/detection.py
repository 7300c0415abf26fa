"""Latency of the face-mask tab: detect() on a 600-px photo with each trained detector (the
ImageNet one's target: under 0.5 s on this 2-core CPU), their ratio, and a 6000x4000 upload.

    python -m benchmarks.detection
"""
import statistics
import sys
import tempfile
import time

import numpy as np
import torch
from PIL import Image

from core import checkpoints
from core.pictures import read_picture
from demos import detection
from models.detection import MAX_SIDE


def timed(fn, repeats: int) -> tuple[float, float]:
    """Median and worst seconds of `repeats` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), max(times)


def photo_600() -> Image.Image:
    """A test-split photo scaled to 600 px on its longer side, or noise when no data is here."""
    examples = detection.split_examples(1)
    if examples:
        picture = read_picture(examples[0])
        scale = 600 / max(picture.size)
        return picture.resize((round(picture.width * scale), round(picture.height * scale)), Image.Resampling.BILINEAR)
    return Image.fromarray(np.random.default_rng(0).integers(0, 255, (400, 600, 3), dtype=np.uint8))


def main(repeats: int = 20):
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    picture = np.asarray(photo_600())
    medians = {}
    for backbone in detection.DETECTORS:  # the default (ImageNet EfficientNet-Lite0) first
        try:
            detection.load_model(backbone)
        except checkpoints.MissingCheckpoint as e:
            print(f"{backbone}: {e}")
            continue
        detection.detect(picture, 0.5, backbone)  # warm up
        median, worst = timed(lambda: detection.detect(picture, 0.5, backbone), repeats)
        medians[backbone] = median
        verdict = "within" if median < 0.5 else "OVER"
        print(f"{backbone}: detect() on a {picture.shape[1]}x{picture.shape[0]} photo: median {median:.3f} s, "
              f"worst {worst:.3f} s ({verdict} the 0.5 s target), "
              f"{len(detection.detect(picture, 0.5, backbone))} faces at score 0.5")
    if len(medians) == 2:
        a, b = medians.values()
        print(f"{' / '.join(medians)}: {a / b:.2f}x the time, measured in this run")
    if not medians:
        sys.exit("no detector is trained")
    with tempfile.NamedTemporaryFile(suffix=".jpg") as f:
        Image.fromarray(picture).resize((6000, 4000)).save(f.name, quality=90)
        median, worst = timed(lambda: detection.detect(f.name, 0.5, next(iter(medians))), 3)
        print(f"{next(iter(medians))}: detect() on a 6000x4000 JPEG (decoded, shrunk to {MAX_SIDE} px): "
              f"median {median:.3f} s")


if __name__ == "__main__":
    main()
