"""nas.records.file_lock against real processes: exclusion, shared holders, a killed holder, threads."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from nas.records.file_lock import FileLock, file_lock

_HOLDER = """
import sys
from nas.records.file_lock import file_lock
with file_lock(sys.argv[1], shared=sys.argv[2] == "shared"):
    print("held", flush=True)
    sys.stdin.readline()  # hold until the test writes a line or closes stdin
"""


@contextmanager
def held_by_other_process(path: Path, shared: bool = False) -> Iterator[subprocess.Popen[str]]:
    """A child process that holds the lock on `path` until the block ends."""
    child = subprocess.Popen([sys.executable, "-c", _HOLDER, str(path), "shared" if shared else "exclusive"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        yield child
    finally:
        if child.poll() is None:
            child.stdin.close()  # type: ignore[union-attr]
            child.wait()


def test_exclusive_lock_excludes_another_process_until_it_lets_go(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    with held_by_other_process(path):
        with pytest.raises(TimeoutError, match="x.lock"), file_lock(path, timeout=0):
            pass
        with pytest.raises(TimeoutError), file_lock(path, shared=True, timeout=0.05):
            pass
    with file_lock(path, timeout=0):  # released when the holder left its block
        pass


def test_shared_holders_coexist_and_keep_out_an_exclusive_one(tmp_path: Path) -> None:
    path = tmp_path / "s.lock"
    with held_by_other_process(path, shared=True), file_lock(path, shared=True, timeout=0), \
            pytest.raises(TimeoutError), file_lock(path, timeout=0):
        pass


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    path = tmp_path / "k.lock"
    with held_by_other_process(path) as child:
        child.kill()
        child.wait()
        with file_lock(path, timeout=None):  # blocks for ever if the kernel kept the lock
            pass
    assert path.exists()  # the lock file itself stays; only the lock is gone


def test_file_lock_object_times_out_then_acquires(tmp_path: Path) -> None:
    lock = FileLock(tmp_path / "o.lock")
    with held_by_other_process(lock.path):
        assert lock.acquire(timeout=0.05) is False
    assert lock.acquire(timeout=0) is True
    lock.release()
    lock.release()  # releasing a lock not held is a no-op


def test_file_lock_object_serialises_threads_of_one_process(tmp_path: Path) -> None:
    lock = FileLock(tmp_path / "t.lock")
    inside = 0
    overlaps: list[int] = []
    start = threading.Barrier(4)

    def worker() -> None:
        nonlocal inside
        start.wait()
        for _ in range(200):
            with lock:
                inside += 1
                if inside != 1:
                    overlaps.append(inside)
                inside -= 1

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert overlaps == []


def test_file_lock_object_serves_as_optuna_journal_lock(tmp_path: Path) -> None:
    journal = str(tmp_path / "study.journal")
    storage = JournalStorage(JournalFileBackend(journal, lock_obj=FileLock(journal + ".flock")))
    study = optuna.create_study(storage=storage, study_name="s")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    reopened = optuna.load_study(storage=JournalStorage(JournalFileBackend(journal)), study_name="s")
    assert len(reopened.trials) == 3
