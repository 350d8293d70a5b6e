"""Scoring a trial: the training-aware reward, the MnasNet MACs reward, or Pareto values.

    reward (V2)  = acc * (S / S_ref)^w * (P / P_ref)^v     w = -0.07, v = -0.05
    reward (V1)  = acc * (MACs / T)^w                      T = 400M, w = -0.07
    pareto       = (acc up, S down), NSGA-II

S is the candidate's full-size training step at the run's timing shape (`nas.measure.step_cost`), P and
MACs are the full-size network's; S_ref and P_ref are the space's reference architecture's,
measured the same way on the same hardware (`Reference.hardware`). A trial timed on other
hardware carries its own S_ref (`ref_step_ms`), so S / S_ref always compares like with like.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from nas.spec.space import ObjectiveSpec


@dataclass(frozen=True)
class Reference:
    """The reference architecture's full-size costs (the reward's normalisers) and where S_ref
    was measured: the hardware fingerprint and the timing shape."""

    step_ms: float
    params: int
    macs: int
    hardware: dict[str, Any] = field(default_factory=dict)
    shape: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Reference:
        return cls(step_ms=float(data["step_ms"]), params=int(data["params"]), macs=int(data["macs"]),
                   hardware=dict(data.get("hardware") or {}), shape=str(data.get("shape", "")))


@dataclass(frozen=True)
class Objective:
    spec: ObjectiveSpec
    reference: Reference

    @property
    def directions(self) -> list[str]:
        if self.spec.kind == "pareto":
            return ["maximize", "minimize"]
        return ["maximize"]

    def cost_factor(self, step_ms: float, params: int, macs: int, ref_step_ms: float | None = None) -> float:
        """What multiplies accuracy in the reward: known before training, so pruners can use it."""
        if self.spec.kind == "macs":
            return (macs / self.spec.target_macs) ** self.spec.macs_weight
        return ((step_ms / (ref_step_ms or self.reference.step_ms)) ** self.spec.step_time_weight
                * (params / self.reference.params) ** self.spec.params_weight)

    def reward(self, accuracy: float, step_ms: float, params: int, macs: int,
               ref_step_ms: float | None = None) -> float:
        return accuracy * self.cost_factor(step_ms, params, macs, ref_step_ms)

    def values(self, accuracy: float, step_ms: float, params: int, macs: int,
               ref_step_ms: float | None = None) -> list[float]:
        """What the sampler optimises, in the order of `directions` (and what pruners judge)."""
        if self.spec.kind == "pareto":
            return [accuracy, step_ms]
        value = self.reward(accuracy, step_ms, params, macs, ref_step_ms)
        return [value if math.isfinite(value) else 0.0]
