"""Step-time measurement stability: is the step-time term of the reward repeatable?

The same architectures, sampled from the v2 space (seeded) and shrunk to its proxy, are timed
twice in two full passes, exactly as a trial times them (`measure_step_time` with the space's
measure batch, warm-up and steps; 1 input channel, 10 classes as for mnist5k). Printed:

- Spearman correlation of the two passes' rankings (target >= 0.9): the search compares
  architectures by step time, so the order is what must repeat;
- median relative spread, IQR / median of the timed steps in one measurement (target <= 5%);
- median relative difference between the two passes, |a - b| / mean(a, b): how far one
  measurement of an architecture is from the next, i.e. the error the reward sees;

each for the median step (what the reward uses) and for the fastest step of the same
measurement (interference on a shared machine only ever adds time, so the minimum filters it).

    OMP_NUM_THREADS=1 python benchmarks/step_time_stability.py [--archs 20] [--seed 0]

Timings share the CPU with whatever else runs; the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from typing import Any

import torch

from nas.device import resolve_device
from nas.measure import StepTime, measure_step_time
from nas.model import build
from nas.space import SearchSpace
from nas.stats import spearman

IN_CHANNELS, NUM_CLASSES = 1, 10  # mnist5k, the default dataset


class SeededChooser:
    """A trial-like object choosing uniformly from a seeded generator (what a random sampler does)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any:
        return self.rng.choice(choices)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--space", default="v2")
    parser.add_argument("--archs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    space = SearchSpace.load(args.space)
    device = resolve_device(args.device)
    batch = space.measure.batch or space.proxy.batch
    warmup, steps = space.measure.warmup, space.measure.steps
    chooser = SeededChooser(args.seed)
    models = []
    for _ in range(args.archs):
        proxy_arch = space.proxy.apply(space.sample(chooser))
        torch.manual_seed(0)
        models.append((proxy_arch, build(proxy_arch, num_classes=NUM_CLASSES, in_channels=IN_CHANNELS)))

    print(f"{args.space} space, {args.archs} architectures (seed {args.seed}) at the proxy: "
          f"{space.proxy.resolution} px, batch {batch}, {warmup} warm-up + {steps} timed steps, "
          f"{device}, {torch.get_num_threads()} thread(s)")
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    passes: list[list[StepTime]] = []
    for _ in range(2):  # two full passes: arch 0..N-1, then again
        passes.append([
            measure_step_time(model, batch=batch, resolution=arch.resolution, in_channels=IN_CHANNELS,
                              num_classes=NUM_CLASSES, device=device, warmup=warmup, steps=steps)
            for arch, model in models
        ])
    wall = time.perf_counter() - start
    load_after = os.getloadavg()[0]

    first, second = ([st.median_ms for st in p] for p in passes)
    print(f"{'arch':>4} {'pass 1 ms':>10} {'spread':>7} {'pass 2 ms':>10} {'spread':>7} {'diff':>6}"
          f" {'min 1':>7} {'min 2':>7}")
    for i, (a, b) in enumerate(zip(passes[0], passes[1], strict=True)):
        diff = abs(a.median_ms - b.median_ms) / ((a.median_ms + b.median_ms) / 2)
        print(f"{i:>4} {a.median_ms:>10.1f} {a.spread:>7.1%} {b.median_ms:>10.1f} {b.spread:>7.1%} {diff:>6.1%}"
              f" {a.min_ms:>7.1f} {b.min_ms:>7.1f}")
    spread = statistics.median(st.spread for p in passes for st in p)
    print(f"measured in {wall:.0f} s; load average {load_before:.1f} before, {load_after:.1f} after "
          f"({os.cpu_count()} cores)")
    print(f"step-to-step jitter within one measurement, median IQR / median: {spread:.1%}")
    for label, pick in (("median step (reward)", lambda st: st.median_ms), ("fastest step", lambda st: st.min_ms)):
        a, b = ([pick(st) for st in p] for p in passes)
        rho, p_value = spearman(a, b)
        difference = statistics.median(abs(x - y) / ((x + y) / 2) for x, y in zip(a, b, strict=True))
        print(f"{label:<21} Spearman of the two passes {rho:.3f} (p = {p_value:.2g}; target >= 0.9); "
              f"median relative difference between passes {difference:.1%} (target <= 5%)")


if __name__ == "__main__":
    main()
