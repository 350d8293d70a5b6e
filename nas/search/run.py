"""A search as a library call: `run_search(SearchJob(...))` runs or resumes one search into its
run folder and returns it. `nas search`, the reproduction and scripts all start searches here.

A `SearchJob` holds what `nas search` is asked, field for field (its options' names): what is
left None comes from the resumed run's saved settings, else from the defaults.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from nas.records.runs import RunDir, default_name
from nas.search.backend import load_backend
from nas.search.progress import SearchProgress
from nas.spec.errors import ConfigError
from nas.spec.settings import SearchSettings

DEFAULT_BUDGET = 200
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchJob:
    """One search to run or resume; the fields are `nas search`'s options."""

    space: str | None = None  # v1, v2, tiny or a YAML path (default v2; a resumed run keeps its own)
    budget: int | None = None  # finished trials (default 200; a resumed run keeps its own)
    name: str | None = None  # run folder name (default <space>-<date>-<time>)
    resume: bool = False
    runs_dir: str = "runs"
    dataset: str | None = None
    device: str = "auto"
    seed: int | None = None
    sampler: str | None = None
    pruner: str = "median"
    objective: str | None = None
    workers: int = 1
    storage: str | None = None  # Optuna RDB URL, or with the Ray backend a shared checkpoint path
    epochs: int | None = None
    batch: int | None = None
    max_train: int | None = None
    val_fraction: float | None = None
    test_fraction: float | None = None
    cache_dir: str | None = None  # this machine's step-time table (nas.measure.step_table)
    backend: str | None = None  # optuna (default) or ray
    address: str | None = None
    cpus_per_trial: float | None = None
    gpus_per_trial: float | None = None
    max_concurrent: int | None = None
    no_asha: bool = False
    max_failures: int | None = None

    @classmethod
    def from_options(cls, options: Any) -> SearchJob:
        """From an object with the fields as attributes (`nas search`'s parsed arguments)."""
        return cls(**{f.name: getattr(options, f.name) for f in fields(cls)})

    def named(self) -> SearchJob:
        """The job with its run's name: the given one, else `<space>-<date>-<time>`."""
        if self.name:
            return self
        if self.resume:
            raise ConfigError("--resume needs --name of the run to continue")
        return replace(self, name=default_name(Path(self.space or "v2").stem))

    def command_line(self) -> str:
        """The `nas search` options that ask for this job (those not left at their default)."""
        words = ["nas search"]
        for f in fields(self):
            value = getattr(self, f.name)
            if value == f.default:
                continue
            flag = "--" + f.name.replace("_", "-")
            words += [flag] if value is True else [flag, str(value)]
        return " ".join(words)


def run_search(job: SearchJob, progress: SearchProgress | None = None) -> RunDir:
    """Run (or resume) `job` to its budget; returns its run folder. Everything that can be
    checked (names, backend, settings, data, device, cluster) is checked before anything is
    written. `progress` is told of every finished trial (None: nothing is shown); notes go to
    the `nas` loggers. Ctrl-C propagates as KeyboardInterrupt after finished trials are saved."""
    if job.cache_dir:
        from nas.measure.step_table import use_cache_dir

        use_cache_dir(job.cache_dir)
    job = job.named()
    name = job.name or ""
    if "/" in name or name in ("", ".", ".."):
        raise ConfigError(f"--name must be a plain folder name, but got {name!r}")
    run = RunDir(Path(job.runs_dir) / name)
    saved: dict[str, Any] = run.config() if (job.resume and run.exists()) else {}
    backend_name = job.backend or saved.get("backend") or "optuna"
    if saved and saved.get("backend", "optuna") != backend_name:
        raise ConfigError(f"run {run.name!r} was made with the {saved.get('backend', 'optuna')} backend; "
                          f"resume it with --backend {saved.get('backend', 'optuna')}")
    # before anything slow or written: the backend importable, its options sound
    backend = load_backend(backend_name)
    options = backend.options(job, saved)
    budget = job.budget or saved.get("budget") or DEFAULT_BUDGET  # a resumed run keeps its budget unless told
    text, settings = _space_text_and_settings(job, run)
    # check data, device and cluster before anything is written (loaded data stay cached)
    from nas.training.data import search_data

    search_data(settings)
    backend.connect(options, settings)
    config = settings.to_dict()
    config["space_sha256"] = hashlib.sha256(text.encode()).hexdigest()[:16]
    config["budget"] = budget
    config["backend"] = backend_name
    config.update(backend.placement(run, options))
    run.start(config, text, resume=job.resume)

    where = f", Ray at {options.address or 'a local Ray'}" if backend_name == "ray" else ""
    log.info(f"nas: run {run.name} in {run.path} ({settings.space.name} space, budget {budget}, "
             f"dataset {settings.dataset}{where})")
    backend.search(run, settings, budget, options, resume=job.resume, progress=progress)
    return run


def _space_text_and_settings(job: SearchJob, run: RunDir) -> tuple[str, SearchSettings]:
    """Settings from the job; a resumed run fills what is not given from its saved settings."""
    from nas.spec.resources import space_path
    from nas.spec.settings import default_sampler, saved_space, settings_from_run
    from nas.spec.space import SearchSpace

    resumed = job.resume and run.exists()
    if job.space is None and resumed:
        text, space = saved_space(run)
    else:
        path = space_path(job.space or "v2")
        space = SearchSpace.load(str(path))  # first: it turns unreadable or non-UTF-8 files into ConfigError
        text = path.read_text()
    if resumed:  # a resumed run keeps its proxy; different explicit values fail the fingerprint check
        settings = settings_from_run(run, space=space, dataset=job.dataset, device=job.device, seed=job.seed,
                                     val_fraction=job.val_fraction, test_fraction=job.test_fraction,
                                     sampler=job.sampler, pruner=job.pruner, objective=job.objective)
    else:
        kind = job.objective or space.objective.kind
        settings = SearchSettings(
            space=space, dataset=job.dataset if job.dataset is not None else "mnist5k", device=job.device,
            seed=job.seed if job.seed is not None else 0, val_fraction=job.val_fraction or 0.2,
            test_fraction=job.test_fraction or 0.0,
            sampler=job.sampler or default_sampler(kind), pruner=job.pruner,
        ).with_objective(kind)
    settings = settings.with_overrides(epochs=job.epochs, batch=job.batch, max_train=job.max_train)
    settings.check()
    return text, settings
