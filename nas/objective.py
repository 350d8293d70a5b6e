"""Scoring a trial: the training-aware reward, the MnasNet MACs reward, or Pareto values.

    reward (V2)  = acc * (S / S_ref)^w * (P / P_ref)^v     w = -0.07, v = -0.05
    reward (V1)  = acc * (MACs / T)^w                      T = 400M at full size, w = -0.07
    pareto       = (acc up, step time down), NSGA-II

S_ref, P_ref and the proxy-size T come from the space's reference architecture, measured in
the same run on the same hardware, so rewards are comparable only within a run.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from nas.space import ObjectiveSpec


@dataclass(frozen=True)
class Reference:
    """The reference architecture's proxy costs: the normalisers of the reward."""

    step_ms: float
    params: int
    macs: int
    full_macs: int

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Reference:
        return cls(**{k: data[k] for k in ("step_ms", "params", "macs", "full_macs")})


@dataclass(frozen=True)
class Objective:
    spec: ObjectiveSpec
    reference: Reference

    @property
    def directions(self) -> list[str]:
        if self.spec.kind == "pareto":
            return ["maximize", "minimize"]
        return ["maximize"]

    def target_macs(self) -> float:
        """T scaled to the proxy: the reference keeps its full-size ratio to T."""
        return self.spec.target_macs * self.reference.macs / self.reference.full_macs

    def reward(self, accuracy: float, step_ms: float, params: int, macs: int) -> float:
        if self.spec.kind == "macs":
            return accuracy * (macs / self.target_macs()) ** self.spec.macs_weight
        return (
            accuracy
            * (step_ms / self.reference.step_ms) ** self.spec.step_time_weight
            * (params / self.reference.params) ** self.spec.params_weight
        )

    def values(self, accuracy: float, step_ms: float, params: int, macs: int) -> list[float]:
        """What the sampler optimises, in the order of `directions`."""
        if self.spec.kind == "pareto":
            return [accuracy, step_ms]
        value = self.reward(accuracy, step_ms, params, macs)
        return [value if math.isfinite(value) else 0.0]
