"""Device choice and the one training step that both the trainer and the step timer run.

On CUDA the step uses bf16 autocast and channels_last memory format (as EfficientNetV2
trained); on CPU it runs in float32, channels-first (channels_last is slower there for
depthwise convolutions).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
from torch import nn

from nas.errors import ConfigError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(spec: str = "auto") -> torch.device:
    """`auto` picks CUDA when present, else CPU; `cuda:N` selects a GPU."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {spec} was asked for, but no CUDA device is available; use auto or cpu")
        try:
            return torch.device(spec)
        except RuntimeError:
            raise ConfigError(f"--device must be auto, cpu, cuda or cuda:N, but got {spec!r}") from None
    raise ConfigError(f"--device must be auto, cpu, cuda or cuda:N, but got {spec!r}")


def device_name(device: torch.device) -> str:
    """Stable hardware name used in step-time cache keys and reports."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu-{torch.get_num_threads()}threads"


def step_dtype(device: torch.device) -> str:
    return "bf16" if device.type == "cuda" else "fp32"


@contextlib.contextmanager
def autocast(device: torch.device) -> Iterator[None]:
    if device.type == "cuda":
        with torch.autocast("cuda", dtype=torch.bfloat16):
            yield
    else:
        yield


def prepare(model: nn.Module, device: torch.device) -> nn.Module:
    """Move a model to the device, channels_last on CUDA."""
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


def to_device(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    images = images.to(device, non_blocking=True)
    if device.type == "cuda":
        images = images.contiguous(memory_format=torch.channels_last)
    return images


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    device: torch.device,
    loss_fn: nn.Module | None = None,
) -> torch.Tensor:
    """Forward, backward and optimizer step; returns the (detached) loss."""
    with autocast(device):
        logits = model(images)
        loss = (loss_fn or nn.functional.cross_entropy)(logits.float(), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


# Messages of CUDA failures after which the process's CUDA context is unusable: every later
# kernel fails too, whatever the candidate. Out-of-memory is absent on purpose (the allocator
# recovers, and a too-large candidate is the candidate's own failure).
_POISON_MARKERS = (
    "illegal memory access",
    "device-side assert",
    "unspecified launch failure",
    "misaligned address",
    "illegal instruction",
    "uncorrectable ecc error",
    "launch timed out",
    "no cuda-capable device",
    "found no nvidia driver",
    "cuda driver initialization failed",
    "device has fallen off the bus",
    "cublas_status_execution_failed",
    "cudnn_status_execution_failed",
    "cuda error",  # any other error CUDA reported (e.g. a lost device): the context is suspect
)
_OOM_MARKERS = ("out of memory", "cublas_status_alloc_failed", "cudnn_status_alloc_failed")


def poisons_process(exc: BaseException) -> bool:
    """True when `exc` (or an exception it was raised from) is a CUDA failure that leaves this
    process unable to run any further candidate: an illegal memory access, a device-side assert,
    a lost device. Such a trial is not the candidate's fault: stop the worker, retry the trial
    elsewhere. Out-of-memory, divergence and ordinary errors are False (the candidate's own)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _poisons_alone(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _poisons_alone(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return False
    message = str(exc).lower()
    if any(marker in message for marker in _OOM_MARKERS):
        return False
    if isinstance(exc, getattr(torch, "AcceleratorError", ())):
        return True  # torch >= 2.8 raises CUDA runtime errors as this type
    return isinstance(exc, RuntimeError) and any(marker in message for marker in _POISON_MARKERS)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def set_threads(workers: int = 1) -> int:
    """Split this machine's cores between `workers` processes; returns threads per process."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = max(1, cores // max(1, workers))
    limit = os.environ.get("OMP_NUM_THREADS", "")
    if limit.isdigit() and int(limit) > 0:  # the user's cap wins (busy or shared machines)
        threads = min(threads, int(limit))
    torch.set_num_threads(threads)
    return threads
