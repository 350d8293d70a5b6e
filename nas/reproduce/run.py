"""Running a reproduction: the search, the random baseline, retraining, the report."""

from __future__ import annotations

import shutil
from pathlib import Path

from nas.errors import ConfigError
from nas.reproduce.claims import TARGETS
from nas.reproduce.report import write_reproduction_report
from nas.reproduce.request import Request, record_request, say
from nas.reproduce.retrain import retrain


# -- running it ------------------------------------------------------------------------------
def run_reproduction(request: Request, runs_dir: str | Path, name: str) -> Path:
    """Search, baseline, retraining and report; each part resumes from what is on disk."""
    if request.target not in TARGETS:
        raise ConfigError(f"target must be one of {sorted(TARGETS)}, but got {request.target!r}")
    folder = Path(runs_dir) / name
    record_request(folder, request, runs_dir)
    say(request, f"nas: reproduction {name} in {folder}: {request.target} ({request.space_name} space), "
                  f"search budget {request.budget}, random baseline {request.baseline}")
    run_search(folder, "search", request, request.budget)
    if request.baseline > 0:
        _share_reference(folder / "search", folder / "random")
        run_search(folder, "random", request, request.baseline, sampler="random")
    retrain(folder, request)
    return write_reproduction_report(folder)


def run_search(folder: Path, sub: str, request: Request, budget: int, sampler: str | None = None) -> None:
    """`nas search` into folder/sub, resuming it if it exists (the search command builds the settings)."""
    from nas.cli import build_parser
    from nas.commands import command_module

    target = TARGETS[request.target]
    argv = ["search", "--space", request.space_name, "--budget", str(budget), "--runs-dir", str(folder),
            "--name", sub, "--dataset", request.dataset, "--objective", target.objective, "--seed", str(request.seed),
            "--device", request.device, "--workers", str(request.workers)]
    if sampler:
        argv += ["--sampler", sampler]
    if request.epochs:
        argv += ["--epochs", str(request.epochs)]
    if request.max_train:
        argv += ["--max-train", str(request.max_train)]
    argv += list(request.search_args)
    if (folder / sub / "config.yaml").is_file():
        argv.append("--resume")
    if request.quiet:
        argv.append("--quiet")
    say(request, f"nas: {sub}: nas {' '.join(argv)}")
    command_module("search").run(build_parser().parse_args(argv))


def _share_reference(source: Path, dest: Path) -> None:
    """The baseline starts from the search's reference measurement and step-time cache, so both
    runs score on one scale (rewards are otherwise comparable only within a run)."""
    if (dest / "config.yaml").is_file():
        return
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("reference.json", "step_times.json"):
        if (source / name).is_file() and not (dest / name).is_file():
            shutil.copyfile(source / name, dest / name)


