"""The one decision of how a device trains: on CUDA, autocast in the precision the GPU supports
natively (bf16 as EfficientNetV2 trained, else fp16 with a gradient scaler, else fp32); on CPU,
float32. The decision's name goes into hardware fingerprints."""

from __future__ import annotations

import contextlib
import functools
import weakref
from collections.abc import Iterator
from dataclasses import dataclass

import torch


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
