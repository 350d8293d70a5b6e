"""Device choice and the one training step that both the trainer and the step timer run.

On CUDA the step runs under autocast in the precision the GPU supports natively (`precision`:
bf16 as EfficientNetV2 trained, else fp16 with a gradient scaler, else fp32) and in
channels_last memory format; on CPU it runs in float32, channels-first (channels_last is
slower there for depthwise convolutions).
"""

from __future__ import annotations

import contextlib
import functools
import os
import weakref
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from nas.spec.errors import ConfigError

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


@dataclass(frozen=True)
class Precision:
    """How a training step computes: `name` goes into hardware fingerprints (and so into
    step-time cache keys and reference.json); `autocast` is the autocast dtype (None: fp32);
    `scales_loss` says a `torch.amp.GradScaler` guards fp16 gradients from underflow."""

    name: str
    autocast: torch.dtype | None
    scales_loss: bool


FP32 = Precision("fp32", None, False)
BF16 = Precision("bf16", torch.bfloat16, False)
FP16 = Precision("fp16", torch.float16, True)


@functools.cache
def precision(device: torch.device) -> Precision:
    """The one place that decides a device's training precision.

    bf16 only where the GPU has it natively (compute capability 8.0+: emulated bf16 is slower
    than fp32); else fp16 with loss scaling where tensor cores exist (7.0+); else fp32. The CPU
    stays fp32 (its bf16/fp16 kernels are slower than fp32 on most CPUs)."""
    if device.type != "cuda":
        return FP32
    # the test torch.cuda.is_bf16_supported(including_emulation=False) makes, but for `device`
    # rather than the current device (ROCm GPUs all have bf16)
    capability = torch.cuda.get_device_capability(device)
    if torch.version.hip or capability >= (8, 0):
        return BF16
    if capability >= (7, 0):
        return FP16
    return FP32


@contextlib.contextmanager
def autocast(device: torch.device) -> Iterator[None]:
    dtype = precision(device).autocast
    if dtype is None:
        yield
    else:
        with torch.autocast(device.type, dtype=dtype):
            yield


@contextlib.contextmanager
def cudnn_autotuning(enabled: bool) -> Iterator[None]:
    """cuDNN's benchmark mode (autotuning each convolution at each new shape) inside the block.

    Who sets what, and why: a *timed* full-size step (nas.measure.costs) autotunes, because a real
    training run at one shape for hours would, and every timing must see the kernels that run
    would; `nas train` autotunes for the same reason. *Proxy* trials use the heuristics: each
    candidate lives for a few dozen steps at three batch shapes, and autotuning all of them cost
    more than the training itself on an H200 (ARCHITECTURE.md section 12)."""
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


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


# One scaler per optimizer, so every caller of `train_step` (trainer, timer, full training)
# scales fp16 losses without passing a scaler around; it lives as long as its optimizer.
_SCALERS: weakref.WeakKeyDictionary[torch.optim.Optimizer, torch.amp.GradScaler] = weakref.WeakKeyDictionary()


def grad_scaler(optimizer: torch.optim.Optimizer, device: torch.device) -> torch.amp.GradScaler | None:
    """The loss scaler `train_step` uses for `optimizer` on `device` (None unless fp16)."""
    if not precision(device).scales_loss:
        return None
    scaler = _SCALERS.get(optimizer)
    if scaler is None:
        scaler = _SCALERS[optimizer] = torch.amp.GradScaler(device.type)
    return scaler


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
    scaler = grad_scaler(optimizer, device)
    if scaler is None:
        loss.backward()
        optimizer.step()
    else:  # fp16: scale the loss so small gradients survive; skips the step on inf/NaN gradients
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
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
