"""`nas report`: report.md and PNG plots of a run (or of a reproduction), from its files alone."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from nas.commands.args import positive_int


def add_parser(sub: Any) -> None:
    p = sub.add_parser("report", help="write report.md and plots of a run (finished or not)")
    p.add_argument("run", help="run name (under --runs-dir) or path; a `nas reproduce` folder works too")
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--top-k", type=positive_int, help="top trials for the choice frequencies (default: best 20%%, "
                   "at least 5)")
    p.add_argument("--no-full-counts", action="store_true",
                   help="skip counting full-size params/MACs of the best and reference architectures")


def run(args: argparse.Namespace) -> None:
    from nas.records.runs import RunDir
    from nas.report.run_report import write_report
    from nas.reproduce.report import write_reproduction_report
    from nas.reproduce.request import is_reproduction

    for candidate in (Path(args.runs_dir) / args.run, Path(args.run)):
        if is_reproduction(candidate):
            print(write_reproduction_report(candidate, top_k=args.top_k))
            return
    run = RunDir.locate(args.run, args.runs_dir)
    count_full = None
    if not args.no_full_counts:
        from nas.measure.costs import count_costs as count_full
    print(write_report(run, top_k=args.top_k, count_full=count_full))
