"""Running a reproduction: the hardware precondition, the searches and random baselines (one
pair per search seed), retraining, the report."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from nas.records.runs import atomic_write
from nas.reproduce.claims import TARGETS
from nas.reproduce.precondition import (
    PRECONDITION_FILE,
    VARIANTS,
    Precondition,
    load_precondition,
    measure_precondition,
    save_precondition,
)
from nas.reproduce.provenance import CodeState, check_code, finish_phase, installed_code_state, record_phase
from nas.reproduce.report import write_reproduction_report
from nas.reproduce.request import Request, record_request, say
from nas.reproduce.retrain import retrain
from nas.search.progress import SearchProgress
from nas.spec.errors import ConfigError
from nas.spec.space import SearchSpace

log = logging.getLogger(__name__)


# -- running it ------------------------------------------------------------------------------
def run_reproduction(request: Request, runs_dir: str | Path, name: str, code: CodeState | None = None,
                     search_options: Mapping[str, Any] | None = None,
                     progress: SearchProgress | None = None) -> Path:
    """Precondition, searches and baselines per seed, retraining and report; each part resumes
    from what is on disk. `code`: the code state to record per phase (default: this nas's
    checkout, `nas.reproduce.provenance`). `search_options`: `request.search_args` as `SearchJob`
    fields (`nas.commands.search.search_options` parses them; the library reads no command lines);
    `progress`: told of every search's trials (None: nothing shown)."""
    if request.target not in TARGETS:
        raise ConfigError(f"target must be one of {sorted(TARGETS)}, but got {request.target!r}")
    if request.search_args and search_options is None:
        raise ConfigError("request.search_args are command-line words: pass them parsed, as search_options")
    folder = Path(runs_dir) / name
    code = code or installed_code_state()
    check_code(folder, code, request.allow_code_change)
    record_request(folder, request, runs_dir)

    def phase(label: str) -> None:
        record_phase(folder, label, code, request.allow_code_change)

    runs = request.search_runs()
    say(f"nas: reproduction {name} in {folder}: {request.target} ({request.space_name} space), "
                  f"search budget {request.budget}, random baseline {request.baseline}, "
                  f"{len(runs)} search seed{'s' if len(runs) != 1 else ''}")
    if request.precondition_rounds > 0 and any(c.hardware for c in TARGETS[request.target].claims):
        run_precondition(folder, request, on_measure=lambda: phase("precondition"))
        finish_phase(folder, "precondition")
    main = folder / runs[0].tpe
    # seed by seed, so an interrupted reproduction leaves whole TPE / random pairs behind it
    for index, pair in enumerate(runs, 1):
        say(f"nas: search seed {pair.seed} ({index} of {len(runs)})")
        jobs: list[tuple[str, int, str | None, str | None]] = [(pair.tpe, request.budget, None, None)]
        if request.baseline > 0:
            jobs.append((pair.random, request.baseline, "random", None))
        if request.ablation:
            jobs.append((pair.accuracy, request.budget, None, str(accuracy_only_space(folder, request))))
        for sub, budget, sampler, space in jobs:
            if sub != runs[0].tpe:
                # one reference and one step-time table generation for all runs: one scale
                _share_reference(main, folder / sub)
            if not _finished(folder / sub, budget):
                phase(f"search {sub}")
            run_search(folder, sub, request, budget, sampler=sampler, seed=pair.seed, space=space,
                       search_options=search_options, progress=progress)
            finish_phase(folder, f"search {sub}")
    retrain(folder, request, on_start=lambda: phase("retrain"))
    finish_phase(folder, "retrain")
    return write_reproduction_report(folder)


def run_precondition(folder: Path, request: Request, on_measure: Callable[[], None] | None = None) -> Precondition:
    """The fused ablation on this device (nas.reproduce.precondition), measured once per
    hardware: a finished measurement on the same fingerprint is reused (`on_measure` is called
    when it is not)."""
    from nas.measure.device import resolve_device, set_threads
    from nas.measure.hardware import fingerprint
    from nas.training.data import load_dataset

    device = resolve_device(request.device)
    set_threads(request.workers)  # the threads each search worker measures with
    saved = load_precondition(folder)
    hardware = fingerprint(device).to_dict()
    if (saved is not None and saved.hardware == hardware and saved.rounds >= request.precondition_rounds
            and saved.variants == VARIANTS):
        say(f"nas: hardware precondition: reusing {folder / PRECONDITION_FILE}")
        return saved
    if on_measure is not None:
        on_measure()
    space = SearchSpace.load(request.space_name)
    data = load_dataset(request.dataset, resolution=space.proxy.resolution, seed=request.seed)
    shape = space.measure.timing_shape(device.type, space.resolution, data.num_classes)
    say(f"nas: hardware precondition: {space.reference.name or 'reference'} with no, the first "
                  f"half, the first five or every stage fused (Table 3's rows); whole network at "
                  f"{shape.describe()}, {request.precondition_rounds} interleaved rounds")

    def progress(done: int, step_ms: dict[str, float]) -> None:
        times = "  ".join(f"{k} {v:.1f} ms" for k, v in step_ms.items())
        say(f"[precondition {done}/{request.precondition_rounds}] {times}")

    found = measure_precondition(space.reference, shape, device, space.measure.repeats(), space.resolution,
                                 rounds=request.precondition_rounds, on_round=progress)
    if saved is not None and saved.hardware != hardware:
        found = replace(found, notes=[*found.notes, "re-measured: the earlier measurement was on other hardware"])
    save_precondition(folder, found)
    early, whole = found.ratio("early", "none"), found.ratio("all", "none")
    say(f"nas: hardware precondition: fused early ÷ none {early.text()}; all ÷ none {whole.text()}")
    return found


ABLATION_SPACE = "accuracy-only-space.yaml"


def accuracy_only_space(folder: Path, request: Request) -> Path:
    """The target's space with every cost weight 0, so its reward is accuracy alone: the
    cost-term ablation searches it with the same seeds and budget (written once)."""
    from nas.spec.resources import space_path

    path = folder / ABLATION_SPACE
    if path.is_file():
        return path
    source = space_path(request.space_name)
    raw = yaml.safe_load(source.read_text()) or {}
    reference = raw.get("reference")
    if isinstance(reference, str) and (source.parent / reference).is_file():  # a file beside the original
        raw["reference"] = str((source.parent / reference).resolve())
    raw["name"] = f"{raw.get('name', source.stem)}-accuracy-only"
    raw["objective"] = {**(raw.get("objective") or {}), "step_time_weight": 0.0, "params_weight": 0.0,
                        "macs_weight": 0.0}
    atomic_write(path, yaml.safe_dump(raw, sort_keys=False))
    return path


def run_search(folder: Path, sub: str, request: Request, budget: int, sampler: str | None = None,
               seed: int | None = None, space: str | None = None,
               search_options: Mapping[str, Any] | None = None, progress: SearchProgress | None = None) -> None:
    """The search into folder/sub (`nas.search.run`), resuming it if it exists; `space`: a space
    file instead of the target's; `search_options`: more `SearchJob` fields (--search-args)."""
    from nas.search.run import SearchJob, run_search

    target = TARGETS[request.target]
    job = SearchJob(space=space or request.space_name, budget=budget, runs_dir=str(folder), name=sub,
                    dataset=request.dataset, objective=target.objective,
                    seed=request.seed if seed is None else seed, device=request.device, workers=request.workers,
                    test_fraction=request.test_fraction or None, sampler=sampler,
                    epochs=request.epochs or None, max_train=request.max_train or None)
    job = replace(job, **(search_options or {}))
    if sampler == "random":
        # every random trial trained in full: the unbiased sample the findings are tested on (a
        # pruner would keep only the trials whose early accuracy beat the median)
        if (search_options or {}).get("pruner", "none") != "none":
            log.warning(f"{sub}: --pruner {job.pruner} (from --search-args) is not used here: a random "
                        f"baseline trains every trial in full")
        job = replace(job, pruner="none")
    job = replace(job, resume=job.resume or (folder / sub / "config.yaml").is_file())
    say(f"nas: {sub}: {job.command_line()}")
    run_search(job, progress)


def _finished(run: Path, budget: int) -> bool:
    """Whether the search in `run` has reached its budget (so resuming it trains nothing)."""
    from nas.records.runs import RunDir
    from nas.report.run_report import load_run

    return RunDir(run).exists() and load_run(RunDir(run)).finished() >= budget


def _share_reference(source: Path, dest: Path) -> None:
    """The baseline starts from the search's reference measurement and the step-time table
    generation it pinned (or, for a reproduction begun before tables were per machine, its
    step_times.json), so both runs score on one scale (rewards are otherwise comparable only
    within a run)."""
    if (dest / "config.yaml").is_file():
        return
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("reference.json", "step_table.json", "step_times.json"):
        if (source / name).is_file() and not (dest / name).is_file():
            shutil.copyfile(source / name, dest / name)


