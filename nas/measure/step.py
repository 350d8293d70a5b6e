"""The one training step that the proxy trainer, the step timer and full training all run, and
how a model and its inputs are laid out for it: channels_last on CUDA; channels-first on CPU
(channels_last is slower there for depthwise convolutions)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from nas.measure.precision import autocast, grad_scaler


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
