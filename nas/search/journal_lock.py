"""A journal-storage lock that a killed process cannot leave behind.

Optuna's default `JournalFileSymlinkLock` marks the lock with a symlink that survives a
SIGKILL of its holder. Its stale-lock recovery stats the symlink's *target*; with a relative
journal path that target does not resolve from the symlink's folder, so the stale lock is
never recovered and every later process spins forever (seen in CI after a kill landed inside
a journal write). `flock` locks belong to the open file and the kernel drops them when the
holder dies, so there is nothing to recover and no grace period to wait out.
"""

from __future__ import annotations

import fcntl
import os
import threading


class FlockJournalLock:
    """Exclusive lock on `<journal>.flock`, shaped like Optuna's `BaseJournalFileLock`.

    Duck-typed rather than subclassed: the base class lives in a private Optuna module.
    Threads of one process are serialised by a thread lock first, because flock is per
    open file description and each acquire opens its own.
    """

    def __init__(self, journal_path: str) -> None:
        self.path = journal_path + ".flock"
        self._thread_lock = threading.Lock()
        self._fd: int | None = None

    def acquire(self) -> bool:
        self._thread_lock.acquire()
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            self._thread_lock.release()
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.close(fd)  # closing the only descriptor drops the flock
        finally:
            self._thread_lock.release()
