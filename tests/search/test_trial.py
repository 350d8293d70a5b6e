"""The trial's costs: full-size counts, S and S_ref by the table, per hardware fingerprint."""

from __future__ import annotations

import logging
import math

import torch

from nas.measure.costs import StepTimeCache, count_macs, count_params
from nas.measure.hardware import fingerprint
from nas.model import build
from nas.search.trial import measure_costs, measure_reference, warn_if_other_hardware
from nas.spec.objective import Reference
from nas.spec.settings import SearchSettings
from nas.spec.space import SearchSpace
from nas.training.data import load_dataset

CPU = torch.device("cpu")


def _setup():
    settings = SearchSettings(space=SearchSpace.load("tiny"), device="cpu")
    data = load_dataset("digits", resolution=settings.proxy.resolution)
    return settings, data


def test_costs_are_the_full_size_candidates(tmp_path) -> None:
    settings, data = _setup()
    arch = settings.space.reference.with_(width=1.5)  # a full size the proxy does not train
    costs = measure_costs(arch, settings, data, CPU, StepTimeCache(tmp_path / "steps.json"))
    full = build(arch, num_classes=data.num_classes, in_channels=data.in_channels)
    assert costs.params == count_params(full)
    assert costs.macs == count_macs(full, settings.space.resolution, data.in_channels)
    assert costs.step.median_ms > 0 and costs.ref_step.median_ms > 0
    assert costs.hardware == fingerprint(CPU)
    ref = measure_reference(settings, data, CPU, StepTimeCache(tmp_path / "steps.json"))
    assert ref.step_ms == costs.ref_step.median_ms  # the same table entries, read back
    assert ref.hardware == fingerprint(CPU).to_dict() and "batch 8" in ref.shape


def test_other_hardware_times_its_own_reference_and_says_so(tmp_path, caplog) -> None:
    settings, data = _setup()
    cache = StepTimeCache(tmp_path / "steps.json")
    here = measure_reference(settings, data, CPU, cache)
    entries = len(cache)
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)  # another thread count is other hardware
    try:
        with caplog.at_level(logging.WARNING, logger="nas.search.trial"):
            warn_if_other_hardware(here, CPU)
        costs = measure_costs(settings.space.reference, settings, data, CPU, cache)
    finally:
        torch.set_num_threads(threads)
    assert f"threads: {threads} -> {threads + 1}" in caplog.text
    assert costs.hardware.threads == threads + 1
    assert len(cache) == 2 * entries  # timed again there, not read from this machine's entries
    caplog.clear()
    warn_if_other_hardware(here, CPU)
    assert caplog.text == ""


def test_a_reference_without_a_fingerprint_is_not_compared() -> None:
    warn_if_other_hardware(Reference(step_ms=1.0, params=1, macs=1), CPU)  # no error, nothing to compare


def test_a_macs_objective_times_no_step(tmp_path) -> None:
    settings, data = _setup()
    settings = settings.with_objective("macs")
    cache = StepTimeCache(tmp_path / "steps.json")
    arch = settings.space.reference.with_(width=1.5)
    costs = measure_costs(arch, settings, data, CPU, cache)
    full = build(arch, num_classes=data.num_classes, in_channels=data.in_channels)
    assert costs.macs == count_macs(full, settings.space.resolution, data.in_channels)
    assert math.isnan(costs.step.median_ms) and math.isnan(costs.ref_step.median_ms)
    assert len(cache) == 0  # nothing was timed
    ref = measure_reference(settings, data, CPU, cache)
    assert math.isnan(ref.step_ms) and ref.macs > 0
