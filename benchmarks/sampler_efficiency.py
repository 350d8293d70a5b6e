"""Search efficiency: TPE against random search on the v2 space at equal budget, over several seeds.

Each (sampler, seed) pair is one `nas search` run in its own process. All runs score against
one reference measurement and share step times (each run starts from the union of the earlier
runs' step-time caches), so the rewards are on one scale and the same architecture costs the
same in every run: what differs between runs is which architectures the sampler asks for and,
across seeds, the data split and training seed (shared by the two samplers of a seed).

Printed: best reward reached after N finished trials, per run and as a mean over seeds, the
TPE/random ratio of the means, and in how many seeds TPE is ahead at the full budget (with a
sign test's p-value: with 3 seeds, even 3 of 3 is p = 0.125).

    python benchmarks/sampler_efficiency.py [--budget 40] [--seeds 0 1 2] [--max-train 1000]

The proxy is cheaper than the space's default (`--max-train` images per trial; the space's
2 epochs and median pruner are kept) so that 6 runs fit in about 25 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import scipy.stats

from nas.report.stats import running_best

SAMPLERS = ("tpe", "random")


def run_search(runs_dir: Path, name: str, sampler: str, seed: int, args: argparse.Namespace) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "nas", "search", "--space", args.space, "--budget", str(args.budget),
         "--sampler", sampler, "--seed", str(seed), "--max-train", str(args.max_train),
         "--runs-dir", str(runs_dir), "--name", name, "--quiet"],
        check=True,
    )
    return time.perf_counter() - start


def seed_folder(folder: Path, reference: Path | None, step_times: dict) -> None:
    """Give a new run the shared reference and every step time measured so far."""
    folder.mkdir(parents=True, exist_ok=True)
    if reference is not None:
        shutil.copyfile(reference, folder / "reference.json")
    if step_times:
        (folder / "step_times.json").write_text(json.dumps(step_times, indent=1, sort_keys=True) + "\n")


def best_curve(results: Path) -> list[float | None]:
    """Best reward of the complete trials after each finished trial, in trial-number order."""
    with results.open() as handle:
        rows = sorted(csv.DictReader(handle), key=lambda r: int(r["number"]))
    return running_best([float(r["reward"]) if r["state"] == "COMPLETE" and r["reward"] else None for r in rows])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--space", default="v2")
    parser.add_argument("--budget", type=int, default=40)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-train", type=int, default=1000)
    parser.add_argument("--runs-dir", default=f"/tmp/nas-sampler-bench-{int(time.time())}")
    args = parser.parse_args()
    runs_dir = Path(args.runs_dir)
    reference: Path | None = None
    step_times: dict = {}
    curves: dict[tuple[str, int], list[float | None]] = {}
    for seed in args.seeds:
        for sampler in SAMPLERS:
            name = f"{sampler}-{seed}"
            folder = runs_dir / name
            if not (folder / "config.yaml").is_file():
                seed_folder(folder, reference, step_times)
                wall = run_search(runs_dir, name, sampler, seed, args)
                print(f"{name}: {args.budget} trials in {wall / 60:.1f} min", flush=True)
            reference = reference or folder / "reference.json"
            if (folder / "step_times.json").is_file():
                step_times.update(json.loads((folder / "step_times.json").read_text()))
            curves[(sampler, seed)] = best_curve(folder / "results.csv")

    marks = sorted({n for n in (10, 20, 30, 40, 60, 100, 200) if n < args.budget} | {args.budget})
    print(f"\n{args.space} space, budget {args.budget}, {args.max_train} training images per trial, "
          f"seeds {args.seeds}; best reward after N finished trials")
    print(f"{'run':<12}" + "".join(f"{'N=' + str(n):>9}" for n in marks))
    for (sampler, seed), curve in curves.items():
        print(f"{sampler + '-' + str(seed):<12}" + "".join(f"{_at(curve, n):>9}" for n in marks))
    means = {s: [statistics.mean(v for v in (_value(curves[(s, seed)], n) for seed in args.seeds) if v is not None)
                 for n in marks] for s in SAMPLERS}
    for sampler in SAMPLERS:
        print(f"{'mean ' + sampler:<12}" + "".join(f"{m:>9.4f}" for m in means[sampler]))
    print(f"{'TPE/random':<12}" + "".join(f"{t / r:>9.3f}" for t, r in zip(means['tpe'], means['random'], strict=True)))
    wins = sum((_value(curves[("tpe", s)], args.budget) or 0) > (_value(curves[("random", s)], args.budget) or 0)
               for s in args.seeds)
    # sign test: how likely this many wins are if TPE and random were equally good
    p = scipy.stats.binomtest(wins, len(args.seeds), 0.5, alternative="greater").pvalue
    print(f"TPE ahead at N={args.budget} in {wins} of {len(args.seeds)} seeds (one-sided sign test p = {p:.2g})")


def _value(curve: list[float | None], n: int) -> float | None:
    return curve[min(n, len(curve)) - 1] if curve else None


def _at(curve: list[float | None], n: int) -> str:
    value = _value(curve, n)
    return "-" if value is None else f"{value:.4f}"


if __name__ == "__main__":
    main()
