"""A per-device gate across processes: training steps pass it together, a measurement closes it.

Trials that share a device (Optuna workers, Ray actors on one node) must not time each other's
work. A measurement alone holding a lock is not enough: the other trials keep training and
slow the timed steps down (2.2x on 2 CPU cores, benchmarks/measure_concurrency.py). So every
training step holds the device's *gate* shared, and a measurement holds it exclusive: it first
takes the *turnstile* (which also orders measurements one after another), so no new step can
start, then waits for the steps in flight to end. Both are `flock` locks on files in the temp
folder, which the kernel releases when a holder dies, so a killed trial cannot wedge the gate.

On CUDA a step "ends" twice: the Python call returns while its kernels are still queued (the
host runs several steps ahead). Another process's measurement cannot wait for those kernels
(`torch.cuda.synchronize` waits only for its own), so a trainer always synchronises before it
lets go of the gate: its hold ends when its GPU work ends, with no decision that a measurer
arriving a moment later could slip past. A measurer synchronises too once it holds the device,
so its own queued work (its last training steps) is not timed either.

Inside `holding_device` (a whole proxy training) a trainer keeps its share *between* steps and
lets go only when a measurer is waiting, so nobody measuring costs a step nothing: no lock call,
no synchronisation, the host runs ahead of the GPU as in a plain loop. A measurer says it waits
in a one-byte flag file that every trainer maps into memory (reading it is a memory load); the
flag is trusted only while the turnstile is really held, so a measurer that died with the flag
set costs trainers a lock test per step, never a wedge. A measurer waits at most for the step
in flight, as before.

One process trains one trial at a time; a thread that measures while another thread of the
same process trains would not wait for it (the process's own locks are not excluded).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from nas.measure.device import synchronize
from nas.records.file_lock import lock_fd, open_lock_file, unlock_fd


def _device_slug(device: torch.device) -> str:
    """File-name-safe identity of the physical device the gate protects."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        # The UUID names the physical GPU even when CUDA_VISIBLE_DEVICES renumbers devices
        # (Ray gives every trial its own "cuda:0"); fall back to the index without it.
        uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
        if uuid is not None:
            return "cuda-" + re.sub(r"[^A-Za-z0-9]+", "", str(uuid))
        return f"cuda{index}"
    # every process on the host shares the CPU cores, whatever their index
    return re.sub(r"[^A-Za-z0-9]+", "", device.type)


def lock_path(device: torch.device) -> Path:
    """The turnstile: held by the one measurement running on `device`."""
    return Path(tempfile.gettempdir()) / f"nas-measure-{_device_slug(device)}.lock"


def gate_path(device: torch.device) -> Path:
    """The gate: shared by training steps on `device`, exclusive to a measurement."""
    return lock_path(device).with_suffix(".gate")


def flag_path(device: torch.device) -> Path:
    """One byte, 1 while a measurer holds the turnstile and waits for (or holds) the gate."""
    return lock_path(device).with_suffix(".waiting")


class _Flag:
    """The waiting flag of one device, mapped into this process's memory (None where the file
    cannot be mapped, e.g. another user's read-only file: trainers then test the turnstile)."""

    def __init__(self, device: torch.device) -> None:
        self.map: mmap.mmap | None = None
        try:
            fd = os.open(flag_path(device), os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:
            return
        try:
            if os.fstat(fd).st_size < 1:
                os.ftruncate(fd, 1)
            self.map = mmap.mmap(fd, 1)
        except (OSError, ValueError):
            self.map = None
        finally:
            os.close(fd)  # the mapping outlives the descriptor

    def raised(self) -> bool:
        return self.map is None or self.map[0] != 0

    def set(self, value: int) -> None:
        if self.map is not None:
            self.map[0] = value


_FLAGS: dict[Path, _Flag] = {}


def _flag(device: torch.device) -> _Flag:
    path = flag_path(device)
    if path not in _FLAGS:
        _FLAGS[path] = _Flag(device)
    return _FLAGS[path]


def _flock(fd: int, deadline: float | None, shared: bool = False) -> bool:
    """`lock_fd` until a monotonic deadline (one timeout shared by the turnstile and the gate)."""
    return lock_fd(fd, shared=shared, timeout=None if deadline is None else max(0.0, deadline - time.monotonic()))


class _Exclusive:
    """This process's hold on one device as a measurer: flock is per open file, so nesting in
    one process must reuse the descriptors instead of deadlocking on second ones."""

    def __init__(self) -> None:
        self.thread_lock = threading.RLock()  # excludes other threads of this process
        self.fds: tuple[int, int] | None = None  # (turnstile, gate) while held
        self.depth = 0


class _Shared:
    """This process's hold on one device's gate as a trainer (descriptors opened once)."""

    def __init__(self, device: torch.device) -> None:
        self.lock = threading.Lock()
        self.turnstile = open_lock_file(lock_path(device))
        self.gate = open_lock_file(gate_path(device))
        self.flag = _flag(device)
        self.count = 0  # threads of this process inside a step
        self.sessions = 0  # `holding_device` blocks open: keep the share between steps
        self.held = False  # this process holds the gate shared

    def measurer_waiting(self) -> bool:
        """A measurer holds the turnstile: the flag says so, and the turnstile confirms it."""
        if not self.flag.raised():
            return False
        if lock_fd(self.turnstile, shared=True, timeout=0):
            unlock_fd(self.turnstile)
            return False  # a stale flag (its measurer died): nobody waits
        return True

    def let_go(self, device: torch.device) -> None:
        """Synchronise, then release the gate (the caller holds `self.lock`, no step in flight)."""
        if self.held:
            # the hold ends when the steps' kernels end, always (see the module docstring); on
            # the CPU this is a no-op
            synchronize(device)
            unlock_fd(self.gate)
            self.held = False


_EXCLUSIVE: dict[Path, _Exclusive] = {}
_SHARED: dict[Path, _Shared] = {}
_GUARD = threading.Lock()


def _forget_locks_in_child() -> None:
    # A forked child (e.g. a DataLoader worker) shares the parent's lock descriptors; closing its
    # copies keeps it from holding the device after the parent lets go.
    global _GUARD
    for exclusive in _EXCLUSIVE.values():
        for fd in exclusive.fds or ():
            with contextlib.suppress(OSError):
                os.close(fd)
        exclusive.fds = None  # so a `with` block the child unwinds cannot close a reused descriptor
    for shared in _SHARED.values():
        for fd in (shared.turnstile, shared.gate):
            with contextlib.suppress(OSError):
                os.close(fd)
    _EXCLUSIVE.clear()
    _SHARED.clear()
    _FLAGS.clear()
    _GUARD = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_locks_in_child)


def _close(fds: tuple[int, ...]) -> None:
    for fd in fds:
        os.close(fd)  # closing the descriptor releases its flock


@contextlib.contextmanager
def exclusive_device(device: torch.device, timeout: float | None = None) -> Iterator[None]:
    """Hold `device` for a measurement: other measurements wait, and training steps of other
    processes stop after the ones in flight. Re-entrant within a thread. With `timeout`
    (seconds) raise TimeoutError instead of waiting longer."""
    path = lock_path(device)
    with _GUARD:
        exclusive = _EXCLUSIVE.setdefault(path, _Exclusive())
    deadline = None if timeout is None else time.monotonic() + timeout
    if not exclusive.thread_lock.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
        raise TimeoutError(f"device lock {path} is held by another thread")
    try:
        if exclusive.depth == 0:
            _let_go_of_own_share(device)  # this process's own share would keep the gate from it
            turnstile = open_lock_file(path)
            if not _flock(turnstile, deadline):
                _close((turnstile,))
                raise TimeoutError(f"device lock {path} is held by another process")
            flag = _flag(device)
            flag.set(1)  # trainers holding their share between steps let go after their step
            gate = open_lock_file(gate_path(device))
            if not _flock(gate, deadline):
                flag.set(0)
                _close((gate, turnstile))
                raise TimeoutError(f"device {gate_path(device)} is busy with training steps of another process")
            exclusive.fds = (turnstile, gate)
            synchronize(device)  # drain this process's own queued work before anything is timed
        exclusive.depth += 1
        try:
            yield
        finally:
            exclusive.depth -= 1
            if exclusive.depth == 0 and exclusive.fds is not None:
                _flag(device).set(0)  # before the turnstile opens: the next measurer raises it again
                _close(exclusive.fds[::-1])
                exclusive.fds = None
    finally:
        exclusive.thread_lock.release()


def _let_go_of_own_share(device: torch.device) -> None:
    shared = _SHARED.get(lock_path(device))
    if shared is not None:
        with shared.lock:
            if shared.count == 0:
                shared.let_go(device)


@contextlib.contextmanager
def holding_device(device: torch.device) -> Iterator[None]:
    """Keep this process's share of `device` between the steps inside the block (a whole proxy
    training): steps then cost no lock call and no synchronisation unless a measurer waits."""
    shared = _shared_for(device)
    if shared is None:  # this process is measuring: its own steps are the ones being timed
        yield
        return
    with shared.lock:
        shared.sessions += 1
    try:
        yield
    finally:
        with shared.lock:
            shared.sessions -= 1
            if shared.sessions == 0 and shared.count == 0:
                shared.let_go(device)


def _shared_for(device: torch.device) -> _Shared | None:
    path = lock_path(device)
    with _GUARD:
        exclusive = _EXCLUSIVE.get(path)
        if exclusive is not None and exclusive.depth > 0:
            return None
        shared = _SHARED.get(path)
        if shared is None:
            shared = _SHARED[path] = _Shared(device)
        return shared


@contextlib.contextmanager
def shared_device(device: torch.device) -> Iterator[None]:
    """Hold `device` for one training step (or evaluation pass) alongside other trainers.

    Waits while a measurement holds the device. Outside `holding_device` it costs four `flock`
    calls and, on CUDA, a synchronisation when it lets go; inside, nothing unless a measurer waits.
    """
    shared = _shared_for(device)
    if shared is None:  # this process is measuring: its own steps are the ones being timed
        yield
        return
    with shared.lock:
        if shared.count == 0 and not shared.held:
            lock_fd(shared.turnstile)  # a measurer holds it: wait for its end
            unlock_fd(shared.turnstile)
            lock_fd(shared.gate, shared=True)
            shared.held = True
        shared.count += 1
    try:
        yield
    finally:
        with shared.lock:
            shared.count -= 1
            if shared.count == 0 and (shared.sessions == 0 or shared.measurer_waiting()):
                shared.let_go(device)
