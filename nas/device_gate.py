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

One process trains one trial at a time; a thread that measures while another thread of the
same process trains would not wait for it (the process's own locks are not excluded).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from nas.device import synchronize
from nas.file_lock import lock_fd, open_lock_file, unlock_fd


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
        self.count = 0  # threads of this process inside a step


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
            turnstile = open_lock_file(path)
            if not _flock(turnstile, deadline):
                _close((turnstile,))
                raise TimeoutError(f"device lock {path} is held by another process")
            gate = open_lock_file(gate_path(device))
            if not _flock(gate, deadline):
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
                _close(exclusive.fds[::-1])
                exclusive.fds = None
    finally:
        exclusive.thread_lock.release()


@contextlib.contextmanager
def shared_device(device: torch.device) -> Iterator[None]:
    """Hold `device` for one training step (or evaluation pass) alongside other trainers.

    Waits while a measurement holds the device; costs four `flock` calls when none does, and
    on CUDA a synchronisation when it lets go.
    """
    path = lock_path(device)
    with _GUARD:
        exclusive = _EXCLUSIVE.get(path)
        if exclusive is not None and exclusive.depth > 0:
            shared = None  # this process is measuring: its own steps are the ones being timed
        else:
            shared = _SHARED.get(path)
            if shared is None:
                shared = _SHARED[path] = _Shared(device)
    if shared is None:
        yield
        return
    with shared.lock:
        if shared.count == 0:
            lock_fd(shared.turnstile)  # a measurer holds it: wait for its end
            unlock_fd(shared.turnstile)
            lock_fd(shared.gate, shared=True)
        shared.count += 1
    try:
        yield
    finally:
        with shared.lock:
            shared.count -= 1
            if shared.count == 0:
                # the hold ends when the step's kernels end, always (see the module docstring);
                # on the CPU this is a no-op
                synchronize(device)
                unlock_fd(shared.gate)
