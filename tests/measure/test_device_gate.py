"""The device gate: measurements exclude each other and other processes' training steps."""

from __future__ import annotations

import contextlib
import fcntl
import multiprocessing as mp
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from nas.measure import device_gate
from nas.measure.device_gate import exclusive_device, gate_path, lock_path, shared_device

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def private_gate(tmp_path, monkeypatch) -> str:
    """Gate files of this test's own: other nas processes on the machine (searches, other test
    runs) use the system temp folder's gate and must not decide these tests."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return str(tmp_path)


def _exec_in_tmp(tmp: str, code: str, scope: dict[str, Any]) -> None:
    """Target of spawned children: run `code` with the parent's private gate files."""
    tempfile.tempdir = tmp
    exec(code, scope)


def test_lock_file_name() -> None:
    assert lock_path(CPU).parent == Path(tempfile.gettempdir())
    assert lock_path(CPU).name == "nas-measure-cpu.lock"


# Runs in a spawned child via the builtin `exec`, so the child need not import this test module
# (it is not importable under pytest's importlib mode). First attempt while the parent holds the
# lock, second after the parent released it.
_CHILD = """
import torch
from nas.measure.device_gate import exclusive_device
cpu = torch.device("cpu")
held.wait(30)
try:
    with exclusive_device(cpu, timeout=0.3):
        results.put("acquired")
except TimeoutError:
    results.put("held")
released.wait(30)
with exclusive_device(cpu, timeout=30):
    results.put("acquired")
"""


def test_exclusive_device_excludes_other_process(private_gate) -> None:
    ctx = mp.get_context("spawn")
    held, released, results = ctx.Event(), ctx.Event(), ctx.Queue()
    scope = {"held": held, "released": released, "results": results}
    child = ctx.Process(target=_exec_in_tmp, args=(private_gate, _CHILD, scope))
    child.start()
    try:
        with exclusive_device(CPU):
            held.set()
            assert results.get(timeout=30) == "held"
        released.set()
        assert results.get(timeout=30) == "acquired"
    finally:
        child.join(30)
        if child.is_alive():
            child.kill()
    assert child.exitcode == 0


def test_exclusive_device_reentrant_and_excludes_threads() -> None:
    outcome: list[str] = []

    def other_thread() -> None:
        try:
            with exclusive_device(CPU, timeout=0.1):
                outcome.append("acquired")
        except TimeoutError:
            outcome.append("held")

    with exclusive_device(CPU), exclusive_device(CPU):  # nesting in one thread must not deadlock
        t = threading.Thread(target=other_thread)
        t.start()
        t.join()
    assert outcome == ["held"]
    t = threading.Thread(target=other_thread)
    t.start()
    t.join()
    assert outcome == ["held", "acquired"]


def test_forked_child_does_not_keep_the_lock() -> None:
    ctx = mp.get_context("fork")
    release = ctx.Event()
    with exclusive_device(CPU):
        # a child forked while the lock is held (like a DataLoader worker) outlives the hold
        child = ctx.Process(target=release.wait, args=(30,))
        child.start()
    try:
        with exclusive_device(CPU, timeout=5):
            pass
    finally:
        release.set()
        child.join(30)


# A trainer in a spawned child: enters one step, reports, and leaves it when told.
_TRAINER = """
import torch
from nas.measure.device_gate import shared_device
with shared_device(torch.device("cpu")):
    results.put("in step")
    leave.wait(30)
results.put("left")
with shared_device(torch.device("cpu")):  # a next step after the measurement
    results.put("next step")
"""


@contextlib.contextmanager
def _trainer_in_a_step() -> Iterator[tuple[Any, Any]]:
    """Spawn `_TRAINER`, wait until it is inside its step; yields (leave event, results queue)."""
    ctx = mp.get_context("spawn")
    leave, results = ctx.Event(), ctx.Queue()
    scope = {"leave": leave, "results": results}
    child = ctx.Process(target=_exec_in_tmp, args=(tempfile.gettempdir(), _TRAINER, scope))
    child.start()
    try:
        assert results.get(timeout=30) == "in step"
        yield leave, results
    finally:
        leave.set()
        child.join(30)
        if child.is_alive():
            child.kill()
    assert child.exitcode == 0


def _wait_for_the_flag() -> None:
    """Until a measurer holds the turnstile and waits (its flag raised); polls that state."""
    deadline = time.monotonic() + 60  # guards against a hang only
    while not device_gate._flag(CPU).raised() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert device_gate._flag(CPU).raised(), "the measurer raised its flag"


def test_measurement_waits_for_a_step_in_flight_and_holds_back_the_next() -> None:
    with _trainer_in_a_step() as (leave, results):
        with pytest.raises(TimeoutError, match="training steps"), exclusive_device(CPU, timeout=0.3):
            pass
        holding, release = threading.Event(), threading.Event()

        def measure() -> None:
            with exclusive_device(CPU, timeout=60):
                holding.set()
                release.wait(30)

        measurer = threading.Thread(target=measure)
        measurer.start()
        try:
            # the measurer waits at the gate before the trainer leaves its step (were the trainer
            # to leave first, its next step could rightly start before anyone waited)
            _wait_for_the_flag()
            assert not holding.is_set(), "it waits for the step in flight"
            leave.set()
            assert holding.wait(30), "the trainer let go after its step"
            assert results.get(timeout=30) == "left"
            time.sleep(0.3)  # a chance for a wrong next step to show; none may, however long
            assert results.empty(), "no step starts while the measurement holds the device"
        finally:
            release.set()
            measurer.join(30)
        assert results.get(timeout=30) == "next step"


def test_trainers_share_the_gate() -> None:
    with _trainer_in_a_step():
        done = threading.Event()

        def step() -> None:
            with shared_device(CPU):  # while the child is inside its step
                done.set()

        thread = threading.Thread(target=step)
        thread.start()
        thread.join(10)
        assert done.is_set(), "a second trainer must not wait for the first"


def test_steps_inside_this_process_measurement_do_not_deadlock() -> None:
    # e.g. the measuring process evaluating: its own work is what is timed
    with exclusive_device(CPU), shared_device(CPU):
        pass


def test_gate_and_turnstile_are_separate_files() -> None:
    assert gate_path(CPU) != lock_path(CPU) and gate_path(CPU).parent == lock_path(CPU).parent


def _gate_held_by_someone(device: torch.device, mode: int) -> bool:
    """Whether another open file on the gate could not take it in `mode` now."""
    fd = os.open(gate_path(device), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def test_a_trainer_synchronises_before_it_lets_go(monkeypatch) -> None:
    """Always, not only when it sees a measurer waiting: one could arrive right after it looked."""
    held_at_sync: list[bool] = []
    monkeypatch.setattr(device_gate, "synchronize",
                        lambda device: held_at_sync.append(_gate_held_by_someone(device, fcntl.LOCK_EX)))
    with shared_device(CPU):
        assert held_at_sync == []
    assert held_at_sync == [True], "the trainer synchronises once, while it still holds the gate"
    assert not _gate_held_by_someone(CPU, fcntl.LOCK_EX)


def test_a_measurer_drains_the_device_once_it_holds_it(monkeypatch) -> None:
    held_at_sync: list[bool] = []
    monkeypatch.setattr(device_gate, "synchronize",
                        lambda device: held_at_sync.append(_gate_held_by_someone(device, fcntl.LOCK_SH)))
    with exclusive_device(CPU), exclusive_device(CPU):
        assert held_at_sync == [True], "drained once, with the gate already exclusive"
    assert held_at_sync == [True]


# A trainer whose step leaves "kernels" queued: its synchronize waits until the parent says they
# ended (an Event stands in for the GPU finishing), so the test sequences without sleeps.
_QUEUED_TRAINER = """
import torch
import nas.measure.device_gate as gate

def synchronize(device):
    results.put("draining")
    kernels_done.wait(30)

gate.synchronize = synchronize
with gate.shared_device(torch.device("cpu")):
    results.put("in step")
results.put("left")
"""


def test_a_measurement_cannot_start_before_a_trainers_queued_work_ends(private_gate) -> None:
    ctx = mp.get_context("spawn")
    kernels_done, results = ctx.Event(), ctx.Queue()
    scope = {"kernels_done": kernels_done, "results": results}
    child = ctx.Process(target=_exec_in_tmp, args=(private_gate, _QUEUED_TRAINER, scope))
    child.start()
    try:
        assert results.get(timeout=30) == "in step"
        assert results.get(timeout=30) == "draining"  # the step returned; its work is still queued
        with pytest.raises(TimeoutError, match="training steps"), exclusive_device(CPU, timeout=0.3):
            pass
        kernels_done.set()
        with exclusive_device(CPU, timeout=30):
            assert results.get(timeout=30) == "left"
    finally:
        kernels_done.set()
        child.join(30)
        if child.is_alive():
            child.kill()
    assert child.exitcode == 0



# -- a trainer that holds its share across steps (holding_device) -----------------------------
def test_inside_a_training_steps_keep_the_share_and_never_synchronise(monkeypatch) -> None:
    syncs: list[bool] = []
    monkeypatch.setattr(device_gate, "synchronize",
                        lambda device: syncs.append(_gate_held_by_someone(device, fcntl.LOCK_EX)))
    with device_gate.holding_device(CPU):
        for _ in range(5):
            with shared_device(CPU):
                pass
            assert _gate_held_by_someone(CPU, fcntl.LOCK_EX), "the share is kept between steps"
        assert syncs == [], "no synchronisation while nobody measures"
    assert syncs == [True], "one synchronisation at the end, while still holding the gate"
    assert not _gate_held_by_someone(CPU, fcntl.LOCK_EX)


def test_a_stale_waiting_flag_does_not_make_trainers_let_go() -> None:
    # a measurer that died with the flag raised: the turnstile is free, so nobody waits
    device_gate._flag(CPU).set(1)
    with device_gate.holding_device(CPU):
        for _ in range(3):
            with shared_device(CPU):
                pass
            assert _gate_held_by_someone(CPU, fcntl.LOCK_EX)
    device_gate._flag(CPU).set(0)


def test_this_processs_own_measurement_between_steps_does_not_wait_for_itself() -> None:
    with device_gate.holding_device(CPU):
        with shared_device(CPU):
            pass
        # lets go of its own share first; its own work inside the measurement is what is timed
        with exclusive_device(CPU, timeout=5), shared_device(CPU):
            pass
        with shared_device(CPU):  # and takes it again for the next step
            pass
        assert _gate_held_by_someone(CPU, fcntl.LOCK_EX)


# A measurer in a spawned child: says when it measures, holds until told, says when it leaves.
_MEASURER = """
import torch
from nas.measure.device_gate import exclusive_device
with exclusive_device(torch.device("cpu"), timeout=60):
    measuring.set()
    release.wait(30)
    leaving.set()
"""


def test_a_waiting_measurer_gets_the_device_after_the_step_in_flight() -> None:
    ctx = mp.get_context("spawn")
    measuring, release, leaving = ctx.Event(), ctx.Event(), ctx.Event()
    scope = {"measuring": measuring, "release": release, "leaving": leaving}
    child = None
    try:
        with device_gate.holding_device(CPU):
            with shared_device(CPU):  # a step in flight when the measurer comes
                child = ctx.Process(target=_exec_in_tmp, args=(tempfile.gettempdir(), _MEASURER, scope))
                child.start()
                _wait_for_the_flag()
                assert not measuring.is_set(), "it waits for the step in flight"
            assert measuring.wait(30), "the trainer let go after its step"
            entered_after_leaving: list[bool] = []

            def next_step() -> None:
                with shared_device(CPU):
                    entered_after_leaving.append(leaving.is_set())

            thread = threading.Thread(target=next_step)
            thread.start()
            release.set()
            thread.join(30)
            assert entered_after_leaving == [True], "the next step starts only after the measurement"
    finally:
        release.set()
        if child is not None:
            child.join(30)
            if child.is_alive():
                child.kill()
    assert child.exitcode == 0
