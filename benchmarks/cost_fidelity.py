"""Does S, the step-time term of the reward, rank candidates like their real training step?

For the space's reference plus N seeded random candidates, side by side in one run:

- truth: each candidate's own full-width, full-depth network, one whole training step
  (forward + backward + SGD) at 128 px, batch 8, 3 input channels, timed whole (2 warm-up + 7
  steps, median);
- S now: what a search uses today, the per-part table (`nas.measure.step_cost.table_step_time`) at the
  same shape, built from an empty cache, twice (two independent tables: repeatability);
- S before: what the reward used before (the candidate shrunk by the proxy's plain rounding to
  width x0.25, 28 px, batch 64, 1 channel), for the before/after figure.

Printed: Spearman and Kendall (scipy.stats, with p-values) of each against the truth, the two
tables against each other (Spearman and the median relative difference), and the cost of
filling the table. Run on a quiet machine; the load average is printed.

    python benchmarks/cost_fidelity.py [--space v2] [--archs 30] [--threads 2] [--skip-before]
                                       [--device cuda [--batch B]]

On a GPU (--device cuda) truth and table are taken at the space's GPU timing shape (batch 32 at
the space's resolution, or --batch), and the old proxy-shrunk S is skipped.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from scipy import stats

from nas.measure.costs import StepTime, StepTimeCache, measure_step_time, warm_up_process
from nas.measure.step_cost import TimingShape, table_step_time
from nas.model import build
from nas.spec.space import SearchSpace

DEVICE = torch.device("cpu")  # --device replaces these two
TRUTH_SHAPE = TimingShape(batch=8, resolution=128, in_channels=3, num_classes=10)


class SeededChooser:
    """A trial-like object choosing uniformly from a seeded generator (what a random sampler does)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any:
        return self.rng.choice(choices)


def truth_ms(arch) -> float:
    model = build(arch, num_classes=TRUTH_SHAPE.num_classes, in_channels=TRUTH_SHAPE.in_channels)
    return measure_step_time(model, batch=TRUTH_SHAPE.batch, resolution=TRUTH_SHAPE.resolution,
                             in_channels=TRUTH_SHAPE.in_channels, num_classes=TRUTH_SHAPE.num_classes,
                             device=DEVICE, warmup=2, steps=7).median_ms


def before_ms(space: SearchSpace, arch) -> float:
    proxy = space.proxy.apply(arch)  # the old plain-rounding shrink
    model = build(proxy, num_classes=10, in_channels=1)
    return measure_step_time(model, batch=64, resolution=proxy.resolution, in_channels=1, num_classes=10,
                             device=DEVICE, warmup=2, steps=8).median_ms


def correlations(label: str, values: list[float], truth: list[float]) -> None:
    rho, p_rho = stats.spearmanr(values, truth)
    tau, p_tau = stats.kendalltau(values, truth)
    print(f"{label:<34} Spearman {rho:.3f} (p = {p_rho:.1e})  Kendall {tau:.3f} (p = {p_tau:.1e})", flush=True)


def median_difference(first: list[float], second: list[float]) -> float:
    """Median of |a - b| / mean(a, b) over paired values."""
    return statistics.median(abs(x - y) / ((x + y) / 2) for x, y in zip(first, second, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--space", default="v2")
    parser.add_argument("--archs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-before", action="store_true", help="do not time the old proxy-shrunk S")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    parser.add_argument("--batch", type=int, help="timing batch on a GPU (default: the space's, 32)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    space = SearchSpace.load(args.space)
    global DEVICE, TRUTH_SHAPE
    DEVICE = torch.device(args.device)
    if DEVICE.type == "cuda":
        shape = space.measure.timing_shape("cuda", space.resolution, 10)
        TRUTH_SHAPE = TimingShape(batch=args.batch or shape.batch, resolution=shape.resolution)
        args.skip_before = True
    chooser = SeededChooser(args.seed)
    archs = [space.reference] + [space.sample(chooser) for _ in range(args.archs)]
    repeats = space.measure.repeats()
    print(f"{args.space}: reference + {args.archs} random candidates (seed {args.seed}); truth and table at "
          f"{TRUTH_SHAPE.describe()}; {args.threads} threads, torch {torch.__version__}; load average "
          f"{os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)", flush=True)
    warm_up_process(DEVICE)

    tables: list[list[StepTime]] = []
    fill_seconds: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        for index in range(2):
            cache = StepTimeCache(Path(folder) / f"table{index}.json")
            start = time.perf_counter()
            tables.append([table_step_time(a, TRUTH_SHAPE, DEVICE, repeats, cache) for a in archs])
            fill_seconds.append(time.perf_counter() - start)
            print(f"table {index + 1}: {len(cache)} parts timed in {fill_seconds[-1]:.0f} s", flush=True)
        start = time.perf_counter()
        for a in archs:
            table_step_time(a, TRUTH_SHAPE, DEVICE, repeats, cache)
        lookup_ms = (time.perf_counter() - start) / len(archs) * 1000
    truth, before = [], []
    start = time.perf_counter()
    for i, a in enumerate(archs):
        truth.append(truth_ms(a))
        before.append(float("nan") if args.skip_before else before_ms(space, a))
        one, two = tables[0][i].median_ms, tables[1][i].median_ms
        print(f"{i:>3} truth {truth[-1]:8.1f} ms  table {one:8.1f} / {two:8.1f} ms  before {before[-1]:7.1f} ms",
              flush=True)
    truth_seconds = time.perf_counter() - start

    print(f"load average after: {os.getloadavg()[0]:.2f}")
    # two estimators from the same timed steps: the sum of the parts' medians and of their fastest steps
    for name, pick in (("median", lambda st: st.median_ms), ("fastest", lambda st: st.min_ms)):
        first, second = ([pick(st) for st in table] for table in tables)
        correlations(f"S now, {name}s (table 1) vs truth", first, truth)
        correlations(f"S now, {name}s (table 2) vs truth", second, truth)
        rho, p_rho = stats.spearmanr(first, second)
        difference = median_difference(first, second)
        print(f"repeatability of {name}s, table 1 vs table 2: Spearman {rho:.3f} (p = {p_rho:.1e}), median "
              f"relative difference {difference:.1%} (targets >= 0.95, <= 5%)")
        # what the reward consumes is S / S_ref from one table: drift common to a whole table cancels
        first_rel, second_rel = ([x / xs[0] for x in xs[1:]] for xs in (first, second))
        rel_difference = median_difference(first_rel, second_rel)
        print(f"repeatability of {name}s as S / S_ref (what the reward uses): median relative difference "
              f"{rel_difference:.1%}")
        ratio = statistics.median(t / s for t, s in zip(first, truth, strict=True))
        print(f"table of {name}s / truth, median ratio {ratio:.2f} (the sum of parts vs the whole step)")
    ref_ratio = tables[0][0].median_ms / truth[0]
    print(f"reference: S (table 1) {tables[0][0].median_ms:.1f} ms / whole step {truth[0]:.1f} ms = {ref_ratio:.3f} "
          f"(target within 15%)")
    if not args.skip_before:
        correlations("S before (proxy-shrunk) vs truth", before, truth)
    print(f"cost: table fill {fill_seconds[0]:.0f} s and {fill_seconds[1]:.0f} s for {len(archs)} candidates "
          f"(once per hardware), lookup {lookup_ms:.0f} ms per candidate; whole-network truth "
          f"{truth_seconds / len(archs):.1f} s per candidate")


if __name__ == "__main__":
    main()
