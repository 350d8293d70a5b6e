"""Proxy training: a few epochs at reduced size, validation accuracy reported every epoch.

The data set lives in memory as tensors (moved to the device once), so a batch is an index
into a tensor and the trainer runs as fast as a hand-written loop (benchmarks/trainer_throughput.py).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from nas.measure.device_gate import holding_device, shared_device
from nas.measure.precision import autocast, grad_scaler
from nas.measure.step import cudnn_autotuning, prepare, to_device, train_step
from nas.spec.errors import TrialError
from nas.spec.space import Proxy
from nas.training.data import Dataset

# Called after every epoch with (epoch, val_acc); returning False stops training (pruning).
EpochCallback = Callable[[int, float], "bool | None"]
# Called after every epoch with the state a retried trial resumes from (see `proxy_train`).
StateCallback = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class ProxyRecipe:
    """How a proxy is trained. Epochs, batch, learning rate and training images are the space's
    `Proxy` (one default each, declared there); weight decay and warm-up belong to training alone."""

    epochs: int = Proxy.epochs
    batch: int = Proxy.batch
    lr: float = Proxy.lr
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    max_train: int | None = Proxy.max_train
    seed: int = 0

    @classmethod
    def from_proxy(cls, proxy: Proxy, seed: int = 0) -> ProxyRecipe:
        return cls(epochs=proxy.epochs, batch=proxy.batch, lr=proxy.lr, max_train=proxy.max_train, seed=seed)


@dataclass
class ProxyOutcome:
    accuracy: float
    history: list[dict[str, float]] = field(default_factory=list)
    steps: int = 0
    images: int = 0
    stopped_early: bool = False
    step_seconds: float = 0.0  # time in the training steps alone (no evaluation)


def evaluate_accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, device: torch.device,
                      batch: int = 512) -> float:
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=device)
    with torch.no_grad(), shared_device(device):
        for start in range(0, len(images), batch):
            x = to_device(images[start : start + batch], device)
            with autocast(device):
                correct += (model(x).argmax(1) == labels[start : start + batch].to(device)).sum()
    return int(correct) / max(1, len(images))  # one host synchronisation per evaluation


def recalibrate_batchnorm(model: nn.Module, images: torch.Tensor, device: torch.device,
                          samples: int = 512, batch: int = 256) -> None:
    """Re-estimate BatchNorm statistics at the current weights before evaluating.

    After a few dozen high-learning-rate steps the running averages lag far behind the weights
    and an eval-mode model scores near chance; exact statistics over a few batches make the
    per-epoch accuracy (what pruners and ASHA compare) meaningful.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    model.train()
    with torch.no_grad(), shared_device(device):
        for start in range(0, min(samples, len(images)), batch):
            with autocast(device):
                model(to_device(images[start : start + batch], device))
    for m, momentum in zip(norms, saved, strict=True):
        m.momentum = momentum


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_fraction: float):
    warmup = max(1, int(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def proxy_train(
    model: nn.Module,
    data: Dataset,
    recipe: ProxyRecipe,
    device: torch.device,
    on_epoch: EpochCallback | None = None,
    *,
    resume: dict[str, Any] | None = None,
    on_state: StateCallback | None = None,
) -> ProxyOutcome:
    """Train briefly; `on_epoch(epoch, val_acc)` returning False stops early (pruning).

    `on_state(state)` gets, after every epoch, everything needed to go on from there (weights,
    optimizer, schedule, data order, history; tensors only, so `torch.load(weights_only=True)`
    reads it back); `resume=state` continues a run from it, and ends where an uninterrupted run
    would have. Every step holds the device gate shared, so a measurement on the same device
    never times this training. Raises TrialError when the loss becomes NaN or infinite.
    """
    # Proxy trials run with cuDNN's heuristics: autotuning every convolution of every new
    # candidate (and again for each batch shape) costs more than the few dozen steps it would
    # speed up. A whole training holds the device gate: steps pass it for free unless a
    # measurement waits.
    with cudnn_autotuning(False), holding_device(device):
        return _proxy_train(model, data, recipe, device, on_epoch, resume, on_state)


def _proxy_train(model: nn.Module, data: Dataset, recipe: ProxyRecipe, device: torch.device,
                 on_epoch: EpochCallback | None, resume: dict[str, Any] | None,
                 on_state: StateCallback | None) -> ProxyOutcome:
    torch.manual_seed(recipe.seed)
    model = prepare(model, device)
    train_x, train_y = data.train_x, data.train_y
    if recipe.max_train is not None and recipe.max_train < len(train_x):
        # a seeded random subset: the stored order may be sorted by class
        keep = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(recipe.seed))
        keep = keep[: recipe.max_train]
        train_x, train_y = train_x[keep], train_y[keep]
    # the data stay on the device for the whole trial; a batch is an index into them there
    train_x, train_y = train_x.to(device), train_y.to(device)
    val_x, val_y = data.val_x.to(device), data.val_y.to(device)
    steps_per_epoch = max(1, len(train_x) // recipe.batch)  # drop the ragged last batch
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    schedule = warmup_cosine(optimizer, recipe.epochs * steps_per_epoch, recipe.warmup_fraction)
    generator = torch.Generator().manual_seed(recipe.seed)
    outcome = ProxyOutcome(accuracy=0.0)
    first_epoch = 1
    if resume is not None:
        first_epoch = _restore(resume, model, optimizer, schedule, generator, outcome, device) + 1
    for epoch in range(first_epoch, recipe.epochs + 1):
        model.train()
        order = torch.randperm(len(train_x), generator=generator).to(device)
        loss_sum = torch.zeros((), device=device)
        epoch_start = time.perf_counter()
        for step in range(steps_per_epoch):
            idx = order[step * recipe.batch : (step + 1) * recipe.batch]
            with shared_device(device):
                loss_sum += train_step(model, optimizer, to_device(train_x[idx], device), train_y[idx], device)
            schedule.step()
        mean_loss = float(loss_sum) / steps_per_epoch  # one host sync per epoch
        outcome.step_seconds += time.perf_counter() - epoch_start
        if not math.isfinite(mean_loss):
            raise TrialError(f"training diverged: loss is {mean_loss} in epoch {epoch}")
        recalibrate_batchnorm(model, train_x[order[:512]], device)
        outcome.accuracy = evaluate_accuracy(model, val_x, val_y, device)
        outcome.steps += steps_per_epoch
        outcome.images += steps_per_epoch * recipe.batch
        outcome.history.append({"epoch": epoch, "train_loss": mean_loss, "val_acc": outcome.accuracy})
        if on_state is not None:
            on_state({"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                      "schedule": schedule.state_dict(), "generator": generator.get_state(),
                      "rng": _rng_state(device), "scaler": _scaler_state(optimizer, device),
                      "history": outcome.history, "steps": outcome.steps, "images": outcome.images,
                      "step_seconds": outcome.step_seconds})
        if on_epoch is not None and on_epoch(epoch, outcome.accuracy) is False:
            outcome.stopped_early = epoch < recipe.epochs
            break
    return outcome


def _scaler_state(optimizer: torch.optim.Optimizer, device: torch.device) -> dict[str, Any]:
    """The fp16 loss scale and its growth tracker (empty in bf16/fp32), so a resumed run scales as
    the uninterrupted one would."""
    scaler = grad_scaler(optimizer, device)
    return scaler.state_dict() if scaler is not None else {}


def _rng_state(device: torch.device) -> list[torch.Tensor]:
    """The global generators dropout and drop-path draw from (CPU, and the device's on CUDA)."""
    states = [torch.get_rng_state()]
    if device.type == "cuda":
        states.append(torch.cuda.get_rng_state(device))
    return states


def _set_rng_state(device: torch.device, states: list[torch.Tensor]) -> None:
    torch.set_rng_state(states[0])
    if device.type == "cuda" and len(states) > 1:
        torch.cuda.set_rng_state(states[1], device)


def _restore(state: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer,
             schedule: torch.optim.lr_scheduler.LRScheduler, generator: torch.Generator,
             outcome: ProxyOutcome, device: torch.device) -> int:
    """Load a state `proxy_train` handed to `on_state`; returns the epoch it ended."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    generator.set_state(state["generator"])
    _set_rng_state(device, state["rng"])  # dropout and drop-path go on as if never stopped
    scaler = grad_scaler(optimizer, device)
    if scaler is not None and state.get("scaler"):  # states saved before fp16 existed have none
        scaler.load_state_dict(state["scaler"])
    outcome.history = [dict(row) for row in state["history"]]
    outcome.accuracy = outcome.history[-1]["val_acc"] if outcome.history else 0.0
    outcome.steps = int(state["steps"])
    outcome.images = int(state["images"])
    outcome.step_seconds = float(state["step_seconds"])
    return int(state["epoch"])
