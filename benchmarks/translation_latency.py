"""Latency of the translation tab: one 15-word sentence with greedy decoding and beam
search (beam 4, what the Translate button does by default), and the 1,000-character input.

    python -m benchmarks.translation_latency              # the committed checkpoint
    python -m benchmarks.translation_latency --untrained  # a default-size model with random
        weights, which never says EOS and so runs to the length limit: the worst case
"""
import argparse
import statistics
import time

import torch

from demos import translation
from models.translation import EOS, Transformer, beam_search, greedy_decode

SENTENCE = "A man in a blue shirt is standing on a ladder and cleaning the windows of a tall building."  # 18 words


def median_ms(fn, repeats: int) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), max(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--untrained", action="store_true", help="time a random default-size model instead")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    sentence = " ".join(SENTENCE.split()[:15])
    if args.untrained:
        torch.manual_seed(0)
        model = Transformer().eval()
        src = torch.tensor([list(range(10, 28)) + [EOS]])  # 18 pieces + EOS, about a 15-word sentence
        with torch.inference_mode():
            for beam in (1, 4):
                fn = (lambda: greedy_decode(model, src)) if beam == 1 else (lambda: beam_search(model, src, beam))
                median, worst = median_ms(fn, args.repeats)
                print(f"untrained, {model.output_limit(src.shape[1])} output tokens, beam {beam}: "
                      f"median {median:.0f} ms, max {worst:.0f} ms")
        return
    translation.translate(sentence)  # load and warm up
    for beam in (1, 4):
        german = translation.translate(sentence, beam)
        median, worst = median_ms(lambda: translation.translate(sentence, beam), args.repeats)
        print(f"15 words, beam {beam}: median {median:.0f} ms, max {worst:.0f} ms -> {german}")
    median, worst = median_ms(lambda: translation.translate_tab(sentence, 4), args.repeats)
    print(f"the Translate button (beam 4, attention maps and steps drawn): median {median:.0f} ms")
    long_text = " ".join([SENTENCE] * 12)[:translation.MAX_CHARS]
    median, _ = median_ms(lambda: translation.translate(long_text), 2)
    print(f"{len(long_text)} characters ({len(translation.split_sentences(long_text)[0])} sentences), beam 4: "
          f"{median:.0f} ms")


if __name__ == "__main__":
    main()
