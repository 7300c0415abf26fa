"""Median latency of demos.speech.transcribe on a 3-second clip (the held-out speaker saying
five digits, as gr.Audio hands it over: 48 kHz int16 stereo), beam search and greedy.

    python -m benchmarks.speech_latency
    python -m benchmarks.speech_latency --checkpoint-dir /tmp/ck     # a checkpoint not committed
"""
import argparse
import functools
import statistics
import time

import numpy as np
import scipy.signal
import torch

from core import data
from demos import speech as demo
from models.speech import SAMPLE_RATE, build_utterance, load_clips, load_model


def three_second_clip() -> tuple[int, np.ndarray]:
    if data.mirror_dir() is not None or (data.data_dir() / "fsdd" / "recordings.npz").exists():
        wave = build_utterance(load_clips(download=False)["test"], [4, 1, 9, 2, 7], np.random.default_rng(0))
    else:  # no recordings here: a tone burst stands in (the model's cost hardly depends on what is said)
        t = np.arange(2 * SAMPLE_RATE) / SAMPLE_RATE
        wave = (0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 2 * t) > 0)).astype(np.float32)
    wave = np.pad(wave, (0, max(0, 3 * SAMPLE_RATE - len(wave))))[:3 * SAMPLE_RATE]
    stereo = np.stack([scipy.signal.resample_poly(wave, 6, 1)] * 2, axis=1)  # (144000, 2)
    return 48000, np.round(stereo * 32767).astype(np.int16)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=50, help="calls timed per decoder")
    parser.add_argument("--checkpoint-dir", help="read the checkpoint from here instead of checkpoints/")
    args = parser.parse_args(argv)
    if args.checkpoint_dir:
        demo.load_model = functools.cache(lambda: load_model(root=args.checkpoint_dir))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    clip = three_second_clip()
    print(f"transcript: {demo.transcribe(clip)!r}")  # loads the checkpoint and warms up
    for name, beam in (("beam search (the tab's)", demo.BEAM), ("greedy", 1)):
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            wave = demo.read_audio(clip)
            demo.no_speech(wave)
            demo.recognise(wave, beam)
            times.append((time.perf_counter() - start) * 1000)
        print(f"3 s clip, {name}: median {statistics.median(times):.1f} ms, p90 {np.percentile(times, 90):.1f} ms "
              f"over {args.repeats} calls")


if __name__ == "__main__":
    main()
