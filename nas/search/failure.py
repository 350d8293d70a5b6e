"""How a trial ended: the one classifier every backend, the retraining and the scale search use.

- COMPLETE: trained to the end; the sampler gets the objective's values.
- PRUNED: stopped early by a pruner or ASHA; the sampler learns it was weak, not its partial score.
- FAIL: the candidate's own failure (divergence, out of memory, a bug it triggers); it counts
  toward the budget and is never retried.
- INTERRUPTED: not the candidate's fault (Ctrl-C, a dead worker or node, a CUDA error that
  poisons the process); it does not count, its architecture is queued again, and a poisoned
  worker stops so the retry runs elsewhere.

A trial is classified once, when it ends (`classify_error`, `worker_lost`); a stored trial is
read back by `is_interrupted`.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import Any

import torch
from optuna.trial import FrozenTrial, TrialState

from nas.spec.arch import Arch
from nas.spec.errors import TrialError

COMPLETE, PRUNED, FAIL, INTERRUPTED = "COMPLETE", "PRUNED", "FAIL", "INTERRUPTED"


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


def worker_lost(arch: Arch, failures: int, attempt: int, max_failures: int) -> Outcome:
    """A trial whose worker or node died (never the candidate's fault): interrupted and asked
    again while its attempts last, then failed so a trial that kills every worker ends."""
    state = INTERRUPTED if attempt <= max_failures else FAIL
    reason = f"its Ray worker or node died ({failures} tries)"
    return Outcome(state, {"arch": arch.to_string(),
                           "reason": ("interrupted: " if state == INTERRUPTED else "") + reason})


def failure_reason(exc: BaseException) -> str:
    """One line saying why a trial (or a step of the search) failed."""
    if isinstance(exc, TrialError):
        return str(exc)
    if isinstance(exc, torch.OutOfMemoryError):
        return "out of memory"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


# Messages of CUDA failures after which the process's CUDA context is unusable: every later
# kernel fails too, whatever the candidate. Out-of-memory is absent on purpose (the allocator
# recovers, and a too-large candidate is the candidate's own failure).
_POISON_MARKERS = (
    "illegal memory access",
    "device-side assert",
    "unspecified launch failure",
    "misaligned address",
    "illegal instruction",
    "uncorrectable ecc error",
    "launch timed out",
    "no cuda-capable device",
    "found no nvidia driver",
    "cuda driver initialization failed",
    "device has fallen off the bus",
    "cublas_status_execution_failed",
    "cudnn_status_execution_failed",
    "cuda error",  # any other error CUDA reported (e.g. a lost device): the context is suspect
)
_OOM_MARKERS = ("out of memory", "cublas_status_alloc_failed", "cudnn_status_alloc_failed")


def poisons_process(exc: BaseException) -> bool:
    """True when `exc` (or an exception it was raised from) is a CUDA failure that leaves this
    process unable to run any further candidate: an illegal memory access, a device-side assert,
    a lost device. Such a trial is not the candidate's fault: stop the worker, retry the trial
    elsewhere. Out-of-memory, divergence and ordinary errors are False (the candidate's own)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _poisons_alone(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _poisons_alone(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return False
    message = str(exc).lower()
    if any(marker in message for marker in _OOM_MARKERS):
        return False
    if isinstance(exc, getattr(torch, "AcceleratorError", ())):
        return True  # torch >= 2.8 raises CUDA runtime errors as this type
    return isinstance(exc, RuntimeError) and any(marker in message for marker in _POISON_MARKERS)


# the user attr marking a stored trial that ended for a reason not its own (it does not count)
INTERRUPTED_ATTR = "interrupted"


def is_interrupted(trial: FrozenTrial) -> bool:
    """Failed for a reason not its own: marked so, or failed by Optuna's heartbeat (no reason)."""
    if trial.state != TrialState.FAIL:
        return False
    return bool(trial.user_attrs.get(INTERRUPTED_ATTR)) or "reason" not in trial.user_attrs
