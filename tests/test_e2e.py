"""End to end through the real command line: `python -m nas search ...` in a temporary runs
folder, read back from the run's files and from Optuna's own storage.

Each test is one small real search (tiny or v1 space, digits data, a few trials), so the whole
module is in the slow lane.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import yaml
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from nas.measure.costs import StepTimeCache, count_costs
from nas.records.file_lock import FileLock
from nas.records.runs import RunDir
from nas.spec.arch import Arch
from tests.conftest import run_nas

pytestmark = pytest.mark.slow

FAST = ["--dataset", "digits", "--max-train", "300", "--quiet"]
DIGITS = {"num_classes": 10, "in_channels": 1}


def search(tmp_path: Path, name: str, *args: str) -> RunDir:
    done = run_nas("search", "--name", name, "--runs-dir", str(tmp_path / "runs"), *FAST, *args, cwd=tmp_path,
                   timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return RunDir(tmp_path / "runs" / name)


def study_trials(run: RunDir) -> tuple[optuna.Study, list[FrozenTrial]]:
    """The run's one study, opened the way Optuna's own tools would open it."""
    journal = str(run.path / "study.journal")
    storage = JournalStorage(JournalFileBackend(journal, lock_obj=FileLock(journal + ".flock")))
    (summary,) = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    return study, study.get_trials(deepcopy=False)


def read_csv(path: Path) -> list[dict[str, Any]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def dominates(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """a is at least as accurate and as fast as b, and strictly better on one."""
    acc_a, acc_b, ms_a, ms_b = float(a["accuracy"]), float(b["accuracy"]), float(a["step_ms"]), float(b["step_ms"])
    return acc_a >= acc_b and ms_a <= ms_b and (acc_a > acc_b or ms_a < ms_b)


def test_pareto_objective_runs_nsga2_and_writes_the_non_dominated_trials(tmp_path: Path) -> None:
    run = search(tmp_path, "front", "--space", "tiny", "--objective", "pareto", "--budget", "6", "--epochs", "1")
    config = run.config()
    assert config["objective"]["kind"] == "pareto" and config["sampler"] == "nsga2"
    study, trials = study_trials(run)
    assert study.directions == [optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE]
    # NSGA-II marks each trial it sampled with its generation
    assert any("NSGAIISampler:generation" in t.system_attrs for t in trials)

    complete = [r for r in read_csv(run.results_path) if r["state"] == "COMPLETE"]
    front = read_csv(run.path / "pareto.csv")
    assert len(complete) == 6 and front
    numbers = {r["number"] for r in front}
    # nothing on the front is dominated, and every complete trial off it is dominated by one on it
    assert not any(dominates(a, b) for a in front for b in front)
    for row in complete:
        if row["number"] not in numbers:
            assert any(dominates(f, row) for f in front), row
    # the same front as Optuna's own (values: accuracy up, step time down)
    assert {str(t.number) for t in study.best_trials} == numbers
    for trial in trials:
        if trial.state == TrialState.COMPLETE:
            row = next(r for r in complete if r["number"] == str(trial.number))
            assert trial.values[0] == pytest.approx(float(row["accuracy"]), abs=1e-4)
            assert trial.values[1] == pytest.approx(float(row["step_ms"]), abs=1e-4)


def test_macs_objective_on_v1_scores_the_full_size_candidates_multiply_adds(tmp_path: Path) -> None:
    run = search(tmp_path, "mnas", "--space", "v1", "--objective", "macs", "--budget", "3", "--epochs", "1",
                 "--max-train", "128", "--batch", "32", "--pruner", "none")
    spec = run.config()["objective"]
    assert spec["kind"] == "macs" and spec["target_macs"] == 400_000_000 and spec["macs_weight"] == -0.07
    space = yaml.safe_load((run.path / "space.yaml").read_text())
    rows = [r for r in run.read_results() if r["state"] == "COMPLETE"]
    assert len(rows) == 3
    for row in rows:
        # MACs of the full-size candidate at the space's 224 px, not of the shrunk proxy that was trained
        arch = Arch.from_string(row["arch"]).with_(resolution=space["resolution"])
        _, macs = count_costs(arch, **DIGITS)
        assert row["macs"] == macs
        assert row["reward"] == pytest.approx(row["accuracy"] * (macs / 400e6) ** -0.07, abs=1e-4)
        assert math.isnan(row["step_ms"])  # the MACs reward does not use S, so no step was timed
    record = json.loads((run.path / "step_table.json").read_text())
    assert len(StepTimeCache(record["path"])) == record["entries_at_start"]  # no part timed
    best = max(rows, key=lambda r: r["reward"])
    assert Arch.load(run.best_path).to_string() == Arch.from_string(best["arch"]).to_string()
    _, trials = study_trials(run)
    assert sorted(t.values[0] for t in trials if t.state == TrialState.COMPLETE) == pytest.approx(
        sorted(r["reward"] for r in rows), abs=1e-4)


def test_median_pruner_prunes_trials_below_the_median(tmp_path: Path) -> None:
    run = search(tmp_path, "pruned", "--space", "tiny", "--pruner", "median", "--budget", "12", "--epochs", "2",
                 "--max-train", "200")
    _, trials = study_trials(run)
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned, "no trial was pruned"
    states = {r["number"]: r["state"] for r in run.read_results()}
    for trial in pruned:
        assert states[trial.number] == "PRUNED"
        # Optuna's MedianPruner: the trial's best value so far is below the median, at the step it
        # stopped, of the trials completed before it (one worker: those with smaller numbers)
        step = max(trial.intermediate_values)
        earlier = [t.intermediate_values[step] for t in trials
                   if t.state == TrialState.COMPLETE and t.number < trial.number and step in t.intermediate_values]
        assert len(earlier) >= 5  # the pruner's start-up trials
        best_so_far = max(v for s, v in trial.intermediate_values.items() if s <= step)
        assert best_so_far < float(np.median(earlier)), (trial.number, best_so_far, earlier)
    # the run still meets its budget, with every trial finished
    assert len(states) == 12 and all(s in ("COMPLETE", "PRUNED") for s in states.values())
    assert all(math.isfinite(v) for t in pruned for v in t.intermediate_values.values())
