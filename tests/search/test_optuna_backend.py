"""End-to-end Optuna searches on the tiny space with real MNIST-5k data and a real journal."""

from __future__ import annotations

import csv
import json
import os
import signal
import time
from pathlib import Path

import optuna
import pytest
import torch

from nas.cli import main
from nas.records.runs import RunDir
from nas.search.study import STUDY_NAME, count_finished, open_storage
from tests.conftest import run_nas, start_nas

FAST = ["--space", "tiny", "--max-train", "600", "--epochs", "1", "--quiet"]


@pytest.fixture(autouse=True)
def short_heartbeat(monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed workers' trials go stale in seconds (the `nas` children inherit the environment)."""
    monkeypatch.setenv("NAS_HEARTBEAT_INTERVAL", "1")
    monkeypatch.setenv("NAS_HEARTBEAT_GRACE", "6")


def read_rows(run: Path) -> list[dict]:
    with (run / "results.csv").open() as handle:
        return list(csv.DictReader(handle))


def load_trials(run: Path) -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name=STUDY_NAME, storage=open_storage(RunDir(run)))
    return study.get_trials()


@pytest.mark.slow
def test_search_writes_the_run_layout(workdir: Path, monkeypatch) -> None:
    monkeypatch.chdir(workdir)
    assert main(["search", *FAST, "--budget", "4", "--name", "exp"]) == 0
    run = workdir / "runs" / "exp"
    for name in ("config.yaml", "space.yaml", "study.journal", "results.csv", "best.yaml", "reference.json"):
        assert (run / name).is_file(), name
    rows = read_rows(run)
    assert [int(r["number"]) for r in rows] == [0, 1, 2, 3]
    # the reference architecture runs first and is the space's reference
    from nas.spec.space import SearchSpace

    assert rows[0]["arch"] == SearchSpace.load("tiny").reference.to_string()
    for row in rows:
        folder = run / "trials" / f"{int(row['number']):04d}"
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["state"] == row["state"]
        assert (folder / "arch.yaml").is_file()
        if row["state"] == "COMPLETE":
            assert 0.0 <= float(row["accuracy"]) <= 1.0 and float(row["step_ms"]) > 0
            assert any(p.name.startswith("events.out.tfevents") for p in folder.iterdir())
    # every row carries the hardware it was timed on and the reference's S timed there
    from nas.measure.hardware import fingerprint

    reference = json.loads((run / "reference.json").read_text())
    assert reference["hardware"]["cpu"] and reference["shape"].startswith("batch 8, 16x16 px")
    here = fingerprint(torch.device("cpu")).key()
    assert {r["hardware"] for r in rows} == {here}
    assert {float(r["ref_step_ms"]) for r in rows} == {reference["step_ms"]}
    config = (run / "config.yaml").read_text()
    assert "torch:" in config and "optuna:" in config and "budget: 4" in config


@pytest.mark.slow
def test_tensorboard_events_hold_curves_and_hparams(workdir: Path, monkeypatch) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.chdir(workdir)
    assert main(["search", *FAST, "--budget", "1", "--name", "tb"]) == 0
    folder = workdir / "runs" / "tb" / "trials" / "0000"
    acc = EventAccumulator(str(folder))
    acc.Reload()
    assert "proxy/val_acc" in acc.Tags()["scalars"]
    assert "hparam/reward" in acc.Tags()["scalars"]
    (event,) = acc.Scalars("proxy/val_acc")
    row = read_rows(workdir / "runs" / "tb")[0]
    assert event.value == pytest.approx(float(row["accuracy"]))


@pytest.mark.slow
def test_nan_trials_are_recorded_as_failed_and_the_search_goes_on(workdir: Path, monkeypatch) -> None:
    import nas.training.proxy

    real_step = nas.training.proxy.train_step

    def nan_for_kernel5(model, *args, **kwargs):
        loss = real_step(model, *args, **kwargs)
        return loss * float("nan") if model.arch.stages[0].kernel == 5 else loss

    monkeypatch.setattr(nas.training.proxy, "train_step", nan_for_kernel5)
    monkeypatch.chdir(workdir)
    assert main(["search", *FAST, "--budget", "8", "--name", "nan", "--sampler", "random"]) == 0
    rows = read_rows(workdir / "runs" / "nan")
    assert len(rows) == 8
    failed = [r for r in rows if r["state"] == "FAIL"]
    assert failed, "the random sampler should pick kernel 5 in stage 0 at least once in 8 trials"
    for r in failed:
        assert "_k5_" in r["arch"].split(",")[2]
        assert r["reason"].startswith("training diverged")
    assert all(r["state"] != "FAIL" for r in rows if "_k3_" in r["arch"].split(",")[2])


@pytest.mark.slow
def test_budget_is_a_total_for_the_run(workdir: Path, monkeypatch) -> None:
    monkeypatch.chdir(workdir)
    assert main(["search", *FAST, "--budget", "2", "--name", "grow"]) == 0
    assert main(["search", *FAST, "--budget", "2", "--name", "grow", "--resume"]) == 0
    assert len(read_rows(workdir / "runs" / "grow")) == 2  # already met: nothing more runs
    assert main(["search", *FAST, "--budget", "3", "--name", "grow", "--resume"]) == 0
    assert len(read_rows(workdir / "runs" / "grow")) == 3


@pytest.mark.slow
def test_existing_run_needs_resume_and_the_same_space(workdir: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(workdir)
    assert main(["search", *FAST, "--budget", "1", "--name", "x"]) == 0
    capsys.readouterr()
    assert main(["search", *FAST, "--budget", "1", "--name", "x"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["search", "--space", "v2", "--budget", "1", "--name", "x", "--resume", "--quiet"]) == 2
    assert "was made with space" in capsys.readouterr().err


@pytest.mark.slow
def test_two_workers_share_one_budget(workdir: Path, monkeypatch) -> None:
    monkeypatch.chdir(workdir)
    assert main(["search", *FAST, "--budget", "5", "--name", "w2", "--workers", "2"]) == 0
    trials = load_trials(workdir / "runs" / "w2")
    assert count_finished(trials) == 5 and len(trials) == 5
    owners = {t.user_attrs["worker"] for t in trials}
    assert len(owners) == 2, "both processes should have run trials"


@pytest.mark.slow
def test_kill_and_resume_keeps_finished_trials_and_ends_at_the_budget(workdir: Path) -> None:
    budget = 7
    proc = start_nas("search", *FAST, "--budget", str(budget), "--name", "k", cwd=workdir)
    run = workdir / "runs" / "k"
    deadline = time.time() + 240
    while time.time() < deadline:
        if (run / "results.csv").is_file() and len(read_rows(run)) >= 3:
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    before = {r["number"]: r for r in read_rows(run)}
    assert 3 <= len(before) < budget

    done = run_nas("search", "--name", "k", "--budget", str(budget), "--resume", "--quiet", cwd=workdir)
    assert done.returncode == 0, done.stderr
    trials = load_trials(run)
    assert count_finished(trials) == budget
    rows = {r["number"]: r for r in read_rows(run)}
    for number, row in before.items():  # nothing finished was lost or changed
        assert rows[number] == row
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    interrupted = [t for t in trials if t.user_attrs.get("interrupted")]
    for t in interrupted:  # the killed trial's architecture ran again, if it had been sampled in full
        retries = [r for r in trials if r.user_attrs.get("retry_of") == t.number]
        if "arch" in t.user_attrs:
            assert len(retries) == 1 and retries[0].params == t.params
        else:  # killed while sampling: a new trial takes its place instead
            assert retries == []
    finished_rows = [r for r in rows.values() if r["state"] in ("COMPLETE", "PRUNED")
                     or (r["state"] == "FAIL" and "interrupted" not in r["reason"])]
    assert len(finished_rows) == budget


def test_device_auto_runs_on_cpu_here() -> None:
    from nas.measure.device import resolve_device

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


@pytest.mark.slow
def test_the_median_pruner_judges_the_reward_not_raw_accuracy(workdir: Path, monkeypatch) -> None:
    """What the pruner sees each epoch is accuracy so far x the trial's cost factor: exactly the
    reward formula applied to that epoch's accuracy and the trial's recorded costs."""
    from nas.spec.objective import Objective, Reference
    from nas.spec.space import SearchSpace

    monkeypatch.chdir(workdir)
    assert main(["search", "--space", "tiny", "--max-train", "300", "--epochs", "2", "--quiet",
                 "--budget", "7", "--name", "pr"]) == 0
    run = workdir / "runs" / "pr"
    objective = Objective(SearchSpace.load("tiny").objective,
                          Reference.from_dict(json.loads((run / "reference.json").read_text())))
    checked = 0
    for trial in load_trials(run):
        attrs = trial.user_attrs
        if not trial.intermediate_values or "step_ms" not in attrs:
            continue
        history = json.loads((run / "trials" / f"{trial.number:04d}" / "metrics.json").read_text())["history"]
        for epoch, value in trial.intermediate_values.items():
            accuracy = history[epoch - 1]["val_acc"]
            expected = objective.reward(accuracy, attrs["step_ms"], attrs["params"], attrs["macs"],
                                        attrs["ref_step_ms"])
            assert value == pytest.approx(expected)
            if attrs["step_ms"] != attrs["ref_step_ms"]:
                assert value != pytest.approx(accuracy)  # not the raw accuracy
            checked += 1
    assert checked >= 7
