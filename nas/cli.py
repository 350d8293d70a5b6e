"""The `nas` command line: spaces, arch, search, show.

User mistakes end in one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from nas.errors import ConfigError, NASError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line (exit 2), without the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"nas: error: {message} (see '{self.prog} --help')\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, but got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, but got {text!r}")
    return value


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1), but got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1), but got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nas", description="Training-aware neural architecture search (EfficientNet / V2).")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sub.add_parser("spaces", help="list the shipped search spaces")

    p = sub.add_parser("arch", help="params, MACs and stages of an architecture")
    p.add_argument("arch", help="reference name (efficientnet-b0, efficientnetv2-s/m/l), YAML file or arch string")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--classes", type=positive_int, default=1000, help="output classes (default 1000)")
    p.add_argument("--in-channels", type=positive_int, default=3, help="input channels (default 3)")
    p.add_argument("--resolution", type=positive_int, help="count MACs at this size (default: the arch's)")

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

    p = sub.add_parser("show", help="ranked trials and the best architecture of a run")
    p.add_argument("run", help="run name (under --runs-dir) or path")
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--top", type=positive_int, default=10, help="rows to show (default 10)")
    p.add_argument("--json", action="store_true", help="print JSON")
    return parser


# -- commands ----------------------------------------------------------------------------------
def cmd_spaces(args: argparse.Namespace) -> None:
    from nas.resources import space_names
    from nas.space import SearchSpace

    for name in space_names():
        print(SearchSpace.load(name).summary())


def arch_summary(arch_spec: str, classes: int, in_channels: int, resolution: int | None) -> dict[str, Any]:
    from nas.measure import count_macs, count_params
    from nas.model import build
    from nas.resources import load_arch

    arch = load_arch(arch_spec)
    if resolution is not None:
        arch = arch.with_(resolution=resolution, name=arch.name)
    model = build(arch, num_classes=classes, in_channels=in_channels)
    return {
        "name": arch.name,
        "string": arch.to_string(),
        "resolution": arch.resolution,
        "classes": classes,
        "in_channels": in_channels,
        "params": count_params(model),
        "macs": count_macs(model, arch.resolution, in_channels),
        "stem": {"channels": arch.resolved_stem_channels, "stride": arch.stem_stride},
        "stages": [
            {"op": s.op, "kernel": s.kernel, "expansion": s.expansion, "se": s.se, "channels": s.channels,
             "layers": s.layers, "stride": s.stride, "skip": s.skip}
            for s in arch.resolved_stages()
        ],
        "head": {"channels": arch.resolved_head_channels},
    }


def cmd_arch(args: argparse.Namespace) -> None:
    info = arch_summary(args.arch, args.classes, args.in_channels, args.resolution)
    if args.json:
        print(json.dumps(info, indent=2))
        return
    print(f"{info['name'] or 'architecture'}: {info['params']:,} params, {info['macs'] / 1e9:.3f} G MACs "
          f"at {info['resolution']} px ({info['classes']} classes)")
    print(f"{'stage':>5} {'operator':<13} {'k':>2} {'s':>2} {'e':>4} {'se':>5} {'ch':>5} {'layers':>6}")
    stem = info["stem"]
    print(f"{'stem':>5} {'conv':<13} {3:>2} {stem['stride']:>2} {'':>4} {'':>5} {stem['channels']:>5} {1:>6}")
    for i, s in enumerate(info["stages"], 1):
        print(f"{i:>5} {s['op']:<13} {s['kernel']:>2} {s['stride']:>2} {s['expansion']:>4g} {s['se']:>5g} "
              f"{s['channels']:>5} {s['layers']:>6}")
    print(f"{'head':>5} {'conv1x1+pool':<13} {1:>2} {1:>2} {'':>4} {'':>5} {info['head']['channels']:>5} {1:>6}")


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
        text = path.read_text()
        space = SearchSpace.load(str(path))
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


def cmd_search(args: argparse.Namespace) -> None:
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
    show_run(run, top=5)


def show_run(run: Any, top: int = 10) -> None:
    from nas.runs import best_row
    from nas.search.progress import describe_row

    rows = run.read_results()
    config = run.config()
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))
    print(f"run {run.name}: {config.get('space')} space, {len(rows)}/{config.get('budget')} trials "
          f"({states or 'none yet'})")
    ranked = sorted((r for r in rows if r["reward"] is not None), key=lambda r: -r["reward"])
    for r in ranked[:top]:
        print("  " + describe_row(r))
    best = best_row(rows)
    if best is not None:
        print(f"best: trial {best['number']} -> {run.best_path}")
        print(f"  {best['arch']}")


def cmd_show(args: argparse.Namespace) -> None:
    from nas.runs import RunDir

    run = RunDir.locate(args.run, args.runs_dir)
    if args.json:
        print(json.dumps({"name": run.name, "config": run.config(), "trials": run.read_results()}, indent=2,
                         default=str))
        return
    show_run(run, args.top)


COMMANDS = {"spaces": cmd_spaces, "arch": cmd_arch, "search": cmd_search, "show": cmd_show}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except NASError as exc:
        print(f"nas: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
