"""Ray Tune backend: the same search on a Ray cluster, recorded in the same run folder.

A `Tuner` runs `run_trial` (the one trial function, `evaluate`, in a Ray actor with its own
CPU/GPU share) under `OptunaSearch` driving the space's define-by-run sampler, the reference
architecture enqueued first, and ASHA on the per-epoch accuracy. The dataset reaches the
actors through `tune.with_parameters` (once into the object store). Only the driver writes
runs/<name>/ (trials/<n>/, results.csv, best.yaml), from the results the trials report, so
worker nodes never need the run folder; Ray's own experiment lives in runs/<name>/ray/ (or the
shared `storage` a multi-node cluster needs for trial checkpoints).

Failures: an error of the candidate itself (divergence, OOM) is reported as a FAIL result and
never retried; a trial whose actor or node dies is retried up to `max_failures` times from its
last checkpoint (by Tune, or by `resume_lost` where Tune gives up early). `--resume` restores
Tune's experiment, which Tune snapshots only every few seconds, so the run folder is the ledger
of finished trials: a restored trial whose number is recorded re-reports the recorded result
instead of training, and trials the snapshot had not seen yet are asked again with their
recorded parameters. Nothing finished is lost or repeated.

This is the only module that imports ray.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import ray
import torch
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search.optuna import OptunaSearch

from nas.arch import Arch
from nas.data import Dataset, load_dataset
from nas.errors import ConfigError, RunError
from nas.measure import StepTimeCache
from nas.objective import Objective, Reference
from nas.runs import RunDir
from nas.search.base import METRIC_KEYS, best_reward, failure_reason, record_trial, result_attrs, write_rows
from nas.search.optuna_backend import make_sampler
from nas.search.progress import Progress
from nas.search.trial import measure_reference, prepare_candidate, train_candidate
from nas.settings import SearchSettings
from nas.space import SearchSpace

EXPERIMENT = "tune"  # Tune's experiment folder under the storage path
NUMBER = "number"  # config key: the trial's number in the run (trials/<n>/)
FINISHED_STATES = ("COMPLETE", "PRUNED", "FAIL")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RayOptions:
    """How trials are placed on the cluster (`nas search --backend ray ...`)."""

    address: str | None = None  # None: start a local Ray on this machine
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int | None = None  # None: as many as the cluster's resources allow
    asha: bool = True
    max_failures: int = 2
    storage: str | None = None  # shared path/URI for Ray's experiment; default runs/<name>/ray

    def check(self) -> None:
        if not self.cpus_per_trial > 0:
            raise ConfigError(f"--cpus-per-trial must be > 0, but got {self.cpus_per_trial}")
        g = self.gpus_per_trial
        if g < 0 or (g > 1 and g != int(g)):
            raise ConfigError(f"--gpus-per-trial must be a fraction in [0, 1] or a whole number, but got {g}")
        if self.max_failures < 0:
            raise ConfigError(f"--max-failures must be >= 0, but got {self.max_failures}")

    @property
    def threads(self) -> int:
        """torch threads of one trial: its CPU share, at least one."""
        return max(1, int(self.cpus_per_trial))

    def to_dict(self) -> dict[str, Any]:
        return {"address": self.address, "cpus_per_trial": self.cpus_per_trial,
                "gpus_per_trial": self.gpus_per_trial, "max_concurrent": self.max_concurrent,
                "asha": self.asha, "max_failures": self.max_failures, "storage": self.storage}


# -- connecting --------------------------------------------------------------------------------
def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds when nothing listens at host:port (ray.init itself retries for minutes)."""
    if address == "auto":
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--address must be HOST:PORT of a Ray head (e.g. 10.0.0.5:6379), but got {address!r}")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc)).lower()
        raise RunError(f"cannot reach a Ray cluster at {address}: {why} "
                       f"(is `ray start --head --port {port}` running there?)") from None


def connect(options: RayOptions) -> None:
    """Join the cluster at `options.address` (or start a local Ray) and check one trial fits."""
    options.check()
    if ray.is_initialized():
        ray.shutdown()
    kwargs: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
    if options.address:
        _check_reachable(options.address)
        kwargs["address"] = options.address
    else:
        # a private Ray for this search: listen on loopback only, no dashboard
        kwargs.update(include_dashboard=False, _node_ip_address="127.0.0.1")
    where = options.address or "a local Ray"
    try:
        ray.init(**kwargs)
    except Exception as exc:  # ray raises ConnectionError, RuntimeError, ValueError...
        raise RunError(f"cannot connect to the Ray cluster at {where}: {failure_reason(exc)}") from None
    try:
        check_fits(options)
    except BaseException:
        ray.shutdown()
        raise
    hosts = {n.get("NodeManagerHostname") for n in ray.nodes() if n.get("Alive")}
    if len(hosts) > 1 and options.storage is None:
        print(f"nas: note: the cluster spans {len(hosts)} machines and no --storage was given: trial checkpoints "
              f"stay on the machine that wrote them, so a trial retried on another one starts over "
              f"(give a path all nodes share, or s3://...)", file=sys.stderr)


def check_fits(options: RayOptions) -> None:
    """A trial's CPUs and GPUs must fit on one node, or Tune would wait forever."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if any(r.get("CPU", 0) >= options.cpus_per_trial and r.get("GPU", 0) >= options.gpus_per_trial for r in nodes):
        return
    biggest = max(nodes, key=lambda r: (r.get("GPU", 0), r.get("CPU", 0)), default={})
    raise ConfigError(
        f"the Ray cluster at {options.address or 'this machine'} cannot run one trial: a trial asks for "
        f"{options.cpus_per_trial:g} CPU and {options.gpus_per_trial:g} GPU on one node, but its largest node "
        f"has {biggest.get('CPU', 0):g} CPU and {biggest.get('GPU', 0):g} GPU ({len(nodes)} nodes); "
        f"lower --cpus-per-trial / --gpus-per-trial or add nodes"
    )


def capacity(options: RayOptions) -> int:
    """How many trials the cluster runs at once: per node, its CPUs (and GPUs) over a trial's."""
    total = 0
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        res = node.get("Resources", {})
        fits = int(res.get("CPU", 0) // options.cpus_per_trial)
        if options.gpus_per_trial > 0:
            fits = min(fits, int(res.get("GPU", 0) // options.gpus_per_trial))
        total += fits
    return max(1, total)


# -- the trial (runs in a Ray actor) ---------------------------------------------------------------
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
    finished: dict[int, dict[str, Any]] = field(default_factory=dict)  # number -> recorded report


def node_cache(name: str) -> StepTimeCache:
    """Per-node step-time cache: timings belong to the node's hardware, and the run folder may
    not be reachable from a worker node."""
    return StepTimeCache(Path(tempfile.gettempdir()) / "nas-step-times" / name)


def tune_metrics(objective: Objective, accuracy: float, step_ms: float, params: int, macs: int,
                 ref_step_ms: float | None = None) -> dict[str, float]:
    """The numbers Tune's searcher and scheduler read (always present, always finite): `score`
    is what the sampler maximises, and what ASHA judges, epoch by epoch."""
    values = objective.values(accuracy, step_ms, params, macs, ref_step_ms)
    score = values[0] if objective.spec.kind != "pareto" else accuracy
    return {"accuracy": float(accuracy), "step_ms": float(step_ms),
            "score": float(score) if math.isfinite(score) else 0.0}


STATE_FILE = "state.pt"  # the proxy trainer's state after the checkpoint's epoch


def _report(metrics: dict[str, Any], info: dict[str, Any], progress: dict[str, Any],
            state: dict[str, Any] | None = None) -> None:
    """tune.report with a checkpoint of the trial's progress (and training state, when given),
    so a retry picks up from it."""
    with tempfile.TemporaryDirectory(prefix="nas-ckpt-") as folder:
        (Path(folder) / "progress.json").write_text(json.dumps(progress))
        if state is not None:
            torch.save(state, Path(folder) / STATE_FILE)
        tune.report(dict(metrics, nas=info), checkpoint=tune.Checkpoint.from_directory(folder))


def _restored_progress() -> dict[str, Any]:
    """The last checkpoint's progress; its training state (if any) under "state"."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return {}
    try:
        with checkpoint.as_directory() as folder:
            path = Path(folder) / "progress.json"
            progress = json.loads(path.read_text()) if path.is_file() else {}
            if (Path(folder) / STATE_FILE).is_file():
                progress["state"] = torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=True)
            return progress
    except (OSError, ValueError, RuntimeError) as exc:  # e.g. written on a node whose disk this one cannot see
        log.warning("cannot read the trial's checkpoint (%s); starting the trial over", exc)
        return {}


def run_trial(config: dict[str, Any], data: Dataset | None = None, job: TrialJob | None = None) -> None:
    """One Tune trial: build, time, proxy-train, reporting (and checkpointing) every epoch.

    A retry after the trial's actor or node died resumes training from the last epoch's
    checkpoint instead of starting over.
    """
    assert data is not None and job is not None
    torch.set_num_threads(job.threads)
    settings, objective = job.settings, job.objective
    number = int(config[NUMBER])
    arch = settings.space.sample(FixedParams(config))
    where = {"node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid(), "started_at": time.time()}

    recorded = job.finished.get(number)
    if recorded is not None and recorded["nas"]["arch"] == arch.to_string():
        tune.report(dict(recorded, nas=dict(recorded["nas"], replayed=True, **where)))
        return  # finished before the driver died: report it again, do not train again
    progress = _restored_progress()
    if progress.get("final"):
        final = progress["final"]
        tune.report(dict(final, nas=dict(final["nas"], **where)))
        return

    start = time.perf_counter()
    resume = progress.get("state")
    base = {"final": False, "arch": arch.to_string(), "state": "RUNNING",
            "resumed_from_epoch": int(resume["epoch"]) if resume else 0, **where}
    try:
        # Costs first, so that every epoch's report, and the row of a trial ASHA stops, carries
        # step time, params and MACs.
        candidate = prepare_candidate(arch, settings, data, node_cache(job.cache_name))
        costs = candidate.costs
        counts = {"step_ms": costs.step.median_ms, "step_spread": costs.step.spread, "params": costs.params,
                  "macs": costs.macs, "ref_step_ms": costs.ref_step.median_ms, "hardware": costs.hardware.key()}

        def on_state(state: dict[str, Any]) -> None:
            epoch, accuracy = int(state["epoch"]), state["history"][-1]["val_acc"]
            # the last epoch is reported once, as the final result: were it an intermediate
            # report too, ASHA would stop the trial there (max_t) before its final result
            if epoch >= settings.proxy.epochs:
                return
            info = dict(base, **counts, accuracy=accuracy, epochs=epoch, history=list(state["history"]),
                        seconds=round(time.perf_counter() - start, 3))
            metrics = tune_metrics(objective, accuracy, costs.step.median_ms, costs.params, costs.macs,
                                   costs.ref_step.median_ms)
            _report(metrics, info, {"epochs": epoch, "written_by": where}, state=state)

        result = train_candidate(candidate, settings, data, resume=resume, on_state=on_state)
    except Exception as exc:  # the candidate's own failure: recorded, never retried by Tune
        info = dict(base, final=True, state="FAIL", reason=failure_reason(exc),
                    traceback="".join(traceback.format_exception(exc)),
                    seconds=round(time.perf_counter() - start, 3))
        final = {"metrics": {"accuracy": 0.0, "step_ms": 0.0, "score": 0.0}, "nas": info}
    else:
        info = dict(base, final=True, state="COMPLETE", **result_attrs(result), history=result.history)
        info["seconds"] = round(costs.seconds + result.train_seconds, 3)  # measuring + training
        metrics = tune_metrics(objective, result.accuracy, result.step_ms, result.params, result.macs,
                               result.ref_step_ms)
        final = {"metrics": metrics, "nas": info}
    final["nas"]["ended_at"] = time.time()
    _report(final["metrics"], final["nas"], {"final": dict(final["metrics"], nas=final["nas"])})


def _measure_reference(settings: SearchSettings, data: Dataset, cache_name: str, threads: int) -> dict[str, Any]:
    torch.set_num_threads(threads)
    return measure_reference(settings, data, node_cache(cache_name)).to_dict()


# -- the searcher (runs in the driver) ----------------------------------------------------------------
class DefineByRun:
    """OptunaSearch's define-by-run space: the search space's own sampler."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space

    def __call__(self, trial: Any) -> None:
        self.space.sample(trial)


class NumberedOptunaSearch(OptunaSearch):
    """OptunaSearch that numbers trials, replays the run's recorded trials after a restore, and
    tells Optuna the truth about trials that did not complete.

    Ray's OptunaSearch records a trial ASHA stopped as COMPLETE with its partial score, which
    misleads TPE; here it is PRUNED (and a failed candidate FAIL), as in the Optuna backend.
    """

    def suggest(self, trial_id: str) -> dict | None:
        if trial_id not in self._ot_trials:
            self._replay_recorded()
        config = super().suggest(trial_id)
        if config is None:
            return None
        return dict(config, **{NUMBER: self._ot_trials[trial_id].number})

    def _replay_recorded(self) -> None:
        """If the next trial number is already recorded in the run folder (the snapshot Tune
        restored is older than the records), ask it again with its recorded parameters."""
        if _session is None:
            return
        trials = self._ot_study.get_trials(deepcopy=False)
        if any(t.state == optuna.trial.TrialState.WAITING for t in trials):
            return
        record = _session.records.get(len(trials))
        if record is not None:
            params = _session.space.params_for(Arch.from_string(record["arch"]))
            if params is not None:
                self._ot_study.enqueue_trial(params)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self._ot_trials:
            super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if error or trial_id in self._completed_trials or trial_id not in self._ot_trials:
            # a Tune error is never the candidate's (run_trial reports those as FAIL results) but a
            # dead actor or node: it says nothing about the architecture, and a resumed trial is
            # told when it finishes
            return
        info = (result or {}).get("nas") or {}
        state = info.get("state", "PRUNED") if info.get("final") else "PRUNED"
        ot_trial = self._ot_trials[trial_id]
        try:
            if state == "COMPLETE":
                metric = self.metric
                values = [result[m] for m in metric] if isinstance(metric, list) else result[metric]
                self._ot_study.tell(ot_trial, values)
            else:
                self._ot_study.tell(ot_trial, state=optuna.trial.TrialState[state])
        except Exception as exc:  # e.g. a trial told twice after a restore: keep searching
            log.warning("optuna could not record trial %s: %s", trial_id, exc)
        self._completed_trials.add(trial_id)


# -- recording (runs in the driver) ---------------------------------------------------------------
def load_records(run: RunDir) -> dict[int, dict[str, Any]]:
    """Finished trials in the run folder: number -> metrics.json (row, history, node)."""
    records: dict[int, dict[str, Any]] = {}
    for path in sorted((run.path / "trials").glob("*/metrics.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # a half-written record cannot exist (atomic writes); an unreadable one re-runs
        if record.get("state") in FINISHED_STATES and isinstance(record.get("number"), int):
            records[record["number"]] = record
    return records


def replay_report(record: dict[str, Any], objective: Objective) -> dict[str, Any]:
    """The result a finished trial reported, rebuilt from its record."""
    info = {k: record.get(k) for k in (*METRIC_KEYS, "arch", "reason", "history")}
    info.update(final=True, state=record["state"])
    if record["state"] == "FAIL" or record.get("accuracy") is None or record.get("step_ms") is None:
        metrics = {"accuracy": 0.0, "step_ms": 0.0, "score": 0.0}
    else:
        metrics = tune_metrics(objective, record["accuracy"], record["step_ms"], record["params"], record["macs"],
                               record.get("ref_step_ms"))
    return dict(metrics, nas=info)


class Session:
    """The driver's view of one `nas search` process: the run folder and its records."""

    def __init__(self, run: RunDir, space: SearchSpace, objective: Objective, budget: int,
                 show_progress: bool) -> None:
        self.run = run
        self.space = space
        self.objective = objective
        self.records = load_records(run)
        self.progress = Progress(budget, len(self.records), show_progress)
        self.show_progress = show_progress
        self.replayed = 0  # finished before a restore, reported again by Tune: not re-run
        self.lost: set[int] = set()  # errored by Tune before its retries were used: resumed after fit

    def say(self, message: str) -> None:
        if self.show_progress:
            print(f"nas: {message}", file=sys.stderr)

    def record(self, config: dict[str, Any], result: dict[str, Any] | None, error: BaseException | None = None,
               failures: int = 0) -> None:
        """Write one finished Tune trial to trials/<n>/ and the tables (once per number)."""
        result = result or {}
        number = int(config[NUMBER])
        if number in self.records:
            self.replayed += 1  # replayed after a restore: its record is already on disk
            return
        arch = self.space.sample(FixedParams(config))
        info = result.get("nas") or {}
        attrs: dict[str, Any] = {"arch": arch.to_string()}
        if error is not None:
            state = "FAIL"
            lines = [line for line in str(error).strip().splitlines() if line.strip()]
            attrs["reason"] = f"Ray trial error after {failures} tries: {lines[-1] if lines else ''}"[:300]
        else:
            state = info.get("state", "PRUNED") if info.get("final") else "PRUNED"  # no final: ASHA stopped it
            attrs.update({k: info.get(k) for k in METRIC_KEYS}, reason=info.get("reason", ""))
        extra = {"node_id": info.get("node_id"), "node_ip": result.get("node_ip"), "hostname": result.get("hostname"),
                 "pid": info.get("pid"), "ray_trial_id": result.get("trial_id"), "ray_failures": failures,
                 "resumed_from_epoch": info.get("resumed_from_epoch", 0), "started_at": info.get("started_at"),
                 "ended_at": info.get("ended_at"), "recorded_at": time.time()}
        history = [h for h in info.get("history") or [] if isinstance(h, dict)]
        row = record_trial(self.run, number, arch, state, attrs, self.objective, history=history, error=error,
                           extra=extra)
        if info.get("traceback"):
            (self.run.trial_dir(number) / "error.txt").write_text(info["traceback"])
        self.records[number] = dict(extra, **row, history=history)
        self.write_tables()
        self.progress.update(len(self.records), row, best_reward(list(self.records.values())))

    def write_tables(self) -> None:
        write_rows(self.run, list(self.records.values()), self.objective)


_session: Session | None = None  # set by `search` for the driver process's callback and searcher


class Recorder(tune.Callback):
    """Records finished trials in the run folder. Tune pickles its callbacks into the experiment,
    so everything tied to this process lives in the module's `_session`."""

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if _session is not None:
            _session.record(trial.config, trial.last_result, failures=trial.num_failures)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if _session is not None:
            if trial.num_failures <= getattr(trial, "max_failures", 0):
                _session.lost.add(int(trial.config[NUMBER]))  # Tune did not retry it: see `resume_lost`
                return
            error = trial.get_error() or "trial failed"
            if not isinstance(error, BaseException):  # some Ray versions hand back the error's text
                error = RuntimeError(str(error))
            _session.record(trial.config, trial.last_result, error=error, failures=trial.num_failures)


def trial_dirname(trial: Any) -> str:
    return f"trial_{int(trial.config.get(NUMBER, -1)):04d}_{trial.trial_id}"


# -- the search -------------------------------------------------------------------------------------
def experiment_path(run: RunDir, options: RayOptions) -> str:
    storage = options.storage or str(run.path.resolve() / "ray")
    return f"{storage.rstrip('/')}/{EXPERIMENT}"


def _reference(run: RunDir, settings: SearchSettings, data: Dataset, options: RayOptions,
               cache_name: str) -> Reference:
    """The reward's normalisers, measured once per run on a trial-sized share of the cluster."""
    if run.reference_path.is_file():
        return Reference.from_dict(json.loads(run.reference_path.read_text()))
    task = ray.remote(num_cpus=options.cpus_per_trial, num_gpus=options.gpus_per_trial)(_measure_reference)
    try:
        ref = Reference.from_dict(ray.get(task.remote(settings, data, cache_name, options.threads)))
    except ray.exceptions.RayError as exc:
        raise RunError(f"measuring the reference architecture on the Ray cluster failed "
                       f"(is the same nas installed on every node?): {failure_reason(exc)}") from None
    with run.writable():
        run.reference_path.write_text(json.dumps(ref.to_dict(), indent=2) + "\n")
    return ref


def _tuner(run: RunDir, settings: SearchSettings, objective: Objective, budget: int, options: RayOptions,
           trainable: Any, records: dict[int, dict[str, Any]]) -> tune.Tuner:
    single = objective.spec.kind != "pareto"
    reference = settings.space.params_for(settings.space.reference)
    searcher = NumberedOptunaSearch(
        space=DefineByRun(settings.space),
        metric="score" if single else ["accuracy", "step_ms"],
        mode="max" if single else ["max", "min"],
        sampler=make_sampler(settings.sampler, settings.seed),
        # a fresh experiment over existing records replays them from number 0 instead
        points_to_evaluate=[reference] if reference is not None and not records else None,
    )
    epochs = settings.proxy.epochs
    scheduler: Any = FIFOScheduler()
    if options.asha and epochs > 1:
        # ASHA judges the objective (accuracy x cost factor), as the sampler does; a Pareto
        # search has no single objective, so there it judges accuracy
        scheduler = ASHAScheduler(metric="score" if single else "accuracy", mode="max",
                                  time_attr="training_iteration", max_t=epochs,
                                  grace_period=1, reduction_factor=2)
    path = experiment_path(run, options)
    return tune.Tuner(
        trainable,
        # without an explicit limit Tune starts searcher trials about one at a time
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=budget,
                                    max_concurrent_trials=options.max_concurrent or capacity(options),
                                    reuse_actors=True,  # ~3 s less per trial (see `resume_lost`)
                                    trial_dirname_creator=trial_dirname),
        run_config=tune.RunConfig(
            name=EXPERIMENT, storage_path=path.rsplit("/", 1)[0], verbose=0, callbacks=[Recorder()],
            failure_config=tune.FailureConfig(max_failures=options.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        ),
    )


def search(run: RunDir, settings: SearchSettings, budget: int, options: RayOptions, resume: bool = False,
           show_progress: bool = True) -> None:
    """Run the search to its budget on the cluster `connect` joined; returns when it is met."""
    global _session
    # Tune's default loggers would write a second set of TensorBoard files into the run folder,
    # and its console reporter would talk over our progress lines (the old one is silent at verbose=0)
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if not ray.is_initialized():
        connect(options)
    data = load_dataset(settings.dataset, resolution=settings.proxy.resolution,
                        val_fraction=settings.val_fraction, seed=settings.seed)
    cache_name = f"{run.name}-{hashlib.sha1(str(run.path.resolve()).encode()).hexdigest()[:10]}.json"
    try:
        objective = Objective(settings.space.objective, _reference(run, settings, data, options, cache_name))
        _session = Session(run, settings.space, objective, budget, show_progress)
        records = _session.records
        if len(records) >= budget:
            _session.write_tables()
            return

        def make_trainable() -> Any:  # what a trial gets: the data, and the records so far to replay
            job = TrialJob(settings, objective, cache_name, options.threads,
                           {n: replay_report(r, objective) for n, r in _session.records.items()})
            return tune.with_resources(tune.with_parameters(run_trial, data=data, job=job),
                                       {"cpu": options.cpus_per_trial, "gpu": options.gpus_per_trial})

        path = experiment_path(run, options)
        if resume and tune.Tuner.can_restore(path):
            _session.say(f"restoring the Ray Tune experiment in {path} ({len(records)} trials recorded)")
            _reconcile(_restore(path, make_trainable()).fit())
        else:
            _reconcile(_tuner(run, settings, objective, budget, options, make_trainable(), records).fit())
        resume_lost(path, make_trainable, options.max_failures)
        _session.write_tables()
        if _session.replayed:
            _session.say(f"{_session.replayed} trials that finished before the restore were reported again "
                         f"from the run folder, not re-run")
        if len(_session.records) < budget:
            raise KeyboardInterrupt  # Tune stops early only when interrupted (errors count as finished)
    finally:
        if _session is not None:
            _session.progress.close()
        _session = None
        ray.shutdown()


def _restore(path: str, trainable: Any) -> tune.Tuner:
    """Tune's experiment at `path`, unfinished and errored trials resumed from their checkpoints
    (an errored trial that is recorded replays its record; see `run_trial`)."""
    return tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=True, restart_errored=False)


def resume_lost(path: str, make_trainable: Callable[[], Any], max_failures: int) -> None:
    """Resume the trials Tune errored before their `max_failures` retries were used.

    Tune hands a finished trial's cached actor to the next trial with a reset task while that
    trial is still PENDING, and a failure of that task (the actor's node just died) errors the
    trial without consulting FailureConfig. Such trials are resumed here from their last
    checkpoint by restoring the experiment; each round costs a lost trial at least one more
    failure, so `max_failures` rounds suffice.
    """
    assert _session is not None
    for _ in range(max_failures):
        if not _session.lost:
            return
        _session.say(f"resuming {len(_session.lost)} trial(s) that Ray Tune errored before their retries "
                     f"were used: {', '.join(map(str, sorted(_session.lost)))}")
        _session.lost.clear()
        _reconcile(_restore(path, make_trainable()).fit())


def _reconcile(results: tune.ResultGrid) -> None:
    """Record any finished trial the callback did not see (e.g. one restored as already finished)."""
    assert _session is not None
    for result in results:
        config = result.config or {}
        number = int(config.get(NUMBER, -1))
        lost = number in _session.lost  # to be resumed, not recorded
        if number >= 0 and number not in _session.records and not lost and (result.metrics or result.error):
            _session.record(config, result.metrics, error=result.error)
