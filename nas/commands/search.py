"""`nas search`: run or resume a search into runs/<name>/."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from nas.commands.args import (
    EXIT_INTERRUPTED,
    OneLineParser,
    fraction,
    fraction_or_zero,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from nas.commands.calibrate import add_cache_dir_argument


def add_parser(sub: Any) -> None:
    p = sub.add_parser("search", help="run (or resume) an architecture search")
    p.add_argument("--space", help="v1, v2, tiny or a YAML file (default v2; a resumed run keeps its own)")
    p.add_argument("--budget", type=positive_int, default=None,
                   help="finished trials in the run (default 200; a resumed Ray run keeps its own)")
    p.add_argument("--name", help="run name (default: <space>-<date>-<time>)")
    p.add_argument("--resume", action="store_true", help="continue the run --name to its budget")
    p.add_argument("--runs-dir", default="runs", help="where runs live (default ./runs)")
    p.add_argument("--dataset", help="mnist5k (default), digits, synthetic, cifar10:DIR, cifar100:DIR, imagefolder:DIR")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("--seed", type=int, default=None, help="seed of sampler, split and training (default 0)")
    p.add_argument("--sampler", choices=["tpe", "random", "nsga2"], help="default tpe (nsga2 for pareto)")
    p.add_argument("--pruner", choices=["median", "none"], default="median", help="stop weak trials early")
    p.add_argument("--objective", choices=["reward", "macs", "pareto"], help="default: the space's")
    p.add_argument("--workers", type=positive_int, default=1, help="worker processes on this machine")
    p.add_argument("--storage", help="Optuna RDB URL (e.g. postgresql://...) instead of the run's journal file; "
                   "with --backend ray: a path or URI every node shares (NFS, s3://...) for Ray's checkpoints")
    p.add_argument("--epochs", type=positive_int, help="proxy epochs (default: the space's)")
    p.add_argument("--batch", type=positive_int, help="proxy batch size (default: the space's)")
    p.add_argument("--max-train", type=positive_int, help="train on at most this many images per trial")
    p.add_argument("--val-fraction", type=fraction, default=None, help="validation share (default 0.2)")
    p.add_argument("--test-fraction", type=fraction_or_zero, default=None,
                   help="share held out as a test split no trial sees, the same images for every --seed "
                        "(default 0; nas reproduce tests its retrained networks on it)")
    add_cache_dir_argument(p)
    p.add_argument("--quiet", action="store_true", help="no progress output")
    ray = p.add_argument_group("Ray cluster (--backend ray)")
    ray.add_argument("--backend", choices=["optuna", "ray"], default=None,
                     help="optuna: processes on this machine (default); ray: Ray Tune on a cluster")
    ray.add_argument("--address", help="HOST:PORT of a running Ray head (default: a local Ray on this machine)")
    ray.add_argument("--cpus-per-trial", type=positive_float, default=None, help="CPUs per trial (default 1)")
    ray.add_argument("--gpus-per-trial", type=non_negative_float, default=None,
                     help="GPUs per trial, fractions share a GPU: 0.5 = two trials per GPU (default 0)")
    ray.add_argument("--max-concurrent", type=positive_int, default=None,
                     help="trials running at once (default: as many as the cluster fits)")
    ray.add_argument("--no-asha", action="store_true", help="do not stop weak trials early with ASHA")
    ray.add_argument("--max-failures", type=non_negative_int, default=None,
                     help="retries of a trial whose worker or node died (default 2)")


def run(args: argparse.Namespace) -> None:
    from nas.commands.output import TerminalProgress
    from nas.commands.show import show_run
    from nas.search.run import SearchJob, run_search

    job = SearchJob.from_options(args).named()
    try:
        run = run_search(job, progress=None if args.quiet else TerminalProgress())
    except KeyboardInterrupt:
        print(f"\nnas: interrupted; finished trials are kept. Continue with: "
              f"nas search --name {job.name} --runs-dir {job.runs_dir} --resume", file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED) from None
    show_run(run, top=5)


def search_options(words: Sequence[str]) -> dict[str, Any]:
    """`nas search` options (as typed after `nas search`) as `SearchJob` fields: only those the
    words give, checked as the command line checks them (a bad one exits 2 with its message)."""
    subparsers = OneLineParser(prog="nas", add_help=False).add_subparsers()
    add_parser(subparsers)
    parser = subparsers.choices["search"]
    for action in parser._actions:  # an option not given leaves no attribute behind
        action.default = argparse.SUPPRESS
    given = vars(parser.parse_args(list(words)))
    given.pop("quiet", None)  # how much is shown is the caller's choice, not the search's
    return given
