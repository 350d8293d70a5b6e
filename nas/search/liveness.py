"""Which RUNNING trials still have a live worker: heartbeats, not host:pid.

A process that owns trials beats for each of them every `interval` seconds from a thread; a
trial whose last beat is older than `grace` seconds is stale, whoever and wherever its owner
is (another machine, a container with a recycled hostname and pid, a frozen process).

- RDB storages have Optuna's own heartbeat (`RDBStorage(heartbeat_interval, grace_period)`):
  beats go through `record_heartbeat` and stale trials are failed by
  `optuna.storages.fail_stale_trials`, which calls the storage's stale-trial callback.
- Optuna's JournalStorage has none, so the beat is the trial's `heartbeat` user attribute (the
  beating process's clock, seconds since the epoch) and `stale_trials` judges it the same way.

A beat on a trial another process has already failed raises; the owner then knows it lost the
trial and drops its late result instead of counting it twice.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

HEARTBEAT_ATTR = "heartbeat"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Timing:
    """How often owners beat and how long a silent trial stays alive (seconds)."""

    interval: int = 10
    grace: int = 60

    @classmethod
    def from_env(cls) -> Timing:
        """NAS_HEARTBEAT_INTERVAL / NAS_HEARTBEAT_GRACE override the defaults (tests use seconds)."""
        interval = int(os.environ.get("NAS_HEARTBEAT_INTERVAL", cls.interval))
        grace = int(os.environ.get("NAS_HEARTBEAT_GRACE", max(cls.grace, 3 * interval)))
        return cls(max(1, interval), max(grace, 2 * max(1, interval)))


def uses_optuna_heartbeat(storage: BaseStorage) -> bool:
    return isinstance(storage, optuna.storages.RDBStorage) and storage.get_heartbeat_interval() is not None


def beat(storage: BaseStorage, trial_id: int) -> None:
    """One heartbeat of a trial this process owns; raises UpdateFinishedTrialError when lost."""
    if uses_optuna_heartbeat(storage):
        if storage.get_trial(trial_id).state.is_finished():
            raise optuna.exceptions.UpdateFinishedTrialError(f"trial {trial_id} was failed as stale")
        storage.record_heartbeat(trial_id)
    else:
        storage.set_trial_user_attr(trial_id, HEARTBEAT_ATTR, time.time())


def stale_trials(trials: list[FrozenTrial], timing: Timing, now: float | None = None) -> Iterator[FrozenTrial]:
    """RUNNING trials of a journal storage whose last beat is older than the grace period.

    A trial that never beat (its owner died between asking and the first beat) is judged by
    when it started.
    """
    now = time.time() if now is None else now
    for t in trials:
        if t.state != TrialState.RUNNING:
            continue
        last = t.user_attrs.get(HEARTBEAT_ATTR)
        if last is None and t.datetime_start is not None:
            last = t.datetime_start.timestamp()
        if last is None or now - float(last) > timing.grace:
            yield t


class Heartbeat:
    """A daemon thread beating for the trials this process owns."""

    def __init__(self, storage: BaseStorage, timing: Timing) -> None:
        self.storage = storage
        self.timing = timing
        self._owned: set[int] = set()
        self._lost: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nas-heartbeat", daemon=True)
        self._thread.start()

    def own(self, trial_id: int) -> None:
        """Beat now (the claim is live from here on) and from the thread from now on."""
        beat(self.storage, trial_id)
        with self._lock:
            self._owned.add(trial_id)

    def release(self, trial_id: int) -> None:
        with self._lock:
            self._owned.discard(trial_id)

    def lost(self, trial_id: int) -> bool:
        """Whether another process failed this trial as stale (found by a beat)."""
        with self._lock:
            return trial_id in self._lost

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.timing.interval + 5)

    def _run(self) -> None:
        while not self._stop.wait(self.timing.interval):
            with self._lock:
                owned = sorted(self._owned)
            for trial_id in owned:
                try:
                    beat(self.storage, trial_id)
                except optuna.exceptions.UpdateFinishedTrialError:
                    with self._lock:
                        self._lost.add(trial_id)
                        self._owned.discard(trial_id)
                except Exception as exc:  # a storage hiccup: the next beat tries again
                    log.warning("heartbeat of trial %s failed: %s", trial_id, exc)
