"""Share of a small search's wall time spent outside training and measuring (target <= 5%).

Runs a real Optuna search in-process (v2 space, mnist5k) and compares the wall time of
`search()` with the time its trials spent training, evaluating and measuring (the reference
measurement included). The rest is orchestration: sampling, storage, files, TensorBoard.

    python benchmarks/search_overhead.py [--budget 8] [--space v2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import nas.search.optuna_backend as backend
import nas.search.run_table as run_table
from nas.records.runs import RunDir
from nas.search.backend import OptunaOptions
from nas.spec.settings import SearchSettings
from nas.spec.space import SearchSpace
from nas.training.data import load_dataset


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget", type=int, default=8)
    parser.add_argument("--space", default="v2")
    args = parser.parse_args()
    settings = SearchSettings(space=SearchSpace.load(args.space))
    load_dataset(settings.dataset, resolution=settings.proxy.resolution)  # as `nas search` does up front

    reference_seconds = 0.0
    measure_reference = run_table.measure_reference

    def timed_reference(*a, **k):
        nonlocal reference_seconds
        start = time.perf_counter()
        try:
            return measure_reference(*a, **k)
        finally:
            reference_seconds += time.perf_counter() - start

    run_table.measure_reference = timed_reference
    with tempfile.TemporaryDirectory() as tmp:
        run = RunDir(Path(tmp) / "overhead")
        run.start({"budget": args.budget, **settings.to_dict()}, "", resume=False)
        start = time.perf_counter()
        backend.search(run, settings, args.budget, OptunaOptions())
        wall = time.perf_counter() - start
        work = reference_seconds
        for metrics in sorted(run.path.glob("trials/*/metrics.json")):
            work += json.loads(metrics.read_text())["seconds"]
    overhead = wall - work
    print(f"{args.space} space, {args.budget} trials: search wall {wall:.1f} s, training+measuring {work:.1f} s "
          f"(reference {reference_seconds:.1f} s)")
    print(f"overhead outside training and measuring: {overhead:.2f} s = {100 * overhead / wall:.1f}% "
          f"({overhead / args.budget:.2f} s per trial; target <= 5%)")


if __name__ == "__main__":
    main()
