"""Latency of the CIFAR-10 tab: every trained model on one picture (what the Classify
button does), per model and all together, plus one huge upload.

    python -m benchmarks.cifar10_latency
"""
import statistics
import tempfile
import time

import numpy as np
import torch
from PIL import Image

from demos import cifar10


def median_ms(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), float(np.percentile(times, 90))


def main(repeats: int = 50):
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    picture = str(cifar10.EXAMPLES[0])
    x = cifar10.preprocess_image(picture)
    trained = cifar10.trained_models()
    for model in trained:
        cifar10.classify_tensor(x, model)  # load and warm up
        median, p90 = median_ms(lambda: cifar10.classify_tensor(x, model), repeats)
        print(f"{model:12s} median {median:6.2f} ms, p90 {p90:6.2f} ms")
    median, p90 = median_ms(lambda: cifar10.classify_all(picture), repeats)
    print(f"classify_all ({len(trained)} models, from the file): median {median:.1f} ms, p90 {p90:.1f} ms")
    with tempfile.NamedTemporaryFile(suffix=".jpg") as f:
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (6000, 7000, 3), dtype=np.uint8)).save(f.name, quality=90)
        median, p90 = median_ms(lambda: cifar10.classify_all(f.name), 5)
        print(f"classify_all on a 7000x6000 JPEG: median {median:.1f} ms")


if __name__ == "__main__":
    main()
