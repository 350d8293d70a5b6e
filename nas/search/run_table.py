"""A run's step-time table and reference: which machine table generation it times in, chosen
once per run by whichever process comes first (under the run lock), after re-timing the
reference against that table (nas.measure.step_table explains the generations)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from nas.measure.costs import StepTimeCache
from nas.measure.hardware import fingerprint
from nas.measure.step_cost import retime_reference
from nas.measure.step_table import Drift, StepTable, current_table, next_generation, pinned_table, write_record
from nas.records.runs import RunDir
from nas.search.study import run_reference
from nas.search.trial import measure_reference, warn_if_other_hardware
from nas.spec.objective import Reference
from nas.spec.settings import SearchSettings
from nas.training.data import Dataset

log = logging.getLogger(__name__)

# Runs made before the table moved to the user cache kept it in the run folder: they go on with it.
LEGACY_TABLE = "step_times.json"


def open_run_table(run: RunDir, settings: SearchSettings, data: Dataset, device: torch.device,
                   root: Path | None = None) -> tuple[StepTimeCache, Reference]:
    """The run's step-time table and its reward normalisers, measured once per run and read back
    by every other process and on resume. `root`: the cache folder (default `nas.measure.step_table.cache_dir`)."""
    hardware = fingerprint(device)
    chosen: list[StepTimeCache] = []

    def measure() -> Reference:  # under the run lock, by the first process of the run
        table = current_table(hardware, root)
        drift, replaced = None, None
        if settings.space.objective.uses_step_time:
            table, drift, replaced = _check_reference(settings, data, table, device)
        chosen.append(table.cache())
        reference = measure_reference(settings, data, device, chosen[0])
        write_record(run.path, table, drift, replaced)  # before reference.json: every reader finds it
        return reference

    reference = run_reference(run, measure, on_existing=lambda ref: warn_if_other_hardware(ref, device))
    return (chosen[0] if chosen else _pinned_cache(run, hardware, root)), reference


def _pinned_cache(run: RunDir, hardware, root: Path | None) -> StepTimeCache:
    pinned = pinned_table(run.path, hardware)
    if pinned is not None:
        return pinned.cache()
    if (run.path / LEGACY_TABLE).is_file():
        return StepTimeCache(run.path / LEGACY_TABLE)
    return current_table(hardware, root).cache()  # a process on other hardware: its own machine's table


def _check_reference(settings: SearchSettings, data: Dataset, table: StepTable,
                     device: torch.device) -> tuple[StepTable, Drift | None, StepTable | None]:
    """Re-time the reference; beyond the tolerance, say so and move to the next generation, so the
    run never mixes the old table's parts with parts timed on the machine as it is now."""
    shape = settings.timing_shape(device, data.num_classes)
    cache = table.cache()
    fresh, drift = retime_reference(settings.space.reference, shape, device, settings.measure.repeats(),
                                    settings.measure.method, cache, table.hardware, settings.measure.drift_tolerance)
    replaced = None
    if drift is not None and drift.beyond:
        replaced, table = table, next_generation(table)
        log.warning("step-time table %s: %s; this run times every part afresh in generation %d (%s)",
                    replaced.path.parent.name, drift.describe(), table.generation, table.path)
        cache = table.cache()
    for key, step in fresh.items():
        if cache.get(key) is None:  # parts the table lacks, or all of them in a new generation
            cache.put(key, step)
    return table, drift, replaced
