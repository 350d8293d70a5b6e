"""`nas show`: ranked trials and the best architecture of a run."""

from __future__ import annotations

import argparse
import json
from typing import Any

from nas.commands.args import positive_int


def add_parser(sub: Any) -> None:
    p = sub.add_parser("show", help="ranked trials and the best architecture of a run")
    p.add_argument("run", help="run name (under --runs-dir) or path")
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--top", type=positive_int, default=10, help="rows to show (default 10)")
    p.add_argument("--json", action="store_true", help="print JSON")


def show_run(run: Any, top: int = 10) -> None:
    from nas.commands.output import describe_row
    from nas.records.runs import best_row

    rows = run.read_results()
    config = run.config()
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))
    # trials failed as "interrupted" (their worker died) were run again and don't count
    finished = sum(1 for r in rows if not (r["state"] == "FAIL" and str(r["reason"]).startswith("interrupted")))
    print(f"run {run.name}: {config.get('space')} space, {finished}/{config.get('budget')} trials finished "
          f"({states or 'none yet'})")
    ranked = sorted((r for r in rows if r["reward"] is not None), key=lambda r: -r["reward"])
    for r in ranked[:top]:
        print("  " + describe_row(r))
    best = best_row(rows)
    if best is not None:
        print(f"best: trial {best['number']} -> {run.best_path}")
        print(f"  {best['arch']}")


def run(args: argparse.Namespace) -> None:
    from nas.records.runs import RunDir

    run = RunDir.locate(args.run, args.runs_dir)
    if args.json:
        print(json.dumps({"name": run.name, "config": run.config(), "trials": run.read_results()}, indent=2,
                         default=str))
        return
    show_run(run, args.top)
