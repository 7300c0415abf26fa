"""Median latency of demos.mnist.classify on a 280x280 Sketchpad drawing, per model.

    python -m benchmarks.mnist_latency
"""
import statistics
import time

import numpy as np
import torch

from demos.examples.draw_digits import draw_digit
from demos.mnist import classify, models


def main(repeats: int = 200):
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    drawings = [{"background": None, "layers": [], "composite": np.asarray(draw_digit(d))} for d in range(10)]
    for model in models():
        classify(drawings[0], model)  # load the checkpoint and warm up
        times = []
        for i in range(repeats):
            start = time.perf_counter()
            classify(drawings[i % 10], model)
            times.append((time.perf_counter() - start) * 1000)
        print(f"classify(model={model!r}): median {statistics.median(times):.2f} ms, "
              f"p90 {np.percentile(times, 90):.2f} ms over {repeats} calls")


if __name__ == "__main__":
    main()
