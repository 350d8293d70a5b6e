"""nas.device: which failures poison the process, and which precision a device trains in."""

from __future__ import annotations

import pytest
import torch

from nas.device import poisons_process
from nas.errors import TrialError

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
