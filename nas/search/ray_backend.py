"""Ray Tune backend: the same search on a Ray cluster, recorded in the same run folder and study.

A `Tuner` runs `run_trial` (the one trial of every backend, in a Ray actor with its own CPU/GPU
share) with ASHA on the per-epoch objective, and `StudySearcher` (Tune's public Searcher
interface) on the run's own Optuna study: the same storage, study name and claim/conclude code
as the Optuna backend, so `nas show`, `nas report` and Optuna's tools read either run the same.
The dataset reaches the actors through `tune.with_parameters` (once into the object store).
Only the driver writes runs/<name>/; Ray's experiments live in runs/<name>/ray/ (or the shared
`storage` a multi-node cluster needs for trial checkpoints).

Failures: an error of the candidate itself (divergence, OOM) is a FAIL outcome, never retried;
a trial whose actor or node dies is retried by Tune from its last checkpoint up to
`max_failures` times, and past Tune's retries (or when Tune errors it early) asked again by the
searcher, resuming from the same checkpoint. `--resume` after the driver died starts a new Tune
experiment on the study: the dead driver's trials stop beating, are failed as interrupted after
the grace period and asked again from their checkpoints; nothing finished is lost or repeated.
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import TYPE_CHECKING, Any

import optuna
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from nas.records.runs import RunDir
from nas.search.failure import failure_reason
from nas.search.progress import NoProgress, SearchProgress
from nas.search.raytune import cluster
from nas.search.raytune.cluster import RayOptions, capacity
from nas.search.raytune.searcher import FailureCounter, StudySearcher, trial_dirname
from nas.search.raytune.trainable import NUMBER, TrialJob, measure_reference_remotely, run_trial  # noqa: F401
from nas.search.study import RunStudy, count_finished, run_reference, write_tables
from nas.spec.errors import ConfigError, RunError
from nas.spec.objective import Objective, Reference
from nas.spec.settings import SearchSettings
from nas.training.data import Dataset, search_data

if TYPE_CHECKING:
    from nas.search.run import SearchJob

EXPERIMENTS = "ray"  # under the run folder (or --storage): one Tune experiment per driver session


def options(job: SearchJob, saved: dict[str, Any]) -> RayOptions:
    """Ray placement: the job's options, else the resumed run's (`saved`), else the defaults."""
    if job.workers != 1:
        raise ConfigError("--workers is for the optuna backend; with --backend ray use --max-concurrent")
    old = saved.get("ray") or {}
    defaults = RayOptions()

    def pick(name: str, given: Any) -> Any:
        return given if given is not None else old.get(name, getattr(defaults, name))

    chosen = RayOptions(
        address=job.address or old.get("address"),  # None: a local Ray
        cpus_per_trial=pick("cpus_per_trial", job.cpus_per_trial),
        gpus_per_trial=pick("gpus_per_trial", job.gpus_per_trial),
        max_concurrent=pick("max_concurrent", job.max_concurrent),
        asha=False if job.no_asha else old.get("asha", True),
        max_failures=pick("max_failures", job.max_failures),
        storage=job.storage or old.get("storage"),
    )
    chosen.check()
    return chosen


def connect(options: RayOptions, settings: SearchSettings) -> None:
    """Join the cluster (or start a local Ray) and check one trial fits; a trial's device is
    resolved on its worker node, so here only that a CUDA device has GPUs to run on."""
    if settings.device.startswith("cuda") and options.gpus_per_trial == 0:
        raise ConfigError(f"--device {settings.device} needs --gpus-per-trial > 0 with --backend ray")
    cluster.connect(options)


def placement(run: RunDir, options: RayOptions) -> dict[str, Any]:
    return {"storage": experiment_path(run, options), "ray": options.to_dict()}


def experiment_path(run: RunDir, options: RayOptions) -> str:
    """Where this run's Tune experiments live (each driver session adds one folder)."""
    return (options.storage or str(run.path.resolve() / EXPERIMENTS)).rstrip("/")


def _reference(run: RunDir, settings: SearchSettings, data: Dataset, options: RayOptions,
               cache_name: str) -> Reference:
    """The reward's normalisers: measured once per run, on a trial-sized share of the cluster."""

    def measure() -> Reference:
        task = ray.remote(num_cpus=options.cpus_per_trial, num_gpus=options.gpus_per_trial)(measure_reference_remotely)
        try:
            return Reference.from_dict(ray.get(task.remote(settings, data, cache_name, options.threads)))
        except ray.exceptions.RayError as exc:
            raise RunError(f"measuring the reference architecture on the Ray cluster failed "
                           f"(is the same nas installed on every node?): {failure_reason(exc)}") from None

    return run_reference(run, measure)


def _tuner(trainable: object, searcher: StudySearcher, failures: FailureCounter, settings: SearchSettings,
           objective: Objective, options: RayOptions, storage: str, name: str) -> tune.Tuner:
    epochs = settings.proxy.epochs
    scheduler: object = FIFOScheduler()
    if options.asha and epochs > 1:
        # ASHA judges the objective (accuracy x cost factor), as the sampler does; a Pareto
        # search has no single objective, so there it judges accuracy
        scheduler = ASHAScheduler(metric=searcher.metric, mode="max", time_attr="training_iteration", max_t=epochs,
                                  grace_period=1, reduction_factor=2)
    return tune.Tuner(
        trainable,
        # the searcher ends the experiment (Searcher.FINISHED) once the study holds the budget;
        # without an explicit limit Tune starts searcher trials about one at a time
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=-1,
                                    max_concurrent_trials=options.max_concurrent or capacity(options),
                                    reuse_actors=True,  # ~3 s less per trial
                                    trial_dirname_creator=trial_dirname),
        run_config=tune.RunConfig(
            name=name, storage_path=storage, verbose=0, callbacks=[failures],
            failure_config=tune.FailureConfig(max_failures=options.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        ),
    )


def search(run: RunDir, settings: SearchSettings, budget: int, options: RayOptions, *, resume: bool = False,
           progress: SearchProgress | None = None) -> None:
    """Run the search to its budget on the cluster `connect` joined; returns when it is met.

    `resume` needs nothing of its own: the run's study says what is finished, running or queued.
    """
    # Tune's default loggers would write a second set of TensorBoard files into the run folder,
    # and its console reporter would talk over our progress lines (the old one is silent at verbose=0)
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if not ray.is_initialized():
        cluster.connect(options)
    data = search_data(settings)
    cache_name = f"{run.name}-{hashlib.sha1(str(run.path.resolve()).encode()).hexdigest()[:10]}.json"
    rs = None
    try:
        objective = Objective(settings.space.objective, _reference(run, settings, data, options, cache_name))
        # ASHA prunes here; the study's own pruner stays idle
        rs = RunStudy.open(run, settings, objective, pruner=optuna.pruners.NopPruner())
        progress = progress or NoProgress()
        progress.start(budget, count_finished(rs.trials()))
        try:
            if rs.budget_met(budget):
                write_tables(run, rs.study, objective)
                return
            storage = experiment_path(run, options)
            job = TrialJob(settings, objective, cache_name, options.threads)
            trainable = tune.with_resources(tune.with_parameters(run_trial, data=data, job=job),
                                            {"cpu": options.cpus_per_trial, "gpu": options.gpus_per_trial})
            failures = FailureCounter()
            searcher = StudySearcher(rs, settings.space, objective, budget, progress, failures, storage,
                                     options.max_failures)
            name = f"tune-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
            try:
                _tuner(trainable, searcher, failures, settings, objective, options, storage, name).fit()
            finally:
                searcher.abandon_running()
                write_tables(run, rs.study, objective)
        finally:
            progress.close()
        if not rs.budget_met(budget):
            raise KeyboardInterrupt  # Tune stops early only when interrupted (errors are outcomes)
    finally:
        if rs is not None:
            rs.close()
        ray.shutdown()
