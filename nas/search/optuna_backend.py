"""Optuna backend: ask/tell workers sharing one crash-safe storage in the run directory.

The run's budget is a total over all processes, enforced in the storage under the run lock
(Optuna's own `n_trials` counts per process and `MaxTrialsCallback` overshoots by about a
trial per worker). A worker beats for the trials it runs (`nas.search.liveness`); a trial whose
worker stopped beating for the grace period is failed as interrupted and its architecture queued
again by whichever worker claims next, which is also what `--resume` relies on.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from typing import TYPE_CHECKING, Any

import optuna
import torch

from nas.measure.costs import StepTimeCache
from nas.measure.device import resolve_device, set_threads
from nas.records.runs import RunDir
from nas.search.backend import OptunaOptions
from nas.search.failure import INTERRUPTED
from nas.search.lifecycle import attempt, finish_trial
from nas.search.progress import NoProgress, SearchProgress
from nas.search.run_table import open_run_table
from nas.search.study import RunStudy, count_finished
from nas.spec.errors import RunError
from nas.spec.objective import Objective
from nas.spec.settings import SearchSettings
from nas.training.data import Dataset, search_data

if TYPE_CHECKING:
    from nas.search.run import SearchJob

log = logging.getLogger(__name__)


class OptunaSearch:
    """One worker process of a search; several may run on one run directory at once."""

    def __init__(self, run: RunDir, settings: SearchSettings, budget: int, storage_url: str | None = None,
                 worker: int = 0, progress: SearchProgress | None = None) -> None:
        self.run = run
        self.settings = settings
        self.budget = budget
        self.storage_url = storage_url
        self.worker = worker
        self.progress = progress or NoProgress()

    def run_worker(self) -> int:
        """Run trials until the run's budget is met; returns how many this worker ran."""
        settings = self.settings
        data = search_data(settings)
        device = resolve_device(settings.device)  # once per worker process, passed down
        cache, reference = open_run_table(self.run, settings, data, device)
        objective = Objective(settings.space.objective, reference)
        rs = RunStudy.open(self.run, settings, objective, self.storage_url, seed_offset=self.worker)
        progress = self.progress
        progress.start(self.budget, count_finished(rs.trials()))
        reference_params = settings.space.params_for(settings.space.reference)
        ran = 0
        try:
            while True:
                trial = rs.claim(self.budget, reference_params)
                if trial is None:
                    if rs.budget_met(self.budget):
                        break
                    # the rest of the budget is running elsewhere; stay to retry any that goes stale
                    time.sleep(rs.timing.interval / 2)
                    continue
                ran += 1
                reason = self.run_trial(rs, trial, data, device, cache, objective, progress)
                if reason:  # this process cannot run trials any more; the trial is queued again
                    raise RunError(f"worker stopped: {reason}; continue with --resume (here or on another machine)")
        finally:
            progress.close()
            rs.close()
        return ran

    def run_trial(self, rs: RunStudy, trial: optuna.Trial, data: Dataset, device: torch.device, cache: StepTimeCache,
                  objective: Objective, progress: SearchProgress) -> str | None:
        """Run one claimed trial; the reason when this worker must stop (its device failed)."""
        arch = self.settings.space.sample(trial)
        trial.set_user_attr("arch", arch.to_string())
        single = len(objective.directions) == 1
        costs = None

        def keep_costs(measured: object) -> None:
            nonlocal costs
            costs = measured

        def on_epoch(epoch: int, accuracy: float) -> bool:
            if not single or costs is None:
                return True  # Optuna cannot prune multi-objective studies
            # the pruner judges what the sampler maximises: accuracy so far x the known cost factor
            trial.report(objective.values(accuracy, costs.step.median_ms, costs.params, costs.macs,
                                          costs.ref_step.median_ms)[0], epoch)
            return not trial.should_prune()

        outcome = attempt(arch, self.settings, data, device, cache, on_epoch, on_costs=keep_costs)
        finish_trial(rs, trial.number, arch, outcome, objective, progress)
        if outcome.state == INTERRUPTED and isinstance(outcome.error, KeyboardInterrupt):
            raise outcome.error
        return outcome.reason if outcome.poisoned else None


# -- several worker processes ------------------------------------------------------------------
def _worker_main(run_path: str, settings: SearchSettings, budget: int, storage_url: str | None,
                 worker: int, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    OptunaSearch(RunDir(run_path), settings, budget, storage_url, worker).run_worker()


def options(job: SearchJob, saved: dict[str, Any]) -> OptunaOptions:
    """Worker processes on this machine; the storage is the job's RDB URL, else the run's journal."""
    return OptunaOptions(workers=job.workers, storage=job.storage)


def connect(options: OptunaOptions, settings: SearchSettings) -> None:
    """The workers start on this machine: its device must be there (an RDB is opened by the study)."""
    resolve_device(settings.device)


def placement(run: RunDir, options: OptunaOptions) -> dict[str, Any]:
    return {"storage": options.storage or "study.journal"}


def search(run: RunDir, settings: SearchSettings, budget: int, options: OptunaOptions, *,
           resume: bool = False, progress: SearchProgress | None = None) -> None:
    """Run the search to its budget with `options.workers` processes (this one included); a
    run's study resumes by itself, so `resume` changes nothing here."""
    workers, storage_url = options.workers, options.storage
    threads = set_threads(workers)
    children = []
    context = multiprocessing.get_context("spawn")
    for index in range(1, workers):
        child = context.Process(
            target=_worker_main,
            args=(str(run.path), settings, budget, storage_url, index, threads),
            daemon=True,
        )
        child.start()
        children.append(child)
    try:
        OptunaSearch(run, settings, budget, storage_url, 0, progress).run_worker()
    finally:
        for child in children:
            child.join()
    failed = [c.exitcode for c in children if c.exitcode not in (0, None)]
    if failed:
        log.warning("%d worker process(es) exited with errors %s", len(failed), failed)
