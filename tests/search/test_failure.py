"""One classifier for how a trial ended, for every backend; a poisoned worker stops and its trial
runs again elsewhere."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch

from nas.cli import main
from nas.search import lifecycle
from nas.search.failure import FAIL, INTERRUPTED, Outcome, classify_error, poisons_process
from nas.spec.arch import Arch
from nas.spec.errors import TrialError
from nas.spec.space import SearchSpace
from tests.search.test_optuna_backend import FAST, load_trials, read_rows

ARCH: Arch = SearchSpace.load("tiny").reference
CUDA_FAULT = "CUDA error: an illegal memory access was encountered"


@pytest.mark.parametrize("error, state, poisoned", [
    (TrialError("diverged: loss is nan at epoch 1"), FAIL, False),
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), FAIL, False),
    (ValueError("a bug the candidate triggers"), FAIL, False),
    (RuntimeError(CUDA_FAULT), INTERRUPTED, True),
    (KeyboardInterrupt(), INTERRUPTED, False),
])
def test_each_way_a_trial_ends_is_classified_once(error: BaseException, state: str, poisoned: bool) -> None:
    found = classify_error(error, ARCH, 1.5)
    assert (found.state, found.poisoned) == (state, poisoned)
    assert found.reason and found.attrs["arch"] == ARCH.to_string()
    if state == INTERRUPTED:
        assert found.reason.startswith("interrupted")  # not counted toward the budget


def test_an_outcome_travels_as_plain_data() -> None:
    sent = Outcome("COMPLETE", {"accuracy": 0.5, "arch": "x"}, history=[{"epoch": 1, "val_acc": 0.5}])
    assert Outcome.from_report(sent.to_report()) == sent


@pytest.mark.slow
def test_a_poisoned_worker_stops_and_its_trial_runs_again_on_resume(workdir: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(workdir)
    real, calls = lifecycle.train_candidate, []

    def faulty_device(*args, **kwargs):  # the second trial meets a broken CUDA context
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError(CUDA_FAULT)
        return real(*args, **kwargs)

    monkeypatch.setattr(lifecycle, "train_candidate", faulty_device)
    assert main(["search", *FAST, "--budget", "3", "--name", "poison"]) == 2
    assert "worker stopped" in capsys.readouterr().err
    run = workdir / "runs" / "poison"
    trials = load_trials(run)
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL,
                                         optuna.trial.TrialState.WAITING]
    assert trials[1].user_attrs["interrupted"] and trials[2].user_attrs["retry_of"] == 1

    assert main(["search", *FAST, "--budget", "3", "--name", "poison", "--resume"]) == 0
    trials = load_trials(run)
    retry = next(t for t in trials if t.user_attrs.get("retry_of") == 1)
    assert retry.state == optuna.trial.TrialState.COMPLETE and retry.params == trials[1].params
    finished = [r for r in read_rows(run) if not r["reason"].startswith("interrupted")]
    assert len(finished) == 3


# -- which failures poison the process (CUDA errors) and which are the candidate's own -------
# Messages as torch words them (c10/cuda/CUDAException.cpp, the cuBLAS/cuDNN checks, _lazy_init).
POISONING = [
    torch.AcceleratorError("CUDA error: an illegal memory access was encountered"),
    torch.AcceleratorError("CUDA error: device-side assert triggered"),
    RuntimeError("CUDA error: an illegal memory access was encountered\nCUDA kernel errors might be "
                 "asynchronously reported at some other API call"),
    RuntimeError("CUDA error: device-side assert triggered"),
    RuntimeError("CUDA error: unspecified launch failure"),
    RuntimeError("CUDA error: no CUDA-capable device is detected"),
    RuntimeError("Found no NVIDIA driver on your system."),
    RuntimeError("CUDA error: misaligned address"),
    RuntimeError("CUDA error: uncorrectable ECC error encountered"),
    RuntimeError("CUBLAS_STATUS_EXECUTION_FAILED when calling `cublasSgemm( handle, opa, opb, m, n, k, ...)`"),
    RuntimeError("cuDNN error: CUDNN_STATUS_EXECUTION_FAILED"),
]

CANDIDATES_OWN = [
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.15 GiB total capacity)"),
    RuntimeError("CUDA error: out of memory"),
    RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB"),
    RuntimeError("CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"),
    TrialError("training diverged: loss is nan in epoch 1"),
    RuntimeError("Given groups=1, weight of size [8, 3, 3, 3], expected input[2, 1, 28, 28] to have 3 channels"),
    ValueError("cuda error rates are not a thing here"),  # not a RuntimeError from torch
    KeyboardInterrupt(),
]


@pytest.mark.parametrize("exc", POISONING, ids=lambda e: str(e)[:40])
def test_cuda_failures_poison_the_process(exc: BaseException) -> None:
    assert poisons_process(exc)


@pytest.mark.parametrize("exc", CANDIDATES_OWN, ids=lambda e: type(e).__name__ + ":" + str(e)[:30])
def test_candidate_failures_do_not(exc: BaseException) -> None:
    assert not poisons_process(exc)


def test_a_wrapped_cuda_failure_poisons() -> None:
    """The trial function may re-raise as TrialError: the cause decides."""
    try:
        try:
            raise RuntimeError("CUDA error: device-side assert triggered")
        except RuntimeError as inner:
            raise TrialError("trial failed") from inner
    except TrialError as outer:
        assert poisons_process(outer)


def test_a_real_cpu_error_does_not_poison() -> None:
    with pytest.raises(RuntimeError) as info:
        torch.nn.functional.conv2d(torch.zeros(1, 1, 4, 4), torch.zeros(2, 3, 3, 3))
    assert not poisons_process(info.value)


# -- a worker or node that died, and a trial as the study stores it ---------------------------
def test_a_lost_worker_is_interrupted_while_attempts_last_then_fails() -> None:
    from nas.search.failure import worker_lost

    retried = worker_lost(ARCH, failures=2, attempt=2, max_failures=2)
    assert retried.state == INTERRUPTED and retried.reason.startswith("interrupted: ")
    ended = worker_lost(ARCH, failures=3, attempt=3, max_failures=2)  # a trial that kills every worker ends
    assert ended.state == FAIL and "died (3 tries)" in ended.reason and not ended.reason.startswith("interrupted")


def test_a_stored_trial_is_interrupted_when_marked_or_failed_without_a_reason() -> None:
    from optuna.trial import TrialState, create_trial

    from nas.search.failure import INTERRUPTED_ATTR, is_interrupted

    def stored(state: TrialState, **attrs: object) -> optuna.trial.FrozenTrial:
        return create_trial(state=state, value=None if state != TrialState.COMPLETE else 1.0, user_attrs=attrs)

    assert is_interrupted(stored(TrialState.FAIL, **{INTERRUPTED_ATTR: True, "reason": "interrupted (Ctrl-C)"}))
    assert is_interrupted(stored(TrialState.FAIL))  # failed by Optuna's heartbeat: no reason recorded
    assert not is_interrupted(stored(TrialState.FAIL, reason="training diverged"))
    assert not is_interrupted(stored(TrialState.COMPLETE))
