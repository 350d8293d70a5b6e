"""Ray Tune's searcher on nas's own study: Tune's public `Searcher` interface only.

Tune asks `suggest` for configs and reports results; every decision is the study's, through the
same code as the Optuna backend (`RunStudy.claim`, `outcome.conclude`): the budget is counted
in the storage, the reference is trial 0, a trial ASHA stopped is PRUNED (not COMPLETE with its
partial score, which would mislead TPE), a failed candidate is FAIL, and a trial whose actor or
node died beyond Tune's retries is INTERRUPTED: its architecture is asked again, resuming from
its last checkpoint, up to `max_failures` times.

Why a Searcher rather than Ray as a bare executor: Tune keeps doing what it does well (ASHA,
placement with CPU/GPU fractions, actor reuse, retries from checkpoints after a node dies) while
the study stays the one ledger, so a run reads the same whichever backend made it.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import optuna
from ray import tune
from ray.tune.search import Searcher

from nas.search.base import METRIC_KEYS
from nas.search.failure import PRUNED, Outcome, worker_lost
from nas.search.lifecycle import finish_trial
from nas.search.progress import SearchProgress
from nas.search.raytune.trainable import NUMBER, RESUME_FROM, FixedParams
from nas.search.study import RunStudy
from nas.spec.objective import Objective
from nas.spec.space import SearchSpace

KEPT_OUT = ("rs", "progress", "failures")  # live objects of this process: never pickled


class FailureCounter(tune.Callback):
    """How often each Tune trial failed and was retried by Tune (its `on_trial_recover` hook)."""

    def __init__(self) -> None:
        self.failures: Counter[str] = Counter()

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.failures[trial.trial_id] += 1

    def __getstate__(self) -> dict[str, Any]:
        return {"failures": Counter()}  # Tune pickles callbacks with the experiment; counts are per session


class StudySearcher(Searcher):
    """Suggests the study's next trial and tells the study how each ended (driver side)."""

    def __init__(self, rs: RunStudy, space: SearchSpace, objective: Objective, budget: int, progress: SearchProgress,
                 failures: FailureCounter, experiment_path: str, max_failures: int) -> None:
        single = objective.spec.kind != "pareto"
        super().__init__(metric="score" if single else "accuracy", mode="max")
        self.rs = rs
        self.space = space
        self.objective = objective
        self.budget = budget
        self.progress = progress
        self.failures = failures
        self.experiment_path = experiment_path.rstrip("/")
        self.max_failures = max_failures
        self.reference_params = space.params_for(space.reference)
        self.numbers: dict[str, int] = {}  # Tune trial id -> study trial number
        self.trials: dict[int, optuna.Trial] = {}

    # -- Tune's interface ------------------------------------------------------------------
    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        trial = self.rs.claim(self.budget, self.reference_params)
        if trial is None:
            # None: the rest of the budget is running (one may still fail and need a retry)
            return Searcher.FINISHED if self.rs.budget_met(self.budget) else None
        arch = self.space.sample(trial)
        trial.set_user_attr("arch", arch.to_string())
        self.numbers[trial_id] = trial.number
        self.trials[trial.number] = trial
        config = dict(trial.params, **{NUMBER: trial.number})
        if trial.user_attrs.get("checkpoint"):
            config[RESUME_FROM] = trial.user_attrs["checkpoint"]
        return config

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        number = self.numbers.get(trial_id)
        if number is None or nas_info(result).get("final"):
            return
        trial = self.trials[number]
        try:
            if self.metric == "score":  # the study shows the curve Optuna's tools plot
                trial.report(float(result["score"]), int(result.get("training_iteration", 0)))
            if result.get("checkpoint_dir_name"):  # where a retry after a driver crash resumes
                trial.set_user_attr("checkpoint", f"{self.experiment_path}/{trial_dirname_of(number, trial_id)}/"
                                                  f"{result['checkpoint_dir_name']}")
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # failed as stale meanwhile; `on_trial_complete` drops it

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        number = self.numbers.pop(trial_id, None)
        if number is None:
            return
        trial = self.trials.pop(number)
        arch = self.space.sample(FixedParams(trial.params))
        failures = self.failures.failures.pop(trial_id, 0) + (1 if error else 0)
        info = nas_info(result)
        if error:
            # never the candidate's fault (run_trial reports those as results) but its actor or node
            outcome = worker_lost(arch, failures, int(trial.user_attrs.get("attempt", 1)), self.max_failures)
        elif info.get("final"):
            outcome = Outcome.from_report(info["outcome"])
        else:  # ASHA stopped it after an epoch: its costs and accuracy so far are its row
            outcome = Outcome(PRUNED, {k: info.get(k) for k in (*METRIC_KEYS, "arch")},
                              history=[h for h in info.get("history") or [] if isinstance(h, dict)])
        extra = {"node_id": info.get("node_id"), "node_ip": (result or {}).get("node_ip"),
                 "hostname": (result or {}).get("hostname"), "pid": info.get("pid"), "ray_trial_id": trial_id,
                 "ray_failures": failures, "resumed_from_epoch": info.get("resumed_from_epoch", 0),
                 "started_at": info.get("started_at"), "ended_at": info.get("ended_at"),
                 "retry_of": trial.user_attrs.get("retry_of")}
        finish_trial(self.rs, number, arch, outcome, self.objective, self.progress, extra=extra)

    def abandon_running(self) -> None:
        """The driver stops (Ctrl-C, an error): fail its unfinished trials as interrupted now, so a
        `--resume` retries them from their checkpoints without waiting for them to go stale."""
        for number in list(self.trials):
            self.rs.interrupt(number, "interrupted (the Ray driver stopped)", retry=True)
        self.trials.clear()
        self.numbers.clear()

    def save(self, checkpoint_path: str) -> None:
        # the study is the ledger; this is only which Tune trial is which study trial
        with open(checkpoint_path, "w") as handle:
            json.dump({"numbers": self.numbers}, handle)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path) as handle:
            self.numbers = {k: int(v) for k, v in json.load(handle)["numbers"].items()}

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its searcher into the experiment (tuner.pkl); nas never restores it
        # (`--resume` starts a new Tune experiment on the same study), so live objects stay here.
        return {k: v for k, v in self.__dict__.items() if k not in (*KEPT_OUT, "trials")}



def nas_info(result: dict[str, Any] | None) -> dict[str, Any]:
    """The `nas` part of a trial's result. Tune hands searchers its results flattened
    ("nas/outcome/state"), so the part is rebuilt from the keys under "nas/"."""
    if not result:
        return {}
    if isinstance(result.get("nas"), dict):
        return result["nas"]
    info: dict[str, Any] = {}
    for key, value in result.items():
        if not key.startswith("nas/"):
            continue
        *parents, leaf = key.split("/")[1:]
        node = info
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return info


def trial_dirname_of(number: int, trial_id: str) -> str:
    return f"trial_{number:04d}_{trial_id}"


def trial_dirname(trial: Any) -> str:
    """Tune's folder of a trial, named by its study number."""
    return trial_dirname_of(int(trial.config.get(NUMBER, -1)), trial.trial_id)
