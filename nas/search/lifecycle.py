"""The trial lifecycle, written once for every backend:

    claim (the study) -> sample -> attempt -> finish_trial: conclude -> tables -> progress

`attempt` measures and proxy-trains one candidate and turns every way it can end into an
`Outcome` (`nas.search.failure` classifies); `conclude` tells the sampler and writes the trial's
folder; `finish_trial` also rewrites the run's tables and reports progress. The Optuna workers
and the Ray driver call `finish_trial`; `nas scale --search` and the retraining, which keep no
study, call `attempt` or `classify_error` and keep their own tables.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from nas.measure.costs import StepTimeCache
from nas.search.base import best_reward, record_trial, result_attrs
from nas.search.failure import COMPLETE, FAIL, INTERRUPTED, PRUNED, Outcome, classify_error
from nas.search.progress import SearchProgress
from nas.search.study import RunStudy, count_finished, write_tables
from nas.search.trial import Costs, prepare_candidate, train_candidate
from nas.spec.arch import Arch
from nas.spec.objective import Objective
from nas.spec.settings import SearchSettings
from nas.training.data import Dataset
from nas.training.proxy import EpochCallback, StateCallback

log = logging.getLogger(__name__)


def attempt(arch: Arch, settings: SearchSettings, data: Dataset, device: torch.device,
            cache: StepTimeCache | None = None,
            on_epoch: EpochCallback | None = None, *, resume: dict[str, Any] | None = None,
            on_state: StateCallback | None = None, on_costs: Any = None) -> Outcome:
    """Measure and proxy-train one candidate; every way it can end becomes an Outcome.

    `on_costs(costs)` runs once the full-size costs are known, before training (pruning judges
    the objective, which needs them).
    """
    start = time.perf_counter()
    try:
        candidate = prepare_candidate(arch, settings, data, device, cache)
        costs: Costs = candidate.costs
        if on_costs is not None:
            on_costs(costs)
        result = train_candidate(candidate, settings, data, on_epoch, resume=resume, on_state=on_state)
    except (Exception, KeyboardInterrupt) as exc:  # any failure of one candidate is an outcome
        return classify_error(exc, arch, time.perf_counter() - start)
    attrs = result_attrs(result) | {"arch": result.arch}
    return Outcome(PRUNED if result.stopped_early else COMPLETE, attrs, history=result.history)


def values_of(attrs: dict[str, Any], objective: Objective) -> list[float]:
    return objective.values(attrs["accuracy"], attrs["step_ms"], attrs["params"], attrs["macs"],
                            attrs.get("ref_step_ms"))


def conclude(rs: RunStudy, number: int, arch: Arch, outcome: Outcome, objective: Objective,
             extra: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """Tell the study how trial `number` ended and write trials/<n>/; returns its row.

    None when nothing was counted: the trial was interrupted (queued again), or it had been
    failed as stale meanwhile (a frozen worker's late result is dropped, not counted twice).
    """
    if outcome.state == INTERRUPTED:
        rs.interrupt(number, outcome.reason, retry=True)
        return None
    attrs = dict(outcome.attrs)
    attrs.setdefault("arch", arch.to_string())
    if outcome.state == FAIL:
        attrs.setdefault("reason", "failed")
    try:
        rs.set_attrs(number, attrs)
    except optuna.exceptions.UpdateFinishedTrialError:
        log.warning("trial %d was failed as stale while it ran; its result is dropped", number)
        rs.heartbeat.release(rs.trial_id(number))
        return None
    row = record_trial(rs.run, number, arch, outcome.state, attrs, objective, history=outcome.history,
                       traceback_text=outcome.traceback, extra=extra)
    try:
        if outcome.state == COMPLETE:
            rs.study.tell(number, values_of(attrs, objective))
        else:
            rs.study.tell(number, state=TrialState[outcome.state])
    except (optuna.exceptions.UpdateFinishedTrialError, ValueError, RuntimeError) as exc:
        log.warning("trial %d was failed as stale just before it finished (%s); its result is dropped", number, exc)
        return None
    finally:
        rs.heartbeat.release(rs.trial_id(number))
    return row


def finish_trial(rs: RunStudy, number: int, arch: Arch, outcome: Outcome, objective: Objective,
                 progress: SearchProgress, extra: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The end of every search trial: conclude it, rewrite the run's tables, report progress;
    returns its row (None when nothing was counted, as `conclude`)."""
    row = conclude(rs, number, arch, outcome, objective, extra=extra)
    rows = write_tables(rs.run, rs.study, objective)
    if row is not None:
        progress.trial(count_finished(rs.trials()), row, best_reward(rows))
    return row

