"""`nas scale`: grow a searched (or any) architecture into a family of YAML files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from nas.commands.args import positive_int
from nas.spec.errors import ConfigError


def add_parser(sub: Any) -> None:
    p = sub.add_parser("scale", help="grow an architecture into a family (compound B1..B7 or V2 S/M/L)")
    p.add_argument("source", help="run name/folder (its best.yaml) or architecture (name, YAML file, string)")
    p.add_argument("--method", choices=["compound", "v2"], default="compound", help="default compound")
    p.add_argument("-o", "--output", help="folder for the family, or NAME.yaml for one member "
                                          "(default: RUN/family, or ./<name>-family)")
    p.add_argument("--runs-dir", default="runs", help="where runs live (default ./runs)")
    p.add_argument("--classes", type=positive_int, default=1000, help="classes when counting params (default 1000)")
    g = p.add_argument_group("compound scaling")
    g.add_argument("--phi", help="members to write: a range like 1-7 or a list like 1,3 (default 1-7)")
    g.add_argument("--coefficients", help="ALPHA,BETA,GAMMA or a coefficients.yaml (default 1.2,1.1,1.15)")
    g.add_argument("--preset", help="published EfficientNet settings: b1..b7, a list like b1,b3, or all")
    g.add_argument("--width", type=float, help="explicit width multiplier")
    g.add_argument("--depth", type=float, help="explicit depth multiplier")
    g.add_argument("--resolution", type=positive_int, help="explicit image size in pixels (e.g. 260)")
    g.add_argument("--dropout", type=float, help="dropout of the explicit member (default the source's)")
    s = p.add_argument_group("coefficient grid search (step 1 of compound scaling)")
    s.add_argument("--grid-search", action="store_true", help="search alpha, beta, gamma at phi = 1")
    s.add_argument("--budget", type=positive_int, default=12, help="candidates to train (default 12)")
    s.add_argument("--tolerance", type=float, default=0.05, help="allowed |alpha*beta^2*gamma^2 - 2| / 2 (0.05)")
    s.add_argument("--space", help="proxy settings of this space (default: the run's; v2 for an architecture)")
    s.add_argument("--dataset", help="default: the run's dataset, else mnist5k")
    s.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    s.add_argument("--seed", type=int, default=None, help="default: the run's seed, else 0")
    s.add_argument("--epochs", type=positive_int, help="proxy epochs (default: the space's)")
    s.add_argument("--batch", type=positive_int, help="proxy batch size (default: the space's)")
    s.add_argument("--max-train", type=positive_int, help="train on at most this many images per candidate")
    v = p.add_argument_group("non-uniform (V2) scaling")
    v.add_argument("--sizes", default="s,m,l", help="members to write (default s,m,l)")
    v.add_argument("--max-resolution", type=positive_int,
                   help="cap on the eval image size (default 480 x source size / 384)")
    v.add_argument("--no-extra-stage", action="store_true", help="do not append a seventh stage to M and L")


def resolve_source(spec: str, runs_dir: str) -> tuple[Any, Any]:
    """(architecture, run or None): a run's best.yaml, else an architecture spec."""
    from nas.records.runs import RunDir
    from nas.spec.arch import Arch
    from nas.spec.errors import RunError
    from nas.spec.resources import load_arch

    try:
        run = RunDir.locate(spec, runs_dir)
    except RunError:
        try:
            return load_arch(spec), None
        except ConfigError as exc:
            raise ConfigError(f"SOURCE must be a run (name or folder) or an architecture, but got {spec!r}: "
                              f"{exc}") from None
    if not run.best_path.is_file():
        raise RunError(f"run {run.name!r} has no best.yaml yet; finish at least one trial first")
    arch = Arch.load(run.best_path)
    return arch.with_(name=arch.name or f"{run.name}-best"), run


def _members(args: argparse.Namespace, source: Any) -> list[tuple[str, Any, Any]]:
    """(file key, arch, recipe or None) for the chosen method."""
    from nas.scaling import scale

    explicit = [args.width, args.depth, args.resolution, args.dropout]
    if args.method == "v2":
        if any(x is not None for x in explicit) or args.phi or args.preset:
            raise ConfigError("--method v2 must be used without --phi/--preset/--width/--depth/--resolution/"
                              "--dropout, but got some of them")
        out = []
        for size in scale.parse_sizes(args.sizes):
            arch, recipe = scale.v2_member(source, size, args.max_resolution, extra_stage=not args.no_extra_stage)
            out.append((size, arch, recipe))
        return out
    if any(x is not None for x in explicit):
        if args.phi or args.preset:
            raise ConfigError("--width/--depth/--resolution/--dropout must be used without --phi or --preset, "
                              "but got both")
        arch = scale.scale(source, width=args.width or 1.0, depth=args.depth or 1.0, resolution=args.resolution,
                           dropout=args.dropout)
        name = (f"{scale.family_base_name(source)}-w{arch.width:g}-d{arch.depth:g}-r{arch.resolution}")
        return [("scaled", arch.with_(name=name), None)]
    if args.preset:
        if args.phi:
            raise ConfigError("--preset must be used without --phi, but got both")
        keys = sorted(scale.EFFICIENTNET_PRESETS) if args.preset == "all" else args.preset.split(",")
        return [(k.strip().lower().removeprefix("efficientnet-"), scale.preset(source, k.strip()), None)
                for k in keys]
    coefficients = scale.parse_coefficients(args.coefficients) if args.coefficients else scale.PAPER_COEFFICIENTS
    return [(f"b{phi:g}", scale.compound(source, phi, coefficients), None)
            for phi in scale.parse_phis(args.phi or "1-7")]


def _output(args: argparse.Namespace, source: Any, run: Any, single: bool) -> tuple[Path, bool]:
    """(path, is_file): NAME.yaml for one member, else a folder."""
    from nas.scaling.scale import family_base_name

    if args.output:
        path = Path(args.output).expanduser()
        if path.suffix in (".yaml", ".yml"):
            if not single:
                raise ConfigError(f"-o must be a folder when writing several members, but got {args.output!r}")
            return path, True
        return path, False
    if run is not None:
        return run.path / "family", False
    return Path(f"{family_base_name(source)}-family"), False


def _write_family(args: argparse.Namespace, source: Any, run: Any) -> None:
    from nas.measure.costs import count_costs
    from nas.records.runs import atomic_write
    from nas.training.progressive import recipe_path

    members = _members(args, source)
    target, is_file = _output(args, source, run, single=len(members) == 1)
    folder = target.parent if is_file else target
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"-o must be a writable folder, but got {str(folder)!r} ({exc.strerror})") from None
    print(f"{'member':<22} {'width':>6} {'depth':>6} {'res':>5} {'dropout':>7} {'params':>12} {'MACs':>9}  file")
    for key, arch, recipe in members:
        path = target if is_file else folder / f"{key}.yaml"
        atomic_write(path, f"# {arch.name}: scaled from {source.name or 'the source'} by nas scale\n"
                           + arch.to_yaml())
        if recipe is not None:
            recipe.save(recipe_path(path))
        params, macs = count_costs(arch, args.classes)
        print(f"{arch.name:<22} {arch.width:>6g} {arch.depth:>6g} {arch.resolution:>5} {arch.dropout:>7g} "
              f"{params:>12,} {macs / 1e9:>8.3f}G  {path}")


def _grid_search(args: argparse.Namespace, source: Any, run: Any) -> None:
    from nas.measure.device import resolve_device
    from nas.records.runs import RunDir
    from nas.scaling.scale import CoefficientSearch, family_base_name, search_coefficients
    from nas.spec.errors import RunError
    from nas.spec.settings import SearchSettings, saved_space, settings_from_run
    from nas.spec.space import SearchSpace
    from nas.training.data import search_data

    if not 0 < args.tolerance < 1:
        raise ConfigError(f"--tolerance must be in (0, 1), but got {args.tolerance}")
    if run is not None and args.space is None:  # the run's space and proxy
        text, space = saved_space(run)
        settings = settings_from_run(run, space=space, dataset=args.dataset, device=args.device, seed=args.seed)
    else:  # another space brings its own proxy; a run still lends its dataset and split
        saved = run.config() if run is not None else {}
        space = SearchSpace.load(args.space or "v2")
        text = Path(space.source).read_text()
        settings = SearchSettings(
            space=space, dataset=args.dataset if args.dataset is not None else saved.get("dataset", "mnist5k"),
            device=args.device, seed=args.seed if args.seed is not None else saved.get("seed", 0),
            val_fraction=saved.get("val_fraction", 0.2))
    settings = settings.with_overrides(epochs=args.epochs, batch=args.batch, max_train=args.max_train)
    settings.check()
    resolve_device(settings.device)
    search_data(settings)  # a bad dataset fails before anything is written

    if args.output:
        out = Path(args.output).expanduser()
    else:
        out = run.path / "coefficients" if run is not None else Path(args.runs_dir) / (
            f"{family_base_name(source)}-coefficients")
    target = RunDir(out)
    if target.exists():
        raise RunError(f"{out} already holds a coefficient search; choose another -o")
    config = settings.to_dict()
    config.update(kind="coefficient-search", budget=args.budget, tolerance=args.tolerance,
                  source=source.to_string(), source_name=source.name)
    target.start(config, text, resume=False)
    print(f"nas: coefficient search in {out} ({args.budget} candidates, {settings.space.name} proxy, "
          f"dataset {settings.dataset})", file=sys.stderr)
    job = CoefficientSearch(source=source, settings=settings, budget=args.budget, tolerance=args.tolerance)
    best, _ = search_coefficients(job, target, log=lambda line: print(line, file=sys.stderr))
    print(f"best: alpha={best.alpha:g} beta={best.beta:g} gamma={best.gamma:g} "
          f"(alpha*beta^2*gamma^2 = {best.flops_factor:.3f}) -> {out / 'coefficients.yaml'}")
    print(f"next: nas scale {args.source} --coefficients {out / 'coefficients.yaml'} --phi 1-7")


def run(args: argparse.Namespace) -> None:
    source, source_run = resolve_source(args.source, args.runs_dir)
    if args.grid_search:
        if args.method != "compound":
            raise ConfigError(f"--grid-search must be used with --method compound, but got {args.method!r}")
        _grid_search(args, source, source_run)
        return
    _write_family(args, source, source_run)
