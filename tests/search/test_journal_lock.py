"""The journal lock survives its holder being killed (the CI failure of session 1)."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from nas.records.runs import RunDir

pytestmark = pytest.mark.slow  # real processes and searches

# the lock the run's own storage uses, taken as a journal write would take it
HOLD_LOCK = """
import sys, time
from pathlib import Path
from nas.records.runs import RunDir
from nas.search.study import open_storage
open_storage(RunDir(Path(sys.argv[1])))._backend._lock.acquire()
print("held", flush=True)
time.sleep(600)
"""
WRITE_TRIALS = """
import sys
from pathlib import Path
import optuna
from nas.records.runs import RunDir
from nas.search.study import open_storage
study = optuna.create_study(study_name="after-kill", storage=open_storage(RunDir(Path(sys.argv[1]))))
study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
print(len(study.trials))
"""


def _is_locked(path: str) -> bool:
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_lock_of_a_killed_holder_is_free_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a relative run path, as `nas search` uses by default: the case Optuna's symlink lock never recovers
    monkeypatch.chdir(tmp_path)
    run = RunDir(Path("runs") / "killed")
    run.path.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run.path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
    # in a child with a timeout: Optuna's own lock would make this spin forever (a flock is free
    # the moment its holder dies, so there is no grace period to wait out)
    writer = subprocess.run([sys.executable, "-c", WRITE_TRIALS, str(run.path)],
                            capture_output=True, text=True, timeout=60)
    assert writer.returncode == 0, writer.stderr
    assert writer.stdout.strip() == "2"
