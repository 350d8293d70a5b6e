"""The trial as Ray Tune runs it, in an actor with its own CPU/GPU share.

It is the one trial of every backend (`nas.search.lifecycle.attempt`), reporting the objective
(`score`) every epoch for ASHA with a checkpoint of the training state, so a retry, by Tune
after its actor or node died or by nas after the driver died (`resume_from`), resumes from the
last epoch instead of starting over. The final report carries the classified outcome; the
driver (`nas.search.raytune.searcher`) tells the study. Worker nodes never touch the run folder.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from nas.measure.costs import StepTimeCache
from nas.measure.device import resolve_device
from nas.search.lifecycle import attempt
from nas.search.trial import Costs, measure_reference
from nas.spec.objective import Objective
from nas.spec.settings import SearchSettings
from nas.training.data import Dataset

NUMBER = "number"  # config key: the trial's number in the study (trials/<n>/)
RESUME_FROM = "resume_from"  # config key: checkpoint of an earlier attempt at the same architecture
STATE_FILE = "state.pt"  # the proxy trainer's state after the checkpoint's epoch
log = logging.getLogger(__name__)


class FixedParams:
    """A trial-like object answering `suggest_categorical` from a Tune config, so the space's
    own sampler turns the config back into the architecture."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any:
        return self.config[name]


@dataclass(frozen=True)
class TrialJob:
    """What every trial of a search shares (sent once with the dataset)."""

    settings: SearchSettings
    objective: Objective
    cache_name: str  # step-time cache file in each node's temp dir
    threads: int


def node_cache(name: str) -> StepTimeCache:
    """Per-node step-time cache: timings belong to the node's hardware, and the run folder may
    not be reachable from a worker node."""
    return StepTimeCache(Path(tempfile.gettempdir()) / "nas-step-times" / name)


def tune_metrics(objective: Objective, accuracy: float, step_ms: float, params: int, macs: int,
                 ref_step_ms: float | None = None) -> dict[str, float]:
    """The numbers Tune's scheduler reads (always present, always finite): `score` is what the
    sampler maximises, and what ASHA judges, epoch by epoch."""
    values = objective.values(accuracy, step_ms, params, macs, ref_step_ms)
    score = values[0] if objective.spec.kind != "pareto" else accuracy
    return {"accuracy": float(accuracy), "step_ms": float(step_ms),
            "score": float(score) if math.isfinite(score) else 0.0}


def _report(metrics: dict[str, Any], info: dict[str, Any], progress: dict[str, Any],
            state: dict[str, Any] | None = None) -> None:
    """tune.report with a checkpoint of the trial's progress (and training state, when given)."""
    with tempfile.TemporaryDirectory(prefix="nas-ckpt-") as folder:
        (Path(folder) / "progress.json").write_text(json.dumps(progress))
        if state is not None:
            torch.save(state, Path(folder) / STATE_FILE)
        tune.report(dict(metrics, nas=info), checkpoint=tune.Checkpoint.from_directory(folder))


def _read_checkpoint(checkpoint: tune.Checkpoint | None) -> dict[str, Any]:
    """A checkpoint's progress; its training state (if any) under "state"."""
    if checkpoint is None:
        return {}
    try:
        with checkpoint.as_directory() as folder:
            path = Path(folder) / "progress.json"
            progress = json.loads(path.read_text()) if path.is_file() else {}
            if (Path(folder) / STATE_FILE).is_file():
                progress["state"] = torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=True)
            return progress
    except Exception as exc:  # e.g. written on a node whose disk this one cannot see
        log.warning("cannot read the trial's checkpoint (%s); starting the trial over", exc)
        return {}


def restored_progress(config: dict[str, Any]) -> dict[str, Any]:
    """Tune's checkpoint of this trial (a retry by Tune), else an earlier attempt's (a retry by nas)."""
    progress = _read_checkpoint(tune.get_checkpoint())
    if not progress and config.get(RESUME_FROM):
        try:
            progress = _read_checkpoint(tune.Checkpoint(config[RESUME_FROM]))
        except Exception as exc:  # the path may be gone or on another machine's disk
            log.warning("cannot open the earlier attempt's checkpoint (%s); starting the trial over", exc)
    return progress


def run_trial(config: dict[str, Any], data: Dataset | None = None, job: TrialJob | None = None) -> None:
    """One Tune trial: build, time, proxy-train, reporting (and checkpointing) every epoch."""
    assert data is not None and job is not None
    torch.set_num_threads(job.threads)
    settings, objective = job.settings, job.objective
    arch = settings.space.sample(FixedParams(config))
    where = {"node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid(), "started_at": time.time()}
    progress = restored_progress(config)
    if progress.get("final"):  # finished, then the actor died before Tune took the result
        final = progress["final"]
        tune.report(dict(final, nas=dict(final["nas"], **where)))
        return

    start = time.perf_counter()
    resume = progress.get("state")
    base = {"final": False, "arch": arch.to_string(),
            "resumed_from_epoch": int(resume["epoch"]) if resume else 0, **where}
    costs: Costs | None = None

    def keep_costs(measured: Costs) -> None:
        nonlocal costs
        costs = measured

    def on_state(state: dict[str, Any]) -> None:
        epoch, accuracy = int(state["epoch"]), state["history"][-1]["val_acc"]
        # the last epoch is reported once, as the final result: were it an intermediate report
        # too, ASHA would stop the trial there (max_t) before its final result
        if epoch >= settings.proxy.epochs or costs is None:
            return
        c = costs
        info = dict(base, accuracy=accuracy, epochs=epoch, history=list(state["history"]),
                    step_ms=c.step.median_ms, step_spread=c.step.spread, params=c.params, macs=c.macs,
                    ref_step_ms=c.ref_step.median_ms, hardware=c.hardware.key(),
                    seconds=round(time.perf_counter() - start, 3))
        metrics = tune_metrics(objective, accuracy, c.step.median_ms, c.params, c.macs, c.ref_step.median_ms)
        _report(metrics, info, {"epochs": epoch, "written_by": where}, state=state)

    outcome = attempt(arch, settings, data, resolve_device(settings.device), node_cache(job.cache_name),
                      resume=resume, on_state=on_state, on_costs=keep_costs)
    if outcome.poisoned and outcome.error is not None:
        raise outcome.error  # this actor's device is broken: Tune retries the trial in a fresh actor
    attrs = outcome.attrs
    if outcome.state == "COMPLETE":
        attrs["seconds"] = round(time.perf_counter() - start, 3)  # measuring + training
        metrics = tune_metrics(objective, attrs["accuracy"], attrs["step_ms"], attrs["params"], attrs["macs"],
                               attrs.get("ref_step_ms"))
    else:
        metrics = {"accuracy": 0.0, "step_ms": 0.0, "score": 0.0}
    info = dict(base, final=True, outcome=outcome.to_report(), ended_at=time.time())
    _report(metrics, info, {"final": dict(metrics, nas=info)})


def measure_reference_remotely(settings: SearchSettings, data: Dataset, cache_name: str,
                               threads: int) -> dict[str, Any]:
    """The run's reference, measured on a trial-sized share of the cluster (a Ray task)."""
    torch.set_num_threads(threads)
    return measure_reference(settings, data, resolve_device(settings.device), node_cache(cache_name)).to_dict()
