"""Seconds per training step (batch 256) of every CIFAR-10 architecture on this machine,
in float32 and bfloat16 autocast, with and without channels-last memory: how the train
script's per-architecture `bf16` defaults were chosen, and what an epoch costs.

    python -m benchmarks.cifar10_training_speed [arch ...]
"""
import sys
import time

import torch
import torch.nn.functional as F

from models.cifar10 import ARCHITECTURES, build_model


def step_time(arch: str, channels_last: bool, bf16: bool, batch: int = 256, steps: int = 3) -> float:
    model = build_model(arch)
    memory = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=memory)
    y = torch.randint(0, 2 if arch == "logistic" else 10, (batch,))
    for i in range(steps + 2):
        if i == 2:
            start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
        loss = F.binary_cross_entropy_with_logits(out.float(), y.float()) if out.dim() == 1 else F.cross_entropy(out.float(), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - start) / steps


def main(archs=None):
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; seconds per step of 256 (minutes per 50,000-image epoch)")
    for arch in archs or [a for a in ARCHITECTURES if not ARCHITECTURES[a].pretrained]:  # not trained by steps like these
        cells = []
        for channels_last in (False, True):
            for bf16 in (False, True):
                t = step_time(arch, channels_last, bf16)
                cells.append(f"{'cl' if channels_last else 'nchw'}+{'bf16' if bf16 else 'fp32'} {t:.3f}s ({t * 50000 / 256 / 60:.1f}m)")
        print(f"{arch:12s} " + "  ".join(cells), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
