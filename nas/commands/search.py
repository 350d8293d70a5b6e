"""`nas search`: run or resume a search into runs/<name>/."""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Any

from nas.cli import (
    EXIT_INTERRUPTED,
    fraction,
    fraction_or_zero,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from nas.commands.calibrate import add_cache_dir_argument, apply_cache_dir
from nas.errors import ConfigError


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


def _space_text_and_settings(args: argparse.Namespace, run: Any) -> tuple[str, Any]:
    """Settings from the arguments; a resumed run fills what is not given from its saved settings."""
    from nas.resources import space_path
    from nas.settings import SearchSettings, default_sampler, saved_space, settings_from_run
    from nas.space import SearchSpace

    resumed = args.resume and run.exists()
    if args.space is None and resumed:
        text, space = saved_space(run)
    else:
        path = space_path(args.space or "v2")
        space = SearchSpace.load(str(path))  # first: it turns unreadable or non-UTF-8 files into ConfigError
        text = path.read_text()
    if resumed:  # a resumed run keeps its proxy; different explicit values fail the fingerprint check
        settings = settings_from_run(run, space=space, dataset=args.dataset, device=args.device, seed=args.seed,
                                     val_fraction=args.val_fraction, test_fraction=args.test_fraction,
                                     sampler=args.sampler, pruner=args.pruner,
                                     objective=args.objective)
    else:
        kind = args.objective or space.objective.kind
        settings = SearchSettings(
            space=space, dataset=args.dataset if args.dataset is not None else "mnist5k", device=args.device,
            seed=args.seed if args.seed is not None else 0, val_fraction=args.val_fraction or 0.2,
            test_fraction=args.test_fraction or 0.0,
            sampler=args.sampler or default_sampler(kind), pruner=args.pruner,
        ).with_objective(kind)
    settings = settings.with_overrides(epochs=args.epochs, batch=args.batch, max_train=args.max_train)
    settings.check()
    return text, settings


def _ray_backend() -> Any:
    """The Ray backend module; ray is imported there only, and may be missing."""
    try:
        from nas.search import ray_backend
    except ImportError as exc:
        if (exc.name or "").startswith("nas"):
            raise
        raise ConfigError(f"--backend ray needs Ray Tune, which cannot be imported here ({exc}); "
                          f"install it with: pip install 'nas[ray]'") from None
    return ray_backend


def _ray_options(args: argparse.Namespace, saved: dict[str, Any], backend: Any) -> Any:
    """Ray placement options: the command line, else the resumed run's, else the defaults."""
    old = saved.get("ray") or {}
    defaults = backend.RayOptions()

    def pick(name: str, given: Any) -> Any:
        return given if given is not None else old.get(name, getattr(defaults, name))

    return backend.RayOptions(
        address=args.address or old.get("address"),  # None: a local Ray
        cpus_per_trial=pick("cpus_per_trial", args.cpus_per_trial),
        gpus_per_trial=pick("gpus_per_trial", args.gpus_per_trial),
        max_concurrent=pick("max_concurrent", args.max_concurrent),
        asha=False if args.no_asha else old.get("asha", True),
        max_failures=pick("max_failures", args.max_failures),
        storage=args.storage or old.get("storage"),
    )


def run(args: argparse.Namespace) -> None:
    from nas.runs import RunDir, default_name

    apply_cache_dir(args)
    if args.resume and not args.name:
        raise ConfigError("--resume needs --name of the run to continue")
    name = args.name or default_name(Path(args.space or "v2").stem)
    if "/" in name or name in ("", ".", ".."):
        raise ConfigError(f"--name must be a plain folder name, but got {name!r}")
    run = RunDir(Path(args.runs_dir) / name)
    saved: dict[str, Any] = run.config() if (args.resume and run.exists()) else {}
    backend_name = args.backend or saved.get("backend") or "optuna"
    if saved and saved.get("backend", "optuna") != backend_name:
        raise ConfigError(f"run {run.name!r} was made with the {saved.get('backend', 'optuna')} backend; "
                          f"resume it with --backend {saved.get('backend', 'optuna')}")
    ray_options = None
    if backend_name == "ray":
        # before anything slow or written: ray importable, cluster reachable and big enough
        ray_backend = _ray_backend()
        if args.workers != 1:
            raise ConfigError("--workers is for the optuna backend; with --backend ray use --max-concurrent")
        ray_options = _ray_options(args, saved, ray_backend)
        ray_options.check()
    budget = args.budget or saved.get("budget") or 200  # a resumed run keeps its budget unless told
    text, settings = _space_text_and_settings(args, run)
    # check data and device before anything is written (loaded data stay cached for the search)
    from nas.data import search_data
    from nas.device import resolve_device

    if ray_options is None:
        resolve_device(settings.device)  # a Ray trial's device is on its worker node
    elif settings.device.startswith("cuda") and ray_options.gpus_per_trial == 0:
        raise ConfigError(f"--device {settings.device} needs --gpus-per-trial > 0 with --backend ray")
    search_data(settings)
    if ray_options is not None:
        ray_backend.connect(ray_options)
    config = settings.to_dict()
    config["space_sha256"] = hashlib.sha256(text.encode()).hexdigest()[:16]
    config["budget"] = budget
    config["backend"] = backend_name
    if ray_options is None:
        config["storage"] = args.storage or "study.journal"
    else:
        config["storage"] = ray_backend.experiment_path(run, ray_options)
        config["ray"] = ray_options.to_dict()
    run.start(config, text, resume=args.resume)

    if not args.quiet:
        where = f", Ray at {ray_options.address or 'a local Ray'}" if ray_options is not None else ""
        print(f"nas: run {run.name} in {run.path} ({settings.space.name} space, budget {budget}, "
              f"dataset {settings.dataset}{where})", file=sys.stderr)
    try:
        if ray_options is not None:
            ray_backend.search(run, settings, budget, ray_options, resume=args.resume, show_progress=not args.quiet)
        else:
            from nas.search.optuna_backend import search

            search(run, settings, budget, workers=args.workers, storage_url=args.storage,
                   show_progress=not args.quiet)
    except KeyboardInterrupt:
        print(f"\nnas: interrupted; finished trials are kept. Continue with: "
              f"nas search --name {run.name} --runs-dir {args.runs_dir} --resume", file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED) from None
    from nas.commands.show import show_run

    show_run(run, top=5)
