"""`nas search`: run or resume a search into runs/<name>/."""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Any

from nas.cli import EXIT_INTERRUPTED, fraction, positive_int
from nas.errors import ConfigError


def add_parser(sub: Any) -> None:
    p = sub.add_parser("search", help="run (or resume) an architecture search")
    p.add_argument("--space", help="v1, v2, tiny or a YAML file (default v2; a resumed run keeps its own)")
    p.add_argument("--budget", type=positive_int, default=200, help="finished trials in the run (default 200)")
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
    p.add_argument("--storage", help="Optuna RDB URL (e.g. postgresql://...) instead of the run's journal file")
    p.add_argument("--epochs", type=positive_int, help="proxy epochs (default: the space's)")
    p.add_argument("--batch", type=positive_int, help="proxy batch size (default: the space's)")
    p.add_argument("--max-train", type=positive_int, help="train on at most this many images per trial")
    p.add_argument("--val-fraction", type=fraction, default=None, help="validation share (default 0.2)")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def _space_text_and_settings(args: argparse.Namespace, run: Any) -> tuple[str, Any]:
    """Settings from the arguments; a resumed run fills what is not given from its config."""
    from nas.resources import space_path
    from nas.settings import SearchSettings
    from nas.space import Proxy, SearchSpace

    saved: dict[str, Any] = run.config() if (args.resume and run.exists()) else {}
    if args.space is None and saved:
        text = (run.path / "space.yaml").read_text()
        space = SearchSpace.from_yaml(text, source=str(run.path / "space.yaml"))
    else:
        path = space_path(args.space or "v2")
        space = SearchSpace.load(str(path))  # first: it turns unreadable or non-UTF-8 files into ConfigError
        text = path.read_text()
    objective = args.objective or saved.get("objective", {}).get("kind") or space.objective.kind
    settings = SearchSettings(
        space=space,
        dataset=args.dataset or saved.get("dataset", "mnist5k"),
        device=args.device,
        seed=args.seed if args.seed is not None else saved.get("seed", 0),
        val_fraction=args.val_fraction or saved.get("val_fraction", 0.2),
        sampler=args.sampler or saved.get("sampler") or ("nsga2" if objective == "pareto" else "tpe"),
        pruner=args.pruner,
    ).with_objective(objective)
    if saved:  # a resumed run keeps its proxy; different explicit values fail the fingerprint check
        settings = settings.with_overrides(**vars(Proxy(**saved["proxy"])))
    settings = settings.with_overrides(epochs=args.epochs, batch=args.batch, max_train=args.max_train)
    settings.check()
    return text, settings


def run(args: argparse.Namespace) -> None:
    from nas.runs import RunDir, default_name

    if args.resume and not args.name:
        raise ConfigError("--resume needs --name of the run to continue")
    name = args.name or default_name(Path(args.space or "v2").stem)
    if "/" in name or name in ("", ".", ".."):
        raise ConfigError(f"--name must be a plain folder name, but got {name!r}")
    run = RunDir(Path(args.runs_dir) / name)
    text, settings = _space_text_and_settings(args, run)
    # check data and device before anything is written (loaded data stay cached for the search)
    from nas.data import load_dataset
    from nas.device import resolve_device

    resolve_device(settings.device)
    load_dataset(settings.dataset, resolution=settings.proxy.resolution, val_fraction=settings.val_fraction,
                 seed=settings.seed)
    config = settings.to_dict()
    config["space_sha256"] = hashlib.sha256(text.encode()).hexdigest()[:16]
    config["budget"] = args.budget
    config["backend"] = "optuna"
    config["storage"] = args.storage or "study.journal"
    run.start(config, text, resume=args.resume)

    from nas.search.optuna_backend import search

    if not args.quiet:
        print(f"nas: run {run.name} in {run.path} ({settings.space.name} space, budget {args.budget}, "
              f"dataset {settings.dataset})", file=sys.stderr)
    try:
        search(run, settings, args.budget, workers=args.workers, storage_url=args.storage,
               show_progress=not args.quiet)
    except KeyboardInterrupt:
        print(f"\nnas: interrupted; finished trials are kept. Continue with: "
              f"nas search --name {run.name} --runs-dir {args.runs_dir} --resume", file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED) from None
    from nas.commands.show import show_run

    show_run(run, top=5)
