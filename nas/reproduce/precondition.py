"""The hardware precondition of the V2 findings: does this device train Fused-MBConv early faster?

EfficientNetV2's Table 3 (EfficientNet-B4 on a V100, training img/s) has four rows: no stage
fused 155, stages 1-3 fused 216, stages 1-5 fused 223, every stage fused 206. Those speeds are
why the training-aware search prefers fused early stages and MBConv later; on a device where
they do not hold, a search that rewards step time has no reason to find those designs. So before
judging the findings, the same four rows are measured here: the space's reference with no stage
fused, the first half fused (stages 1-3 of V2-S), the first five (all but the last of a shorter
network), and every stage fused, each the whole full-size network at the timing shape the
search uses on this device, timed by `nas.measure.costs` in interleaved rounds so a drift in machine
load touches every variant alike.
"""

from __future__ import annotations

import json
import math
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import scipy.stats

from nas.records.runs import atomic_write
from nas.spec.arch import Arch
from nas.spec.timing import Repeats, TimingShape

if TYPE_CHECKING:
    import torch

PRECONDITION_FILE = "precondition.json"
VARIANTS = ("none", "early", "most", "all")
VARIANT_WORDS = {"none": "no stage fused", "early": "first half fused", "most": "stages 1–5 fused",
                 "all": "every stage fused"}
# the paper's Table 3 (EfficientNet-B4, V100, training img/s), one number per variant
PAPER_IMG_S = {"none": 155.0, "early": 216.0, "most": 223.0, "all": 206.0}
ALPHA = 0.05  # a speed difference counts when its 95% interval excludes 1


def fused_stage_counts(stages: int) -> dict[str, int]:
    """How many leading stages each variant fuses: none, the first half (the findings' "early
    stages"), the first five as in Table 3 (all but the last where there are fewer than six), all."""
    return {"none": 0, "early": stages // 2, "most": min(5, max(stages - 1, stages // 2)), "all": stages}


def fused_variants(reference: Arch) -> dict[str, Arch]:
    """The reference with only the stage operators switched (`fused_stage_counts`): the leading
    stages Fused-MBConv, the rest MBConv; kernels, expansions, SE and layers unchanged."""
    def with_ops(fused: int, label: str) -> Arch:
        stages = tuple(replace(s, op="fused_mbconv" if i < fused else "mbconv") for i, s in enumerate(reference.stages))
        return reference.with_(stages=stages, name=f"{reference.name or 'reference'}-fused-{label}")

    return {label: with_ops(count, label) for label, count in fused_stage_counts(len(reference.stages)).items()}


def variant_words(variant: str, stages: int | None = None) -> str:
    """A variant in words; with the network's stage count, the stages it fuses."""
    count = fused_stage_counts(stages).get(variant) if stages else None
    if count is None or variant in ("none", "all"):
        return VARIANT_WORDS[variant]
    return f"stages 1–{count} fused" if count > 1 else "stage 1 fused"


# -- the numbers -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Ratio:
    """Training throughput of variant `a` over variant `b` (>1: `a` is faster), from the
    per-round ratios: geometric mean, its 95% t-interval and the p-value of "no difference"."""

    a: str
    b: str
    value: float
    low: float
    high: float
    pvalue: float
    rounds: int

    def faster(self) -> bool | None:
        """True / False when `a` is faster / slower beyond the spread; None when neither can be said."""
        if self.rounds < 3 or not self.pvalue < ALPHA:
            return None
        return self.value > 1.0

    def text(self) -> str:
        interval = (f", 95% CI {self.low:.2f}–{self.high:.2f}, p = {_p(self.pvalue)}"
                    if self.rounds >= 3 and math.isfinite(self.low) else f"; {self.rounds} rounds: a direction only")
        return f"{self.value:.2f}×{interval}"


def ratio(a: str, b: str, step_ms: dict[str, Sequence[float]]) -> Ratio:
    """Throughput ratio a ÷ b = step time b ÷ a, per round (the rounds are paired: interleaved)."""
    logs = [math.log(tb / ta) for ta, tb in zip(step_ms[a], step_ms[b], strict=True)]
    n = len(logs)
    mean = statistics.fmean(logs) if logs else math.nan
    if n < 3:
        return Ratio(a, b, math.exp(mean) if n else math.nan, math.nan, math.nan, math.nan, n)
    if statistics.pstdev(logs) == 0.0:  # identical rounds: no spread to test against
        return Ratio(a, b, math.exp(mean), math.exp(mean), math.exp(mean), 0.0 if mean else 1.0, n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        test = scipy.stats.ttest_1samp(logs, 0.0)
        interval = test.confidence_interval(1 - ALPHA)
    return Ratio(a, b, math.exp(mean), math.exp(interval.low), math.exp(interval.high), float(test.pvalue), n)


@dataclass(frozen=True)
class Precondition:
    """The ablation's measurements: per variant the step time of every round, plus counts."""

    shape: str
    batch: int
    hardware: dict[str, Any]
    reference: str
    archs: dict[str, str]
    step_ms: dict[str, list[float]]
    params: dict[str, int]
    macs: dict[str, int]
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def rounds(self) -> int:
        return min((len(v) for v in self.step_ms.values()), default=0)

    @property
    def variants(self) -> tuple[str, ...]:
        """The variants measured, in Table 3's order (a measurement before the four rows has three)."""
        return tuple(v for v in VARIANTS if v in self.step_ms)

    @property
    def stages(self) -> int:
        return len(Arch.from_string(self.archs["none"]).stages) if "none" in self.archs else 0

    def median_ms(self, variant: str) -> float:
        return statistics.median(self.step_ms[variant])

    def iqr_ms(self, variant: str) -> tuple[float, float]:
        values = self.step_ms[variant]
        if len(values) < 2:
            return values[0], values[0]
        q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
        return q1, q3

    def img_s(self, variant: str) -> float:
        return self.batch * 1000.0 / self.median_ms(variant)

    def ratio(self, a: str, b: str) -> Ratio:
        return ratio(a, b, self.step_ms)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Precondition:
        return cls(**{k: data[k] for k in ("shape", "batch", "hardware", "reference", "archs", "step_ms", "params",
                                           "macs")}, seconds=float(data.get("seconds", 0.0)),
                   notes=list(data.get("notes", [])))


def measure_precondition(reference: Arch, shape: TimingShape, device: torch.device, repeats: Repeats,
                         resolution: int, rounds: int = 5,
                         on_round: Callable[[int, dict[str, float]], None] | None = None) -> Precondition:
    """Time the four variants' whole full-size networks at `shape`, `rounds` times, interleaved
    (each round starts at another variant, so none always goes first); counts at `resolution`."""
    # the measurement alone needs torch: reports read precondition.json without it
    from nas.measure.costs import measure_step_time, network_size
    from nas.measure.hardware import fingerprint
    from nas.measure.step_cost import timing_arch
    from nas.model import build

    start = time.perf_counter()
    variants = {k: timing_arch(a) for k, a in fused_variants(reference).items()}
    models = {k: build(a, num_classes=shape.num_classes, in_channels=shape.in_channels) for k, a in variants.items()}
    params, macs = {}, {}
    for key, arch in variants.items():
        params[key], macs[key] = network_size(arch, resolution, shape.num_classes, shape.in_channels)
    step_ms: dict[str, list[float]] = {k: [] for k in VARIANTS}
    for r in range(rounds):
        order = VARIANTS[r % len(VARIANTS):] + VARIANTS[:r % len(VARIANTS)]
        for key in order:
            step = measure_step_time(models[key], batch=shape.batch, resolution=shape.resolution,
                                     in_channels=shape.in_channels, num_classes=shape.num_classes, device=device,
                                     repeats=repeats)
            step_ms[key].append(step.median_ms)
        if on_round is not None:
            on_round(r + 1, {k: v[-1] for k, v in step_ms.items()})
    return Precondition(shape=shape.describe(), batch=shape.batch, hardware=fingerprint(device).to_dict(),
                        reference=reference.name or reference.to_string(),
                        archs={k: a.to_string() for k, a in variants.items()}, step_ms=step_ms, params=params,
                        macs=macs, seconds=round(time.perf_counter() - start, 1))


# the throughput ratios a report shows, each beside the paper's
RATIOS = (("early", "none"), ("most", "none"), ("all", "none"), ("early", "all"))
VARIANT_COLUMNS = ["variant", "step ms", "IQR ms", "img/s", "params", "MACs", "paper img/s (B4, V100)"]
RATIO_COLUMNS = ["ratio", "this device", "paper (B4, V100)"]


def paper_ratio(a: str, b: str) -> str:
    return f"{PAPER_IMG_S[a] / PAPER_IMG_S[b]:.2f}×"


def variant_rows(found: Precondition) -> list[list[str]]:
    """One row per measured variant (`VARIANT_COLUMNS`), for the report and the benchmark."""
    rows = []
    for v in found.variants:
        q1, q3 = found.iqr_ms(v)
        rows.append([variant_words(v, found.stages), f"{found.median_ms(v):.1f}", f"{q1:.1f}–{q3:.1f}",
                     f"{found.img_s(v):.1f}", f"{found.params[v]:,}", f"{found.macs[v]:,}", f"{PAPER_IMG_S[v]:.0f}"])
    return rows


def ratio_rows(found: Precondition) -> list[list[str]]:
    """Throughput ratios with their intervals (`RATIO_COLUMNS`), each beside the paper's."""
    return [[f"{variant_words(a, found.stages)} ÷ {variant_words(b, found.stages)}", found.ratio(a, b).text(),
             paper_ratio(a, b)] for a, b in RATIOS if a in found.step_ms and b in found.step_ms]


def save_precondition(folder: Path, found: Precondition) -> None:
    atomic_write(Path(folder) / PRECONDITION_FILE, json.dumps(found.to_dict(), indent=1) + "\n")


def load_precondition(folder: Path) -> Precondition | None:
    path = Path(folder) / PRECONDITION_FILE
    if not path.is_file():
        return None
    return Precondition.from_dict(json.loads(path.read_text()))


# -- what the findings can be expected to show ---------------------------------------------------
@dataclass(frozen=True)
class Expectation:
    """Whether this device gives a step-time search a reason to find a design: True (it is
    faster here beyond the spread), False (it is not), None (this ablation does not bear on it)."""

    expected: bool | None
    text: str


# which ratio bears on which finding (claims name it by `Claim.hardware`)
EXPECTATION_RATIOS = {
    "early": ("early", "none", "fused early"),  # Fused-MBConv in the early stages
    "late": ("early", "all", "MBConv later"),  # MBConv (not fused) in the later stages
}


def expectation(found: Precondition | None, key: str | None) -> Expectation:
    """The hardware verdict a finding is judged with (`key`: a `Claim.hardware` name)."""
    if key is None:
        return Expectation(None, "not a speed finding: this ablation does not bear on it")
    if found is None:
        return Expectation(None, "hardware precondition not measured")
    a, b, words = EXPECTATION_RATIOS[key]
    r = found.ratio(a, b)
    faster = r.faster()
    if faster:
        return Expectation(True, f"expected on this device ({words} is {r.value:.2f}× as fast here)")
    if faster is None and r.rounds < 3:
        return Expectation(None, f"hardware: {words} is {r.value:.2f}× here, {r.rounds} rounds: a direction only")
    how = "not faster beyond the spread" if faster is None else "slower"
    return Expectation(False, f"not expected on this device ({words} is {r.value:.2f}× here, {how})")


def _p(p: float) -> str:
    return "–" if math.isnan(p) else f"{p:.2g}"
