"""Liveness by heartbeat: frozen workers lose their trials, other hosts neither steal nor strand
trials, and the tables list exactly what the storage holds. Real worker processes on one
journal storage; grace periods of seconds; every step waits on the storage's state (events),
never on a sleep standing in for one."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pytest

from nas.records.runs import RunDir
from nas.search.liveness import Timing, stale_trials
from nas.search.study import STUDY_NAME, count_finished, is_finished, open_storage
from tests.conftest import nas_env, skip_or_fail
from tests.search.test_optuna_backend import read_rows

ARGS = ["search", "--space", "tiny", "--max-train", "300", "--epochs", "2", "--quiet", "--pruner", "none"]
HEARTBEAT = {"NAS_HEARTBEAT_INTERVAL": "1", "NAS_HEARTBEAT_GRACE": "6"}
TS = optuna.trial.TrialState


def start(*args: str, cwd: Path, prefix: list[str] | None = None) -> subprocess.Popen:
    env = dict(nas_env(threads=1), **HEARTBEAT)
    return subprocess.Popen([*(prefix or []), sys.executable, "-m", "nas", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def trials(run: Path) -> list[optuna.trial.FrozenTrial]:
    if not (run / "study.journal").is_file():
        return []
    try:
        return optuna.load_study(study_name=STUDY_NAME, storage=open_storage(RunDir(run))).get_trials()
    except KeyError:  # the study is not created yet
        return []


def wait_until(what: str, check: Callable[[], object], procs: list[subprocess.Popen], limit: float = 600) -> object:
    """Poll `check` until it returns something truthy; fail if a worker exits early (or, as a
    guard against a hang only, after `limit` seconds)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        for proc in procs:  # a worker that exits (even cleanly) can no longer bring it about
            if proc.poll() is not None:
                raise AssertionError(f"a worker exited with {proc.returncode} while waiting for {what}: "
                                     f"{proc.stdout.read()[-2000:] if proc.stdout else ''}")
        time.sleep(0.2)
    raise AssertionError(f"gave up waiting for {what}")


def running_trial_of(run: Path, worker_prefix: str) -> optuna.trial.FrozenTrial | None:
    """A trial a worker is training (its architecture sampled, so a retry can run it again)."""
    for t in trials(run):
        worker = t.user_attrs.get("worker", "")
        if t.state == TS.RUNNING and "arch" in t.user_attrs and worker.startswith(worker_prefix):
            return t
    return None


def locks_free(run: Path) -> bool:
    """No lock is held: the run's, the journal's, the device gate's (a training step holds the
    gate shared; a process frozen holding a lock would block every other worker on this machine,
    which is the device gate's business, not what these tests are about)."""
    import torch

    from nas.measure.device_gate import gate_path, lock_path

    cpu = torch.device("cpu")
    for path in (run / ".claim.lock", run / "study.journal.flock", lock_path(cpu), gate_path(cpu)):
        if not path.exists():
            continue
        with open(path, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            fcntl.flock(handle, fcntl.LOCK_UN)
    return True


def freeze_mid_trial(proc: subprocess.Popen, run: Path) -> None:
    """SIGSTOP the worker while it trains, holding no lock."""
    while True:
        os.killpg(proc.pid, signal.SIGSTOP)
        if locks_free(run):
            return
        os.killpg(proc.pid, signal.SIGCONT)
        time.sleep(0.05)


@contextlib.contextmanager
def reaped(*procs: subprocess.Popen) -> Iterator[None]:
    try:
        yield
    finally:
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGCONT)
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=60)


def assert_tables_match_storage(run: Path, budget: int) -> None:
    found = trials(run)
    assert count_finished(found) == budget
    rows = read_rows(run)
    assert {int(r["number"]) for r in rows} == {t.number for t in found if t.state.is_finished()}
    assert sum(1 for t in found if is_finished(t)) == budget


# -- unit -----------------------------------------------------------------------------------------
def test_a_trial_is_stale_only_past_the_grace_period(tmp_path: Path) -> None:
    study = optuna.create_study(storage=open_storage(RunDir(tmp_path)), study_name=STUDY_NAME)
    beating, silent, done = study.ask(), study.ask(), study.ask()
    now = time.time()
    beating.set_user_attr("heartbeat", now - 1)
    silent.set_user_attr("heartbeat", now - 30)
    done.set_user_attr("heartbeat", now - 30)
    study.tell(done, 1.0)
    stale = list(stale_trials(study.get_trials(), Timing(interval=1, grace=10), now=now))
    assert [t.number for t in stale] == [silent.number]


# -- end to end -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_frozen_worker_loses_its_trial_and_its_late_result_is_not_counted(tmp_path: Path) -> None:
    budget = 3
    run = tmp_path / "runs" / "frozen"
    frozen = start(*ARGS, "--budget", str(budget), "--name", "frozen", cwd=tmp_path)
    with reaped(frozen):
        victim = wait_until("a trial in training", lambda: running_trial_of(run, ""), [frozen])
        freeze_mid_trial(frozen, run)
        other = start(*ARGS, "--budget", str(budget), "--name", "frozen", "--resume", cwd=tmp_path)
        with reaped(other):
            # the other worker fails the silent trial once the grace period has passed ...
            wait_until("the frozen trial failed as stale", lambda: next(
                (t for t in trials(run) if t.number == victim.number and t.state == TS.FAIL), None), [other])
            os.killpg(frozen.pid, signal.SIGCONT)  # ... and then the frozen worker wakes up
            out, _ = other.communicate(timeout=600)
            assert other.returncode == 0, out
            out, _ = frozen.communicate(timeout=600)
            assert frozen.returncode == 0, out
    found = {t.number: t for t in trials(run)}
    lost = found[victim.number]
    assert lost.state == TS.FAIL and lost.user_attrs["interrupted"], "the late result must not be counted"
    retries = [t for t in found.values() if t.user_attrs.get("retry_of") == victim.number]
    assert len(retries) == 1 and retries[0].params == victim.params and is_finished(retries[0])
    assert_tables_match_storage(run, budget)


@pytest.fixture
def _uts_namespace() -> None:
    """`unshare -u` works here; else skip, or fail under CI=true (tests/conftest.py)."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-u", "true"], capture_output=True).returncode:
        skip_or_fail("needs `unshare -u` (a UTS namespace)")


@pytest.mark.slow
@pytest.mark.usefixtures("_uts_namespace")
def test_a_worker_on_another_host_neither_steals_nor_strands_trials(tmp_path: Path) -> None:
    budget = 6
    run = tmp_path / "runs" / "hosts"
    longer = ["--max-train", "1200", "--epochs", "3"]  # trials long enough for the second worker to join
    # the same run from "another machine": its own hostname (UTS namespace), and a pid that may
    # well repeat one of this host's
    elsewhere = ["unshare", "-u", "sh", "-c", 'hostname elsewhere && exec "$0" "$@"']
    there = start(*ARGS, *longer, "--budget", str(budget), "--name", "hosts", cwd=tmp_path, prefix=elsewhere)
    with reaped(there):
        wait_until("a trial on the other host", lambda: running_trial_of(run, "elsewhere:"), [there])
        here = start(*ARGS, *longer, "--budget", str(budget), "--name", "hosts", "--resume", cwd=tmp_path)
        with reaped(here):
            # both machines live and working: neither may take the other's trials
            wait_until("a trial finished here", lambda: any(
                t.state.is_finished() and t.user_attrs.get("worker", "").startswith(f"{socket.gethostname()}:")
                for t in trials(run)), [here, there])
            victim = wait_until("a trial on the other host", lambda: running_trial_of(run, "elsewhere:"),
                                [here, there])
            os.killpg(there.pid, signal.SIGKILL)  # that machine dies mid-trial
            there.wait(timeout=60)
            out, _ = here.communicate(timeout=600)
            assert here.returncode == 0, out
    found = trials(run)
    interrupted = [t for t in found if t.state == TS.FAIL and t.user_attrs.get("interrupted")]
    assert [t.number for t in interrupted] == [victim.number], "only the dead host's trial is failed"
    retry = [t for t in found if t.user_attrs.get("retry_of") == victim.number]
    assert len(retry) == 1 and is_finished(retry[0])
    assert retry[0].user_attrs["worker"].startswith(f"{socket.gethostname()}:")  # picked up here
    assert not any(t.state == TS.RUNNING for t in found), "no trial is left running"
    assert_tables_match_storage(run, budget)


@pytest.mark.slow
def test_three_workers_leave_results_csv_equal_to_the_storage(tmp_path: Path) -> None:
    budget = 5
    run = tmp_path / "runs" / "three"
    first = start(*ARGS, "--epochs", "1", "--budget", str(budget), "--name", "three", cwd=tmp_path)
    with reaped(first):
        wait_until("the run's study", lambda: trials(run), [first])
        rest = [start(*ARGS, "--epochs", "1", "--budget", str(budget), "--name", "three", "--resume", cwd=tmp_path)
                for _ in range(2)]
        with reaped(*rest):
            for proc in (first, *rest):
                out, _ = proc.communicate(timeout=600)
                assert proc.returncode == 0, out
    assert_tables_match_storage(run, budget)
    rows = {int(r["number"]): r for r in read_rows(run)}
    for t in trials(run):
        if t.state == TS.COMPLETE:
            assert float(rows[t.number]["accuracy"]) == pytest.approx(t.user_attrs["accuracy"])
