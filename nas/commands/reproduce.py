"""`nas reproduce v2s|b0`: the paper's search at small scale, with a baseline, retraining and a report."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from nas.commands.args import EXIT_INTERRUPTED, fraction_or_zero, non_negative_int, positive_int
from nas.spec.errors import ConfigError


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "reproduce", help="reproduce the EfficientNetV2-S or B0 search at small scale (search, baseline, report)",
        description="Search the paper's space (v2 with the step-time reward for v2s; v1 with the MACs reward for b0), "
                    "measuring first for v2s whether this device trains Fused-MBConv early faster (the paper's "
                    "Table 3 ablation); run TPE and random search with several seeds each, retrain the best found "
                    "and the reference with several seeds, and write runs/NAME/report.md. Running the same "
                    "command again resumes and reuses finished parts.",
    )
    p.add_argument("target", choices=["v2s", "b0"], help="v2s (EfficientNetV2-S) or b0 (EfficientNet-B0)")
    p.add_argument("--budget", type=positive_int, default=100,
                   help="search trials per search seed (default 100)")
    p.add_argument("--baseline-budget", type=non_negative_int, default=None,
                   help="random-search trials per search seed (default: --budget's value, the fair comparison; "
                        "0: no baseline)")
    p.add_argument("--search-seeds", type=positive_int, default=6,
                   help="TPE and random search each run with this many seeds, the unit of every test over seeds "
                        "(default 6: a paired test over 5 seeds cannot go below p = 0.0625; fewer than 3 gives a "
                        "direction only)")
    p.add_argument("--no-ablation", action="store_true",
                   help="skip the cost-term ablation (per seed a TPE search for accuracy alone, every cost weight 0, "
                        "which tells whether accuracy or cost made each finding)")
    p.add_argument("--top", type=positive_int, default=3, help="best distinct architectures to retrain (default 3)")
    p.add_argument("--seeds", type=positive_int, default=3, help="seeds per retrained architecture (default 3)")
    p.add_argument("--retrain-epochs", type=positive_int, default=None,
                   help="epochs of the longer training, on the whole training split (default: 2x the proxy's)")
    p.add_argument("--rank-extra", type=non_negative_int, default=7,
                   help="more architectures, spread over the proxy ranking, retrained with one seed for Kendall tau "
                        "(default 7: with --top 3 and the reference, 11 architectures)")
    p.add_argument("--precondition-rounds", type=non_negative_int, default=5,
                   help="v2s: interleaved timing rounds of the fused ablation (no, early, every stage Fused-MBConv) "
                        "measured first on this device (default 5; 0: skip it)")
    p.add_argument("--name", help="reproduction name (default: <target>-repro)")
    p.add_argument("--runs-dir", default="runs", help="where runs live (default ./runs)")
    p.add_argument("--dataset", default="mnist5k", help="mnist5k (default), digits, cifar10:DIR, ... as for search")
    p.add_argument("--test-fraction", type=fraction_or_zero, default=0.2,
                   help="share of the dataset held out from every search and selection; the retrained networks "
                        "are tested on it (default 0.2; 0: report accuracy on the validation split)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("--workers", type=positive_int, default=1, help="search worker processes on this machine")
    p.add_argument("--seed", type=int, default=0, help="seed of samplers, split and first retraining (default 0)")
    p.add_argument("--epochs", type=positive_int, help="proxy epochs of the searches (default: the space's)")
    p.add_argument("--max-train", type=positive_int, help="proxy training images per trial (default: the space's)")
    p.add_argument("--search-args", default="",
                   help="more `nas search` options for both searches, quoted, e.g. \"--backend ray --address H:P\"")
    p.add_argument("--allow-code-change", action="store_true",
                   help="start or resume from a checkout with uncommitted changes, or at another commit than the "
                        "reproduction began with (refused otherwise; the report lists every phase's commit)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--space", help=argparse.SUPPRESS)  # tests: the tiny space instead of the target's


def run(args: argparse.Namespace) -> None:
    from nas.commands.output import TerminalProgress
    from nas.commands.search import search_options
    from nas.reproduce.request import Request
    from nas.reproduce.run import run_reproduction

    name = args.name or f"{args.target}-repro"
    if "/" in name or name in ("", ".", ".."):
        raise ConfigError(f"--name must be a plain folder name, but got {name!r}")
    request = Request(
        target=args.target, budget=args.budget, baseline_budget=args.baseline_budget, search_seeds=args.search_seeds,
        ablation=not args.no_ablation,
        top=args.top, seeds=args.seeds, retrain_epochs=args.retrain_epochs, rank_extra=args.rank_extra,
        precondition_rounds=args.precondition_rounds, dataset=args.dataset, test_fraction=args.test_fraction,
        device=args.device,
        workers=args.workers, seed=args.seed, space=args.space, epochs=args.epochs, max_train=args.max_train,
        search_args=tuple(shlex.split(args.search_args)), allow_code_change=args.allow_code_change,
    )
    try:
        report = run_reproduction(request, args.runs_dir, name,
                                  search_options=search_options(request.search_args),
                                  progress=None if args.quiet else TerminalProgress())
    except (KeyboardInterrupt, SystemExit) as exc:
        if isinstance(exc, SystemExit) and exc.code != EXIT_INTERRUPTED:
            raise
        print(f"\nnas: reproduction interrupted; finished parts are kept. Continue with the same command "
              f"(nas reproduce {args.target} --name {name} ...).", file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED) from None
    print(Path(report))
