"""The one trial function both backends call: build, count, time, proxy-train.

`evaluate(arch, settings, data)` returns a `TrialResult`; scoring against the reference is
the backend's job (`nas.objective`), so a result can be re-scored without re-training.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from nas.arch import Arch
from nas.data import Dataset
from nas.device import device_name, resolve_device, step_dtype
from nas.measure import StepTime, StepTimeCache, count_macs, count_params, measure_step_time, step_time_key
from nas.model import build
from nas.objective import Reference
from nas.settings import SearchSettings
from nas.train import EpochCallback, StateCallback, proxy_train


@dataclass
class TrialResult:
    arch: str
    accuracy: float
    step_ms: float
    step_spread: float
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


@dataclass(frozen=True)
class Costs:
    """What a trial measures before training: counts and step time."""

    params: int
    macs: int
    step: StepTime
    seconds: float


def _time_step(model: torch.nn.Module, proxy_arch: Arch, settings: SearchSettings, data: Dataset,
               device: torch.device, steps: int) -> StepTime:
    """The space's step-time measurement of `model` at the proxy size and the data's shape."""
    return measure_step_time(model, batch=settings.measure_batch, resolution=proxy_arch.resolution,
                             in_channels=data.in_channels, num_classes=data.num_classes, device=device,
                             warmup=settings.measure.warmup, steps=steps)


def measure_costs(
    model: torch.nn.Module, proxy_arch: Arch, settings: SearchSettings, data: Dataset, device: torch.device,
    cache: StepTimeCache | None = None,
) -> Costs:
    """Counts and step time of `model` (timed on a copy, so its weights stay untouched)."""
    start = time.perf_counter()
    params = count_params(model)
    macs = count_macs(model, proxy_arch.resolution, data.in_channels)
    batch = settings.measure_batch
    key = step_time_key(proxy_arch.to_string(), device_name(device), batch, proxy_arch.resolution,
                        step_dtype(device), in_channels=data.in_channels, num_classes=data.num_classes)
    step = cache.get(key) if cache is not None else None
    if step is None:
        step = _time_step(model, proxy_arch, settings, data, device, settings.measure.steps)
        if cache is not None:
            cache.put(key, step)
    return Costs(params=params, macs=macs, step=step, seconds=time.perf_counter() - start)


@dataclass
class Candidate:
    """An architecture built at the proxy size (seeded weights), counted and timed, not yet trained."""

    arch: Arch
    model: torch.nn.Module
    costs: Costs
    device: torch.device


def prepare_candidate(arch: Arch, settings: SearchSettings, data: Dataset,
                      cache: StepTimeCache | None = None) -> Candidate:
    """Build and measure one full-size architecture at the proxy size."""
    device = resolve_device(settings.device)
    proxy_arch = settings.proxy.apply(arch)
    torch.manual_seed(settings.seed)  # the same architecture starts from the same weights
    model = build(proxy_arch, num_classes=data.num_classes, in_channels=data.in_channels)
    return Candidate(arch, model, measure_costs(model, proxy_arch, settings, data, device, cache), device)


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
    outcome = proxy_train(candidate.model, data, settings.recipe(), candidate.device, on_epoch=on_epoch,
                          resume=resume, on_state=on_state)
    costs = candidate.costs
    return TrialResult(
        arch=candidate.arch.to_string(),
        accuracy=outcome.accuracy,
        step_ms=costs.step.median_ms,
        step_spread=costs.step.spread,
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
    on_epoch: EpochCallback | None = None,
    cache: StepTimeCache | None = None,
) -> TrialResult:
    """Proxy-evaluate one full-size architecture. Raises TrialError on divergence."""
    return train_candidate(prepare_candidate(arch, settings, data, cache), settings, data, on_epoch)


def measure_reference(settings: SearchSettings, data: Dataset, cache: StepTimeCache | None = None) -> Reference:
    """The reward's normalisers: the space's reference at the proxy size, plus its full-size MACs."""
    device = resolve_device(settings.device)
    reference = settings.space.reference
    proxy_arch = settings.proxy.apply(reference)
    model = build(proxy_arch, num_classes=data.num_classes, in_channels=data.in_channels)
    # The first timing in a process pays one-off kernel set-up (seen: 490 ms cold vs 256 ms
    # warm); a throw-away pass keeps that out of the normaliser every reward divides by.
    _time_step(model, proxy_arch, settings, data, device, steps=2)
    costs = measure_costs(model, proxy_arch, settings, data, device, cache)
    full = build(reference, num_classes=data.num_classes, in_channels=data.in_channels)
    full_macs = count_macs(full, reference.resolution, data.in_channels)
    return Reference(step_ms=costs.step.median_ms, params=costs.params, macs=costs.macs, full_macs=full_macs)
