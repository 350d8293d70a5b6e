"""The card's main job, measured: `nas search --space v2 --budget 200` with default settings.

Prints wall time, peak RSS of the search process (and its RSS after 20 trials and at the
end, to show memory does not grow with trial count), trial states and the reference
architecture's proxy accuracy. Takes ~40 minutes on a 2-core CPU; run it on a quiet machine.

    python benchmarks/full_search.py [--budget 200] [--space v2] [--runs-dir /tmp/nas-bench]
"""

from __future__ import annotations

import argparse
import csv
import resource
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget", type=int, default=200)
    parser.add_argument("--space", default="v2")
    parser.add_argument("--runs-dir", default="/tmp/nas-bench")
    parser.add_argument("--name", default=None)
    args = parser.parse_args()
    name = args.name or f"{args.space}-{args.budget}-{int(time.time())}"
    results = Path(args.runs_dir) / name / "results.csv"
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "nas", "search", "--space", args.space, "--budget", str(args.budget),
         "--name", name, "--runs-dir", args.runs_dir],
    )
    rss_at: dict[int, float] = {}  # trials finished -> RSS in MB
    while proc.poll() is None:
        time.sleep(2.0)
        finished = count_rows(results)
        rss = rss_mb(proc.pid)
        if rss is not None:
            rss_at.setdefault(finished, rss)
            rss_at[finished] = max(rss_at[finished], rss)
    wall = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
    with results.open() as handle:
        rows = list(csv.DictReader(handle))
    states = Counter(r["state"] for r in rows)
    ref = rows[0]
    best = max((r for r in rows if r["state"] == "COMPLETE"), key=lambda r: float(r["reward"]))
    print(f"exit code            {proc.returncode}")
    print(f"wall time            {wall / 60:.1f} min for {len(rows)} trials ({wall / max(1, len(rows)):.1f} s/trial)")
    print(f"peak RSS             {peak_mb:.0f} MB")
    early = [v for k, v in rss_at.items() if 18 <= k <= 22]
    late = [v for k, v in rss_at.items() if k >= len(rows) - 5]
    if early and late:
        print(f"RSS after ~20 trials {max(early):.0f} MB, after {len(rows)} trials {max(late):.0f} MB "
              f"(ratio {max(late) / max(early):.2f})")
    print(f"trial states         {dict(states)}")
    print(f"reference (trial 0)  acc {float(ref['accuracy']):.4f}  step {float(ref['step_ms']):.1f} ms  "
          f"params {int(ref['params'])}")
    print(f"best (trial {best['number']})      acc {float(best['accuracy']):.4f}  "
          f"step {float(best['step_ms']):.1f} ms  params {int(best['params'])}  reward {float(best['reward']):.4f}")
    print(f"best arch            {best['arch']}")


def count_rows(path: Path) -> int:
    try:
        return max(0, len(path.read_text().strip().splitlines()) - 1)
    except OSError:
        return 0


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


if __name__ == "__main__":
    main()
