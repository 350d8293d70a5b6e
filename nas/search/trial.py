"""The one trial function both backends call: build, count, time, proxy-train.

`evaluate(arch, settings, data)` returns a `TrialResult`; scoring against the reference is
the backend's job (`nas.spec.objective`), so a result can be re-scored without re-training.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from nas.measure.costs import StepTime, StepTimeCache, network_size
from nas.measure.device import device_name
from nas.measure.hardware import Hardware, fingerprint
from nas.measure.step_cost import step_cost
from nas.model import build
from nas.spec.arch import Arch
from nas.spec.objective import Reference
from nas.spec.settings import SearchSettings
from nas.training.data import Dataset
from nas.training.proxy import EpochCallback, ProxyRecipe, StateCallback, proxy_train

log = logging.getLogger(__name__)


@dataclass
class TrialResult:
    arch: str
    accuracy: float
    step_ms: float
    step_spread: float
    ref_step_ms: float
    hardware: str
    params: int
    macs: int
    epochs: int
    history: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0
    measure_seconds: float = 0.0
    device: str = ""
    stopped_early: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# what S and S_ref read when the objective does not use them: no number to mistake for a time
NOT_TIMED = StepTime(median_ms=math.nan, spread=math.nan, samples=0, min_ms=math.nan)


@dataclass(frozen=True)
class Costs:
    """What a trial measures before training, all of the full-size candidate: parameters, MACs
    at the space's resolution, S at the timing shape, and S_ref on the same hardware."""

    params: int
    macs: int
    step: StepTime
    ref_step: StepTime
    hardware: Hardware
    seconds: float


def full_size_counts(arch: Arch, resolution: int, data: Dataset) -> tuple[int, int]:
    """Parameters and multiply-adds of the full-size network (memoised per process)."""
    params, macs = network_size(arch, resolution, data.num_classes, data.in_channels)
    assert macs is not None  # asked for (macs=True)
    return params, macs


def measure_costs(arch: Arch, settings: SearchSettings, data: Dataset, device: torch.device,
                  cache: StepTimeCache | None = None) -> Costs:
    """Counts and S of the full-size `arch`, and S_ref of the space's reference timed the same way
    (neither is timed, both NaN, when the objective does not use S)."""
    start = time.perf_counter()
    params, macs = full_size_counts(arch, settings.space.resolution, data)
    if not settings.space.objective.uses_step_time:
        return Costs(params=params, macs=macs, step=NOT_TIMED, ref_step=NOT_TIMED, hardware=fingerprint(device),
                     seconds=time.perf_counter() - start)
    shape = settings.timing_shape(device, data.num_classes)
    repeats, method = settings.measure.repeats(), settings.measure.method
    reference = settings.space.reference
    ref_step = step_cost(reference, shape, device, repeats, method, cache)
    # the reference itself is timed once, not twice (without a cache the second would re-time it)
    step = ref_step if arch == reference else step_cost(arch, shape, device, repeats, method, cache)
    return Costs(params=params, macs=macs, step=step, ref_step=ref_step, hardware=fingerprint(device),
                 seconds=time.perf_counter() - start)


@dataclass
class Candidate:
    """A full-size architecture's proxy network (seeded weights) and its full-size costs, not yet trained."""

    arch: Arch
    model: torch.nn.Module
    costs: Costs
    device: torch.device


def prepare_candidate(arch: Arch, settings: SearchSettings, data: Dataset, device: torch.device,
                      cache: StepTimeCache | None = None) -> Candidate:
    """Build the proxy network of a full-size architecture (seeded weights) on `device` (the
    process resolves `settings.device` once) and measure the full-size costs."""
    torch.manual_seed(settings.seed)  # the same architecture starts from the same weights
    model = build(settings.space.proxy_arch(arch), num_classes=data.num_classes, in_channels=data.in_channels)
    return Candidate(arch, model, measure_costs(arch, settings, data, device, cache), device)


def train_candidate(
    candidate: Candidate,
    settings: SearchSettings,
    data: Dataset,
    on_epoch: EpochCallback | None = None,
    *,
    resume: dict[str, Any] | None = None,
    on_state: StateCallback | None = None,
) -> TrialResult:
    """Proxy-train a prepared candidate (optionally from a saved state, see `proxy_train`).
    Raises TrialError on divergence."""
    start = time.perf_counter()
    recipe = ProxyRecipe.from_proxy(settings.proxy, settings.seed)
    outcome = proxy_train(candidate.model, data, recipe, candidate.device, on_epoch=on_epoch, resume=resume,
                          on_state=on_state)
    costs = candidate.costs
    return TrialResult(
        arch=candidate.arch.to_string(),
        accuracy=outcome.accuracy,
        step_ms=costs.step.median_ms,
        step_spread=costs.step.spread,
        ref_step_ms=costs.ref_step.median_ms,
        hardware=costs.hardware.key(),
        params=costs.params,
        macs=costs.macs,
        epochs=len(outcome.history),
        history=outcome.history,
        train_seconds=time.perf_counter() - start,
        measure_seconds=costs.seconds,
        device=device_name(candidate.device),
        stopped_early=outcome.stopped_early,
    )


def evaluate(
    arch: Arch,
    settings: SearchSettings,
    data: Dataset,
    device: torch.device,
    on_epoch: EpochCallback | None = None,
    cache: StepTimeCache | None = None,
) -> TrialResult:
    """Proxy-evaluate one full-size architecture on `device`. Raises TrialError on divergence."""
    return train_candidate(prepare_candidate(arch, settings, data, device, cache), settings, data, on_epoch)


def measure_reference(settings: SearchSettings, data: Dataset, device: torch.device,
                      cache: StepTimeCache | None = None) -> Reference:
    """The reward's normalisers: the space's reference at full size, S_ref timed like every
    candidate, with the hardware fingerprint and timing shape it was measured at."""
    costs = measure_costs(settings.space.reference, settings, data, device, cache)
    return Reference(step_ms=costs.ref_step.median_ms, params=costs.params, macs=costs.macs,
                     hardware=costs.hardware.to_dict(),
                     shape=settings.timing_shape(device, data.num_classes).describe())


def warn_if_other_hardware(reference: Reference, device: torch.device) -> None:
    """Say once when this process times on other hardware than the run's reference.json."""
    if not reference.hardware:
        return
    here = fingerprint(device)
    differences = Hardware.from_dict(reference.hardware).differences(here)
    if differences:
        log.warning("this process times steps on other hardware than the run's reference (%s); its "
                    "candidates are compared with the reference timed here", "; ".join(differences))
