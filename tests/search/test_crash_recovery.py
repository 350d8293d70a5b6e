"""Trying to break a search: SIGKILL at random moments, several processes on one run, a full
or read-only disk. Every finished trial must survive and the budget must end exact."""

from __future__ import annotations

import errno
import os
import random
import signal
import time
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from nas.cli import main
from nas.search.study import count_finished
from tests.conftest import run_nas, start_nas
from tests.search.test_optuna_backend import FAST, load_trials, read_rows

pytestmark = pytest.mark.slow  # real processes and searches

@pytest.fixture(autouse=True)
def short_heartbeat(monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed workers' trials go stale in seconds (the `nas` children inherit the environment)."""
    monkeypatch.setenv("NAS_HEARTBEAT_INTERVAL", "1")
    monkeypatch.setenv("NAS_HEARTBEAT_GRACE", "6")


def finished_rows(rows: list[dict]) -> list[dict]:
    return [r for r in rows if not (r["state"] == "FAIL" and r["reason"].startswith("interrupted"))]


def test_five_random_kills_then_resume_end_with_exactly_the_budget(workdir: Path) -> None:
    budget, rng = 8, random.Random(7)
    args = ["search", *FAST, "--budget", str(budget), "--name", "crash"]
    run = workdir / "runs" / "crash"
    kept: dict[str, dict] = {}
    for kill in range(5):
        proc = start_nas(*args, *(["--resume"] if kill else []), cwd=workdir)
        time.sleep(rng.uniform(2.0, 9.0))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        if (run / "results.csv").is_file():
            rows = {r["number"]: r for r in finished_rows(read_rows(run))}
            for number, row in kept.items():  # a finished trial never changes or disappears
                assert rows[number] == row
            kept = rows
    done = run_nas(*args, "--resume", cwd=workdir)
    assert done.returncode == 0, done.stderr

    trials = load_trials(run)
    assert count_finished(trials) == budget
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    rows = read_rows(run)
    assert len(finished_rows(rows)) == budget
    assert {r["number"] for r in rows} == {str(t.number) for t in trials if t.state.is_finished()}
    for number, row in kept.items():
        assert {r["number"]: r for r in rows}[number] == row
    for row in rows:  # TensorBoard agrees with the storage for every completed trial
        if row["state"] != "COMPLETE":
            continue
        events = EventAccumulator(str(run / "trials" / f"{int(row['number']):04d}"))
        events.Reload()
        assert events.Scalars("proxy/val_acc")[-1].value == pytest.approx(float(row["accuracy"]))


def test_three_processes_on_one_run_share_its_budget(workdir: Path) -> None:
    budget = 6
    args = ["search", *FAST, "--budget", str(budget), "--name", "many"]
    procs = [start_nas(*args, cwd=workdir, threads=1)]
    deadline = time.time() + 120
    while not (workdir / "runs" / "many" / "config.yaml").is_file() and time.time() < deadline:
        time.sleep(0.1)
    procs += [start_nas(*args, "--resume", cwd=workdir, threads=1) for _ in range(2)]
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out
    trials = load_trials(workdir / "runs" / "many")
    assert count_finished(trials) == budget
    ran = [t for t in trials if not t.user_attrs.get("surplus")]
    assert len(ran) == budget  # no architecture trained beyond the budget
    assert len({t.user_attrs["worker"] for t in ran}) >= 2


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_full_or_read_only_disk_is_one_clear_line(code: int, workdir: Path, monkeypatch, capsys) -> None:
    import nas.records.runs

    monkeypatch.chdir(workdir)
    assert main(["search", *FAST, "--budget", "1", "--name", "disk"]) == 0

    def failing_replace(src, dst):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(nas.records.runs.os, "replace", failing_replace)
    capsys.readouterr()
    assert main(["search", *FAST, "--budget", "2", "--name", "disk", "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("nas: error: cannot write")
    assert os.strerror(code) in err


def test_unwritable_runs_dir_is_a_clear_error(workdir: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(workdir)
    (workdir / "file").write_text("not a folder")
    assert main(["search", *FAST, "--budget", "1", "--runs-dir", str(workdir / "file")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nas: error: cannot create run directory") and len(err.splitlines()) == 1
