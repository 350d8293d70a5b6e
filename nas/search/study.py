"""The run's Optuna study: the one ledger of trials for every backend.

Both backends open the same storage (the run's journal file, or an RDB URL) and study name, ask
trials from it, and tell it every outcome, so a run reads the same in `nas show`, `nas report`
and Optuna's own tools whichever backend made it. This module owns what they share:

- opening the storage (with heartbeats, see `nas.search.liveness`) and the study;
- claiming the next trial under the run lock: fail stale trials (and queue their architecture
  again), enqueue the reference first, enforce the run's total budget in the storage;
- the budget's count (`is_finished`), the result tables written from the storage under the
  run lock, and the reference measured once per run.
"""

from __future__ import annotations

import json
import os
import socket
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import optuna
from optuna.storages import BaseStorage, JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from nas.records.file_lock import FileLock, file_lock
from nas.records.runs import RunDir
from nas.search.base import make_row, write_rows
from nas.search.failure import INTERRUPTED_ATTR, failure_reason, is_interrupted
from nas.search.liveness import Heartbeat, Timing, stale_trials, uses_optuna_heartbeat
from nas.spec.errors import RunError
from nas.spec.objective import Objective, Reference
from nas.spec.settings import SearchSettings

STUDY_NAME = "nas"
# who ran a trial, for people reading the run (liveness never looks at it)
WORKER = f"{socket.gethostname()}:{os.getpid()}"
optuna.logging.set_verbosity(optuna.logging.WARNING)


# -- storage and study ---------------------------------------------------------------------------
def open_storage(run: RunDir, url: str | None = None, timing: Timing | None = None) -> BaseStorage:
    """The run's storage: its journal file, or the RDB at `url` with Optuna's heartbeat."""
    if url:
        timing = timing or Timing.from_env()
        return optuna.storages.RDBStorage(url, heartbeat_interval=timing.interval, grace_period=timing.grace,
                                          heartbeat_stale_trial_callback=_requeue_stale)
    journal = str(run.journal_path.resolve())
    # a flock, which the kernel drops when its holder dies (Optuna's default symlink lock can be
    # left behind by a SIGKILL and then stalls every later process)
    return JournalStorage(JournalFileBackend(journal, lock_obj=FileLock(journal + ".flock")))


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)


def make_pruner(settings: SearchSettings, objective: Objective) -> optuna.pruners.BasePruner:
    """Optuna's median pruner judging the objective (it cannot prune multi-objective studies)."""
    if settings.pruner == "median" and len(objective.directions) == 1:
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)
    return optuna.pruners.NopPruner()


@contextmanager
def run_lock(run: RunDir) -> Iterator[None]:
    """The run's lock across processes of this machine (claims, the reference, the tables)."""
    with run.writable(), file_lock(run.path / ".claim.lock"):
        yield


class RunStudy:
    """The study of one run as one process sees it, with the heartbeat of the trials it owns."""

    def __init__(self, run: RunDir, study: optuna.Study, storage: BaseStorage, timing: Timing) -> None:
        self.run = run
        self.study = study
        self.storage = storage
        self.timing = timing
        self.study_id = storage.get_study_id_from_name(STUDY_NAME)
        self.heartbeat = Heartbeat(storage, timing)

    @classmethod
    def open(cls, run: RunDir, settings: SearchSettings, objective: Objective, storage_url: str | None = None,
             seed_offset: int = 0, pruner: optuna.pruners.BasePruner | None = None) -> RunStudy:
        timing = Timing.from_env()
        for attempt in range(3):
            try:
                storage = open_storage(run, storage_url, timing)
                # Under the run lock: two processes creating an RDB schema at once collide.
                with run_lock(run):
                    study = optuna.create_study(
                        storage=storage, study_name=STUDY_NAME, directions=objective.directions,
                        sampler=make_sampler(settings.sampler, settings.seed + seed_offset),
                        pruner=pruner if pruner is not None else make_pruner(settings, objective),
                        load_if_exists=True,
                    )
                return cls(run, study, storage, timing)
            except Exception as exc:  # storage backends raise many kinds; all mean "cannot open"
                if attempt == 2:
                    raise RunError(f"cannot open the study storage of run {run.name}: {failure_reason(exc)}") from None
                time.sleep(1.0 + attempt)  # a worker on another machine may be creating the schema
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.heartbeat.close()

    def trials(self) -> list[FrozenTrial]:
        return self.study.get_trials(deepcopy=False)

    def trial_id(self, number: int) -> int:
        return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)

    def set_attrs(self, number: int, attrs: dict[str, Any]) -> None:
        """User attributes of a trial (raises UpdateFinishedTrialError once it is finished)."""
        trial_id = self.trial_id(number)
        for key, value in attrs.items():
            self.storage.set_trial_user_attr(trial_id, key, value)

    # -- claiming --------------------------------------------------------------------------
    def claim(self, budget: int, reference_params: dict[str, Any] | None) -> optuna.Trial | None:
        """Under the run lock: fail stale trials, enqueue the reference, ask the next trial if the
        budget has room (finished + running < budget). None when it has none."""
        with run_lock(self.run):
            self.fail_stale()
            trials = self.trials()
            if not trials and reference_params is not None:
                self.study.enqueue_trial(reference_params, user_attrs={"reference": True})
                trials = self.trials()
            running = sum(t.state == TrialState.RUNNING for t in trials)
            if count_finished(trials) + running >= budget:
                return None
            trial = self.study.ask()
            self.heartbeat.own(self.trial_id(trial.number))
            trial.set_user_attr("worker", WORKER)
        # The lock above covers processes on this machine only. Storages number trials
        # atomically, so a trial ranked at or past the budget among the live ones (workers on
        # other machines sharing an RDB storage raced us) is given up before it runs.
        ahead = sum(1 for t in self.trials() if t.number < trial.number and not is_interrupted(t))
        if ahead >= budget:
            self.interrupt(trial.number, "surplus (another worker claimed the budget's last trial)",
                           retry=False, extra={"surplus": True})
            return None
        return trial

    def budget_met(self, budget: int) -> bool:
        return count_finished(self.trials()) >= budget

    def fail_stale(self) -> None:
        """Fail the RUNNING trials whose owner stopped beating, and queue their architectures again."""
        if uses_optuna_heartbeat(self.storage):
            with warnings.catch_warnings():  # "experimental" since Optuna 2.9, and what RDB users call
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(self.study)  # calls _requeue_stale for each
            return
        for t in list(stale_trials(self.trials(), self.timing)):
            self.interrupt(t.number, "interrupted (worker stopped beating)", retry=True, frozen=t)

    def interrupt(self, number: int, reason: str, retry: bool, frozen: FrozenTrial | None = None,
                  extra: dict[str, Any] | None = None) -> bool:
        """Fail a trial that ended for a reason not its own (it does not count toward the budget)
        and, with `retry`, queue its architecture again. False when it had already finished."""
        trial_id = self.trial_id(number)
        frozen = frozen or self.storage.get_trial(trial_id)
        try:
            self.set_attrs(number, {INTERRUPTED_ATTR: True, "reason": reason, **(extra or {})})
            self.study.tell(number, state=TrialState.FAIL)
        except (optuna.exceptions.UpdateFinishedTrialError, ValueError, RuntimeError):
            return False  # another process failed or finished it first
        finally:
            self.heartbeat.release(trial_id)
        if retry:
            requeue(self.study, frozen)
        return True


def requeue(study: optuna.Study, trial: FrozenTrial) -> None:
    """Ask the interrupted trial's architecture again; a trial killed mid-sampling has only part
    of its parameters (no `arch` yet) and is not retried."""
    if "arch" in trial.user_attrs:
        attempts = int(trial.user_attrs.get("attempt", 1))
        user_attrs = {"retry_of": trial.number, "attempt": attempts + 1}
        if trial.user_attrs.get("checkpoint"):
            user_attrs["checkpoint"] = trial.user_attrs["checkpoint"]
        study.enqueue_trial(trial.params, user_attrs=user_attrs)


def _requeue_stale(study: optuna.Study, trial: FrozenTrial) -> None:
    """Optuna's stale-trial callback (RDB heartbeat): the trial is FAIL already; without a
    `reason` it does not count toward the budget (see `is_finished`)."""
    requeue(study, trial)


# -- the budget's count ---------------------------------------------------------------------------
def is_finished(trial: FrozenTrial) -> bool:
    """Counts toward the budget: complete, pruned, or failed for a reason of its own."""
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and not is_interrupted(trial)


def count_finished(trials: list[FrozenTrial]) -> int:
    return sum(is_finished(t) for t in trials)


# -- tables ----------------------------------------------------------------------------------------
def trial_rows(trials: list[FrozenTrial], objective: Objective) -> list[dict[str, Any]]:
    """results.csv's rows: every finished trial in the storage (surplus claims left out)."""
    rows = []
    for t in trials:
        if not t.state.is_finished() or t.user_attrs.get("surplus"):
            continue
        attrs = dict(t.user_attrs)
        if t.state == TrialState.FAIL and "reason" not in attrs:
            attrs["reason"] = "interrupted (worker stopped beating)"
        rows.append(make_row(t.number, t.state.name, attrs, objective))
    return rows


def write_tables(run: RunDir, study: optuna.Study, objective: Objective) -> list[dict[str, Any]]:
    """results.csv, best.yaml (pareto.csv) from the storage, under the run lock: whoever writes
    last writes what the storage holds then, never an older view."""
    with run_lock(run):
        rows = trial_rows(study.get_trials(deepcopy=False), objective)
        write_rows(run, rows, objective)
    return rows


# -- the reference ---------------------------------------------------------------------------------
def run_reference(run: RunDir, measure: Callable[[], Reference],
                  on_existing: Callable[[Reference], None] | None = None) -> Reference:
    """The reward's normalisers: measured once per run (by whichever process comes first, under
    the run lock) and read back from reference.json by every other process and resume."""
    with run_lock(run):
        if run.reference_path.is_file():
            ref = Reference.from_dict(json.loads(run.reference_path.read_text()))
            if on_existing is not None:
                on_existing(ref)
            return ref
        ref = measure()
        from nas.records.runs import atomic_write

        atomic_write(run.reference_path, json.dumps(ref.to_dict(), indent=2) + "\n")
        return ref
