"""Optuna backend: ask/tell workers sharing one crash-safe storage in the run directory.

The run's budget is a total over all processes, enforced in the storage under a file lock
(Optuna's own `n_trials` counts per process and `MaxTrialsCallback` overshoots by about a
trial per worker). JournalStorage has no heartbeat, so each trial records its owner
(host:pid); a RUNNING trial whose owner process is gone is failed as interrupted and its
architecture (once fully sampled) queued again, which is what `--resume` relies on.
"""

from __future__ import annotations

import fcntl
import json
import multiprocessing
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from nas.data import Dataset, load_dataset
from nas.device import resolve_device, set_threads
from nas.errors import RunError
from nas.measure import StepTimeCache
from nas.objective import Objective, Reference
from nas.runs import RunDir
from nas.search.base import best_reward as base_best_reward
from nas.search.base import failure_reason, make_row, record_trial, result_attrs, write_rows
from nas.search.journal_lock import FlockJournalLock
from nas.search.progress import Progress
from nas.search.trial import measure_reference, prepare_candidate, train_candidate, warn_if_other_hardware
from nas.settings import SearchSettings

STUDY_NAME = "nas"
OWNER = f"{socket.gethostname()}:{os.getpid()}"
optuna.logging.set_verbosity(optuna.logging.WARNING)


def open_storage(run: RunDir, url: str | None = None) -> optuna.storages.BaseStorage:
    if url:
        return optuna.storages.RDBStorage(url)
    journal = str(run.journal_path.resolve())
    return JournalStorage(JournalFileBackend(journal, lock_obj=FlockJournalLock(journal)))


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)


def is_finished(trial: FrozenTrial) -> bool:
    """Counts toward the budget: complete, pruned, or failed for a reason of its own."""
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and not trial.user_attrs.get("interrupted", False)


def count_finished(trials: list[FrozenTrial]) -> int:
    return sum(is_finished(t) for t in trials)


def _owner_alive(owner: str | None) -> bool:
    if not owner or ":" not in owner:
        return False
    host, pid = owner.rsplit(":", 1)
    if host != socket.gethostname():
        return True  # another machine's trial: only that machine can tell
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return True


class OptunaSearch:
    """One worker process of a search; several may run on one run directory at once."""

    def __init__(self, run: RunDir, settings: SearchSettings, budget: int, storage_url: str | None = None,
                 worker: int = 0, show_progress: bool = True) -> None:
        self.run = run
        self.settings = settings
        self.budget = budget
        self.storage_url = storage_url
        self.worker = worker
        self.show_progress = show_progress

    # -- shared state under the run lock ---------------------------------------------------
    @contextmanager
    def locked(self) -> Iterator[None]:
        with self.run.writable(), open(self.run.path / ".claim.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def reference(self, data: Dataset, cache: StepTimeCache) -> Reference:
        """Measured once per run (the first worker does it), then read back.

        Every trial also carries S_ref timed on its own hardware, so a worker on different
        hardware (another machine, another thread count, after a resume) compares its
        candidates with the reference timed where they were; it says so once.
        """
        with self.locked():
            if self.run.reference_path.is_file():
                ref = Reference.from_dict(json.loads(self.run.reference_path.read_text()))
                warn_if_other_hardware(ref, resolve_device(self.settings.device))
                return ref
            ref = measure_reference(self.settings, data, cache)
            self.run.reference_path.write_text(json.dumps(ref.to_dict(), indent=2) + "\n")
            return ref

    def study(self, objective: Objective) -> optuna.Study:
        pruner: optuna.pruners.BasePruner = optuna.pruners.NopPruner()
        if self.settings.pruner == "median" and len(objective.directions) == 1:
            pruner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)
        for attempt in range(3):
            try:
                # Under the run lock: two processes creating an RDB schema at once collide.
                with self.locked():
                    return optuna.create_study(
                        storage=open_storage(self.run, self.storage_url),
                        study_name=STUDY_NAME,
                        directions=objective.directions,
                        sampler=make_sampler(self.settings.sampler, self.settings.seed + self.worker),
                        pruner=pruner,
                        load_if_exists=True,
                    )
            except Exception as exc:  # storage backends raise many kinds; all mean "cannot open"
                if attempt == 2:
                    reason = failure_reason(exc)
                    raise RunError(f"cannot open the study storage of run {self.run.name}: {reason}") from None
                time.sleep(1.0 + attempt)  # a worker on another machine may be creating the schema
        raise AssertionError("unreachable")

    def recover_and_claim(self, study: optuna.Study) -> optuna.Trial | None:
        """Under the lock: fail orphaned trials, enqueue the reference, claim the next trial."""
        with self.locked():
            trials = study.get_trials(deepcopy=False)
            for t in trials:
                if t.state == TrialState.RUNNING and not _owner_alive(t.user_attrs.get("owner")):
                    study._storage.set_trial_user_attr(t._trial_id, "interrupted", True)
                    study._storage.set_trial_user_attr(t._trial_id, "reason", "interrupted (worker died)")
                    study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
                    if "arch" in t.user_attrs:  # killed mid-sampling, its params are partial: no retry
                        study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
            if not trials:
                params = self.settings.space.params_for(self.settings.space.reference)
                if params is not None:
                    study.enqueue_trial(params, user_attrs={"reference": True})
            trials = study.get_trials(deepcopy=False)
            running = sum(t.state == TrialState.RUNNING for t in trials)
            if count_finished(trials) + running >= self.budget:
                return None
            trial = study.ask()
            trial.set_user_attr("owner", OWNER)
        # The lock above covers processes on this machine only. Storages number trials
        # atomically, so a trial ranked at or past the budget among the live ones (workers on
        # other machines sharing an RDB storage raced us) is given up before it runs.
        ahead = sum(
            1 for t in study.get_trials(deepcopy=False)
            if t.number < trial.number and not t.user_attrs.get("interrupted", False)
        )
        if ahead >= self.budget:
            trial.set_user_attr("interrupted", True)
            trial.set_user_attr("surplus", True)
            study.tell(trial, state=TrialState.FAIL)
            return None
        return trial

    # -- the loop --------------------------------------------------------------------------
    def run_worker(self) -> int:
        """Run trials until the run's budget is met; returns how many this worker ran."""
        data = load_dataset(self.settings.dataset, resolution=self.settings.proxy.resolution,
                            val_fraction=self.settings.val_fraction, seed=self.settings.seed)
        cache = StepTimeCache(self.run.path / "step_times.json")
        objective = Objective(self.settings.space.objective, self.reference(data, cache))
        study = self.study(objective)
        progress = Progress(self.budget, count_finished(study.get_trials(deepcopy=False)), self.show_progress)
        ran = 0
        try:
            while (trial := self.recover_and_claim(study)) is not None:
                self.run_trial(study, trial, data, cache, objective, progress)
                ran += 1
        finally:
            progress.close()
        return ran

    def run_trial(self, study: optuna.Study, trial: optuna.Trial, data: Dataset, cache: StepTimeCache,
                  objective: Objective, progress: Progress) -> None:
        arch = self.settings.space.sample(trial)
        trial.set_user_attr("arch", arch.to_string())
        single = len(objective.directions) == 1

        start = time.perf_counter()
        costs = None

        def on_epoch(epoch: int, accuracy: float) -> bool:
            if not single or costs is None:
                return True  # Optuna cannot prune multi-objective studies
            # the pruner judges what the sampler maximises: accuracy so far x the known cost factor
            trial.report(objective.values(accuracy, costs.step.median_ms, costs.params, costs.macs,
                                          costs.ref_step.median_ms)[0], epoch)
            return not trial.should_prune()

        try:
            candidate = prepare_candidate(arch, self.settings, data, cache)
            costs = candidate.costs
            result = train_candidate(candidate, self.settings, data, on_epoch)
        except KeyboardInterrupt:
            # not the trial's fault: mark it interrupted so --resume runs the same architecture again
            trial.set_user_attr("interrupted", True)
            trial.set_user_attr("reason", "interrupted (Ctrl-C)")
            study.tell(trial, state=TrialState.FAIL)
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
            raise
        except Exception as exc:  # any failure of one candidate is recorded; the search goes on
            reason = failure_reason(exc)
            attrs = {"arch": arch.to_string(), "reason": reason, "seconds": round(time.perf_counter() - start, 3)}
            for key, value in attrs.items():
                trial.set_user_attr(key, value)
            row = record_trial(self.run, trial.number, arch, "FAIL", attrs, objective, error=exc)
            study.tell(trial, state=TrialState.FAIL)
        else:
            attrs = result_attrs(result) | {"arch": result.arch}
            for key, value in attrs.items():
                trial.set_user_attr(key, value)
            state = "PRUNED" if result.stopped_early else "COMPLETE"
            row = record_trial(self.run, trial.number, arch, state, attrs, objective, history=result.history)
            if state == "PRUNED":
                study.tell(trial, state=TrialState.PRUNED)
            else:
                study.tell(trial, objective.values(result.accuracy, result.step_ms, result.params, result.macs,
                                                   result.ref_step_ms))
        trials = study.get_trials(deepcopy=False)
        write_tables(self.run, trials, objective)
        progress.update(count_finished(trials), row, best_reward(trials, objective))


def trial_rows(trials: list[FrozenTrial], objective: Objective) -> list[dict[str, Any]]:
    rows = []
    for t in trials:
        if t.state in (TrialState.RUNNING, TrialState.WAITING) or t.user_attrs.get("surplus"):
            continue
        rows.append(make_row(t.number, t.state.name, t.user_attrs, objective))
    return rows


def best_reward(trials: list[FrozenTrial], objective: Objective) -> float | None:
    return base_best_reward(trial_rows(trials, objective))


def write_tables(run: RunDir, trials: list[FrozenTrial], objective: Objective) -> None:
    write_rows(run, trial_rows(trials, objective), objective)


# -- several worker processes ------------------------------------------------------------------
def _worker_main(run_path: str, settings: SearchSettings, budget: int, storage_url: str | None,
                 worker: int, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    OptunaSearch(RunDir(run_path), settings, budget, storage_url, worker, show_progress=False).run_worker()


def search(run: RunDir, settings: SearchSettings, budget: int, workers: int = 1,
           storage_url: str | None = None, show_progress: bool = True) -> None:
    """Run the search to its budget with `workers` processes (this one included)."""
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
        OptunaSearch(run, settings, budget, storage_url, 0, show_progress).run_worker()
    finally:
        for child in children:
            child.join()
    failed = [c.exitcode for c in children if c.exitcode not in (0, None)]
    if failed:
        print(f"nas: warning: {len(failed)} worker process(es) exited with errors {failed}", file=sys.stderr)
