"""File locks between processes of one host: the one place nas calls `flock`.

What they protect: state that several nas processes on one machine read and write at once,
e.g. a run's claims and result tables, the journal storage, the step-time cache and the
device gate. The locks are `flock(2)` locks:

- *advisory*: they exclude only processes that take the same lock; nothing stops a writer
  that does not ask;
- *per host*: they are reliable on local file systems only. On NFS and other network file
  systems flock may be emulated, ignored or fail, so processes on different machines must
  share state through a server (PostgreSQL), not through these locks;
- *per open file*: a lock belongs to the open file description, so two `open`s of one file
  exclude each other even within one process (use one `FileLock` per holder, or the
  thread lock it carries), and a forked child shares its parent's lock until both close;
- *released by the kernel* when the holder closes the descriptor or dies, so a killed
  process can never leave a stale lock behind (unlike lock files or symlinks).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

_POLL_START_S = 0.005  # first wait between non-blocking attempts when a timeout is given
_POLL_MAX_S = 0.1


def open_lock_file(path: str | os.PathLike[str]) -> int:
    """A descriptor for the lock file at `path`, created if missing.

    Falls back to a read-only descriptor when the file belongs to another user (a shared
    /tmp): flock works on those too.
    """
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:
        return os.open(path, os.O_RDONLY)


def lock_fd(fd: int, *, shared: bool = False, timeout: float | None = None) -> bool:
    """Lock the open file `fd`, exclusive or shared; True once held.

    `timeout` None waits as long as it takes; otherwise give up after that many seconds
    (0: one attempt) and return False.
    """
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    if timeout is None:
        fcntl.flock(fd, mode)
        return True
    deadline = time.monotonic() + timeout
    pause = _POLL_START_S
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return True
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        # flock has no timed wait: poll, backing off so a long wait costs little CPU
        time.sleep(min(pause, left))
        pause = min(pause * 2, _POLL_MAX_S)


def unlock_fd(fd: int) -> None:
    """Release the lock on `fd` but keep the descriptor open (closing it also releases)."""
    fcntl.flock(fd, fcntl.LOCK_UN)


@contextlib.contextmanager
def file_lock(path: str | os.PathLike[str], *, shared: bool = False,
              timeout: float | None = None) -> Iterator[None]:
    """Hold a lock on `path` for the `with` block; raise TimeoutError after `timeout` seconds.

    Every call opens its own descriptor, so it is safe from any thread; it is not re-entrant
    (a nested exclusive lock on the same path in one thread waits for itself).
    """
    fd = open_lock_file(path)
    try:
        if not lock_fd(fd, shared=shared, timeout=timeout):
            raise TimeoutError(f"lock {os.fspath(path)} is still held by another process after {timeout} s")
        yield
    finally:
        os.close(fd)  # closing the only descriptor releases the lock


class FileLock:
    """A reusable exclusive lock on one file, with `acquire()`/`release()` and `with`.

    Threads of one process that share this object are serialised by a thread lock before
    the flock is taken, so it can stand in wherever a lock object is expected, e.g. as
    Optuna's `JournalFileBackend(lock_obj=...)`, whose `BaseJournalFileLock` shape it has.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._thread_lock = threading.Lock()
        self._fd: int | None = None

    def acquire(self, timeout: float | None = None) -> bool:
        """Take the lock; with `timeout` (seconds) return False instead of waiting longer."""
        started = time.monotonic()
        if not self._thread_lock.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
            return False
        fd: int | None = None
        try:
            fd = open_lock_file(self.path)
            left = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
            if lock_fd(fd, timeout=left):
                self._fd, fd = fd, None
                return True
            return False
        finally:
            if fd is not None:  # not held: give back the descriptor and the thread lock
                try:
                    os.close(fd)
                finally:
                    self._thread_lock.release()
            elif self._fd is None:  # opening the file failed
                self._thread_lock.release()

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.close(fd)
        finally:
            self._thread_lock.release()

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()
