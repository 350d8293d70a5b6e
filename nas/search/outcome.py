"""How a trial ended, and the one place that tells the sampler and records it.

Every backend (Optuna workers, the Ray driver, `nas scale --search`) runs a candidate through
`attempt` and hands the `Outcome` to `conclude`:

- COMPLETE: trained to the end; the sampler gets the objective's values.
- PRUNED: stopped early by a pruner or ASHA; the sampler learns it was weak, not its partial score.
- FAIL: the candidate's own failure (divergence, out of memory, a bug it triggers); it counts
  toward the budget and is never retried.
- INTERRUPTED: not the candidate's fault (Ctrl-C, a dead worker or node, a CUDA error that
  poisons the process); it does not count, its architecture is queued again, and a poisoned
  worker stops so the retry runs elsewhere.
"""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from nas.arch import Arch
from nas.data import Dataset
from nas.device import poisons_process
from nas.measure import StepTimeCache
from nas.objective import Objective
from nas.search.base import failure_reason, record_trial, result_attrs
from nas.search.study import RunStudy
from nas.search.trial import Costs, prepare_candidate, train_candidate
from nas.settings import SearchSettings
from nas.train import EpochCallback, StateCallback

COMPLETE, PRUNED, FAIL, INTERRUPTED = "COMPLETE", "PRUNED", "FAIL", "INTERRUPTED"
log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """A trial's end: its state, the attributes its row is made of, and why it failed if it did."""

    state: str
    attrs: dict[str, Any] = field(default_factory=dict)  # arch, METRIC_KEYS, reason
    history: list[dict[str, float]] = field(default_factory=list)
    error: BaseException | None = None
    traceback: str = ""
    poisoned: bool = False  # the process that ran it must stop (its CUDA context is broken)

    @property
    def reason(self) -> str:
        return str(self.attrs.get("reason", ""))

    def to_report(self) -> dict[str, Any]:
        """Plain data, for a trial that ran in another process (Ray)."""
        return {"state": self.state, "attrs": self.attrs, "history": self.history, "traceback": self.traceback,
                "poisoned": self.poisoned}

    @classmethod
    def from_report(cls, report: dict[str, Any]) -> Outcome:
        return cls(state=report["state"], attrs=dict(report.get("attrs") or {}),
                   history=[h for h in report.get("history") or [] if isinstance(h, dict)],
                   traceback=report.get("traceback") or "", poisoned=bool(report.get("poisoned")))


def classify_error(exc: BaseException, arch: Arch, seconds: float) -> Outcome:
    """The outcome of a trial that raised."""
    attrs: dict[str, Any] = {"arch": arch.to_string(), "seconds": round(seconds, 3)}
    if isinstance(exc, KeyboardInterrupt):
        return Outcome(INTERRUPTED, dict(attrs, reason="interrupted (Ctrl-C)"), error=exc)
    text = "".join(traceback.format_exception(exc))
    if poisons_process(exc):
        return Outcome(INTERRUPTED, dict(attrs, reason=f"interrupted (the worker's device failed: "
                                                          f"{failure_reason(exc)})"),
                       error=exc, traceback=text, poisoned=True)
    return Outcome(FAIL, dict(attrs, reason=failure_reason(exc)), error=exc, traceback=text)


def attempt(arch: Arch, settings: SearchSettings, data: Dataset, cache: StepTimeCache | None = None,
            on_epoch: EpochCallback | None = None, *, resume: dict[str, Any] | None = None,
            on_state: StateCallback | None = None, on_costs: Any = None) -> Outcome:
    """Measure and proxy-train one candidate; every way it can end becomes an Outcome.

    `on_costs(costs)` runs once the full-size costs are known, before training (pruning judges
    the objective, which needs them).
    """
    start = time.perf_counter()
    try:
        candidate = prepare_candidate(arch, settings, data, cache)
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
