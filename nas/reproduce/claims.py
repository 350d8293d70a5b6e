"""What the papers found, as measurable claims about a set of architectures, per target."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from nas.report.stats import (
    choice_frequencies,
    majority,
    stage_mean,
    stage_share,
)
from nas.spec.arch import Arch


# -- what the papers found -------------------------------------------------------------------
@dataclass(frozen=True)
class Claim:
    """One design finding of a paper, measured on a set of architectures."""

    text: str
    value: Callable[[Sequence[Arch]], float]
    holds: Callable[[Sequence[Arch], float], bool]
    show: Callable[[Sequence[Arch], float], str]
    # which speed ratio of the hardware precondition bears on it (nas.reproduce.precondition)
    hardware: str | None = None
    # True: a larger value shows the finding more strongly, so its p-value asks how often chance
    # reaches the observed value; False: it only asks how often chance shows the finding at all
    monotone: bool = True


def _early(n: int) -> range:
    return range(n // 2)


def _late(n: int) -> range:
    return range(n // 2, n)


def _middle(n: int) -> range:
    return range(1, n - 1) if n > 2 else range(n)


def _stages(archs: Sequence[Arch]) -> int:
    return min((len(a.stages) for a in archs), default=0)


def _share_text(_: Sequence[Arch], value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.0%}"


def _expansion_gap(archs: Sequence[Arch]) -> float:
    n = _stages(archs)
    return stage_mean(archs, _late(n), "expansion") - stage_mean(archs, _early(n), "expansion")


def _expansion_text(archs: Sequence[Arch], value: float) -> str:
    n = _stages(archs)
    if not archs:
        return "–"
    early, late = stage_mean(archs, _early(n), "expansion"), stage_mean(archs, _late(n), "expansion")
    return f"{early:.1f} early vs {late:.1f} later"


def _kernel_majorities(archs: Sequence[Arch]) -> list[Any]:
    return [majority(stage["kernel"])[0] for stage in choice_frequencies(archs, ("kernel",))]


def _kernel_mix_text(archs: Sequence[Arch], value: float) -> str:
    if not archs:
        return "–"
    fives = [i + 1 for i, k in enumerate(_kernel_majorities(archs)) if k == 5]
    return f"5×5 {value:.0%} of picks; mostly 5×5 in stages {fives or 'none'}"


V2_CLAIMS = (
    Claim("Fused-MBConv preferred in the early stages (first half)",
          lambda a: stage_share(a, _early(_stages(a)), lambda s: s.op == "fused_mbconv"),
          lambda a, v: v > 0.5, _share_text, hardware="early"),
    Claim("MBConv with SE preferred in the later stages (second half)",
          lambda a: stage_share(a, _late(_stages(a)), lambda s: s.op == "mbconv" and s.se > 0),
          lambda a, v: v > 0.5, _share_text, hardware="late"),
    Claim("smaller expansion ratios in the early stages", _expansion_gap, lambda a, v: v > 0, _expansion_text),
    Claim("3×3 kernels favoured (share of all stages)",
          lambda a: stage_share(a, range(_stages(a)), lambda s: s.kernel == 3), lambda a, v: v > 0.5, _share_text),
)
B0_CLAIMS = (
    Claim("a mix of 3×3 and 5×5 kernels across stages",
          lambda a: stage_share(a, range(_stages(a)), lambda s: s.kernel == 5),
          lambda a, v: {3, 5} <= set(_kernel_majorities(a)), _kernel_mix_text, monotone=False),
    Claim("expansion 6 in the middle stages (all but first and last)",
          lambda a: stage_share(a, _middle(_stages(a)), lambda s: s.expansion == 6),
          lambda a, v: v > 0.5, _share_text),
)


@dataclass(frozen=True)
class Target:
    name: str
    space: str
    objective: str
    paper: str
    claims: tuple[Claim, ...]
    cost: str  # the cost axis the paper traded accuracy against: step_ms or macs


TARGETS = {
    "v2s": Target("v2s", "v2", "reward", "EfficientNetV2-S (Tan & Le, 2021)", V2_CLAIMS, "step_ms"),
    "b0": Target("b0", "v1", "macs", "EfficientNet-B0 (Tan & Le, 2019; MnasNet search)", B0_CLAIMS, "macs"),
}


