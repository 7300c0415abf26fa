"""Median latency of demos.gan.sample (a 64-image grid) and demos.vae.decode (one point).

    python -m benchmarks.generative_latency
"""
import statistics
import time

from core.checkpoints import MissingCheckpoint
from demos import gan, vae


def median_ms(fn, repeats: int) -> float:
    fn()  # load and warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main():
    for model in gan.models():
        try:
            ms = median_ms(lambda: gan.sample(model, 1, 64), 30)
            print(f"gan.sample({model!r}, n=64): median {ms:.1f} ms")
        except MissingCheckpoint as e:
            print(f"gan {model}: {e}")
    for model in vae.models():
        dims = 16 if model == "mnist_vae16" else 2
        try:
            ms = median_ms(lambda: vae.decode(model, [0.3] * dims), 200)
            print(f"vae.decode({model!r}): median {ms:.2f} ms")
        except MissingCheckpoint as e:
            print(f"vae {model}: {e}")


if __name__ == "__main__":
    main()
