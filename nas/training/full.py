"""Full training of one architecture (`nas train`): resumable, logged, optionally progressive.

One loop serves both modes: fixed training is a progressive schedule with a single stage
whose start and end values are equal. Every epoch ends with a checkpoint (written to a temporary
file and renamed) holding weights, optimizer, LR schedule, EMA, history and every RNG state, so
`--resume` after a crash or kill continues exactly where the last checkpoint left off: on the
same device and thread count the resumed run ends with the same weights as an uninterrupted one.

Output folder::

    train.yaml        resolved settings (checked on --resume), versions, command
    arch.yaml         the architecture trained
    checkpoint.pt     last epoch's full training state (torch.load(weights_only=True))
    model.pt          final weights (the EMA's when EMA is on) + what is needed to rebuild the net
    metrics.json      final accuracy, throughput, per-epoch history
    events.out.tfevents.*   TensorBoard scalars
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from nas.measure.costs import count_macs, count_params
from nas.measure.device import device_name, resolve_device, synchronize
from nas.measure.step import cudnn_autotuning, prepare, to_device, train_step
from nas.model import build
from nas.records.runs import atomic_write, versions
from nas.spec.arch import Arch
from nas.spec.errors import ConfigError, RunError
from nas.training.data import Dataset, load_dataset, resize
from nas.training.progressive import BatchAugment, ProgressiveSchedule, SoftTargetCrossEntropy
from nas.training.proxy import evaluate_accuracy, recalibrate_batchnorm, warmup_cosine

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # tensorboard's TensorFlow-not-found notice

OPTIMIZERS = ("sgd", "rmsprop", "adamw")
SCHEDULES = ("cosine", "step")
# Learning rates for the given batch (no automatic scaling); RMSprop's is EfficientNet's 0.256 per
# 4096 images at 256, its weight decay EfficientNet's 1e-5.
DEFAULT_LR = {"sgd": 0.05, "rmsprop": 0.016, "adamw": 0.003}
DEFAULT_WEIGHT_DECAY = {"sgd": 5e-5, "rmsprop": 1e-5, "adamw": 0.05}
CHECKPOINT = "checkpoint.pt"
FINAL_MODEL = "model.pt"
CHECKPOINT_FORMAT = 1
# Settings that may differ on --resume (where the run executes, not what it computes).
RESUMABLE_CHANGES = ("device",)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run's result. None means "from the arch or the optimizer"."""

    dataset: str = "mnist5k"
    epochs: int = 10
    batch: int = 128
    optimizer: str = "sgd"
    lr: float | None = None
    weight_decay: float | None = None
    momentum: float = 0.9
    schedule: str = "cosine"
    warmup_epochs: float | None = None  # default: 10% of the epochs, at most 5
    step_epochs: float = 2.4  # step schedule: decay by step_gamma every step_epochs (EfficientNet)
    step_gamma: float = 0.97
    label_smoothing: float = 0.1
    ema: float = 0.0  # decay of the weights' moving average; 0 = off
    resolution: int | None = None  # train size; default the arch's
    eval_resolution: int | None = None  # default the train size
    dropout: float | None = None  # default the arch's
    randaugment: float = 0.0  # magnitude (0 = off)
    mixup: float = 0.0  # alpha (0 = off)
    progressive: ProgressiveSchedule | None = None
    max_train: int | None = None
    val_fraction: float = 0.2
    seed: int = 0
    device: str = "auto"

    def resolved(self, arch: Arch) -> TrainConfig:
        """Fill every None from the architecture and the optimizer's defaults; then validate."""
        resolution = self.resolution or arch.resolution
        cfg = replace(
            self,
            lr=self.lr if self.lr is not None else DEFAULT_LR.get(self.optimizer),
            weight_decay=self.weight_decay if self.weight_decay is not None
            else DEFAULT_WEIGHT_DECAY.get(self.optimizer),
            warmup_epochs=self.warmup_epochs if self.warmup_epochs is not None else min(5.0, 0.1 * self.epochs),
            resolution=resolution,
            eval_resolution=self.eval_resolution or resolution,
            dropout=self.dropout if self.dropout is not None else arch.dropout,
        )
        cfg.check()
        return cfg

    def check(self) -> None:
        def fail(option: str, allowed: str, value: Any) -> None:
            raise ConfigError(f"{option} must be {allowed}, but got {value!r}")

        if self.optimizer not in OPTIMIZERS:
            fail("--optimizer", f"one of {list(OPTIMIZERS)}", self.optimizer)
        if self.schedule not in SCHEDULES:
            fail("--schedule", f"one of {list(SCHEDULES)}", self.schedule)
        if self.epochs < 1:
            fail("--epochs", "a positive integer", self.epochs)
        if self.batch < 2:
            fail("--batch", "an integer >= 2", self.batch)
        if self.lr is not None and not self.lr > 0:
            fail("--lr", "a number > 0", self.lr)
        if self.warmup_epochs is not None and not 0 <= self.warmup_epochs <= self.epochs:
            fail("--warmup-epochs", f"in [0, {self.epochs}] (the epochs)", self.warmup_epochs)
        if not 0 <= self.label_smoothing < 1:
            fail("--label-smoothing", "in [0, 1)", self.label_smoothing)
        if not 0 <= self.ema < 1:
            fail("--ema", "a decay in [0, 1) (0 = off)", self.ema)
        if self.dropout is not None and not 0 <= self.dropout < 1:
            fail("--dropout", "in [0, 1)", self.dropout)
        if not 0 <= self.randaugment < 30:
            fail("--randaugment", "a magnitude in [0, 30)", self.randaugment)
        if self.mixup < 0:
            fail("--mixup", "an alpha >= 0", self.mixup)
        if self.step_epochs <= 0 or not 0 < self.step_gamma <= 1:
            fail("--step-epochs/--step-gamma", "> 0 and in (0, 1]", (self.step_epochs, self.step_gamma))

    def stage_schedule(self) -> ProgressiveSchedule:
        """The progressive schedule, or one constant stage for fixed training."""
        if self.progressive is not None:
            return self.progressive
        res, ra, mix, drop = self.resolution, self.randaugment, self.mixup, self.dropout
        return ProgressiveSchedule(resolution=(res, res), randaugment=(ra, ra), mixup=(mix, mix),
                                   dropout=(drop, drop), stages=1)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["progressive"] = None if self.progressive is None else self.progressive.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "train.yaml") -> TrainConfig:
        from nas.spec.arch import Validator

        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{source}: {unknown[0]} must be one of {sorted(known)}, but got {unknown[0]!r}")
        values = dict(data)
        if values.get("progressive") is not None:
            values["progressive"] = ProgressiveSchedule.from_dict(values["progressive"], Validator(source))
        return cls(**values)


def differences(saved: TrainConfig, given: TrainConfig) -> list[str]:
    """Settings that differ between a run's saved config and a resuming command."""
    a, b = saved.to_dict(), given.to_dict()
    return [k for k in a if k not in RESUMABLE_CHANGES and a[k] != b[k]]


# -- pieces of the loop ------------------------------------------------------------------------


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params, lr, wd = model.parameters(), config.lr, config.weight_decay
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=config.momentum, nesterov=config.momentum > 0,
                               weight_decay=wd)
    if config.optimizer == "rmsprop":
        # EfficientNet's TF settings: decay 0.9, epsilon 1e-3
        return torch.optim.RMSprop(params, lr=lr, alpha=0.9, eps=1e-3, momentum=config.momentum, weight_decay=wd)
    return torch.optim.AdamW(params, lr=lr, weight_decay=wd)


def make_schedule(optimizer: torch.optim.Optimizer, config: TrainConfig,
                  steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    total = config.epochs * steps_per_epoch
    warmup_fraction = config.warmup_epochs / config.epochs
    if config.schedule == "cosine":
        return warmup_cosine(optimizer, total, warmup_fraction)
    warmup = max(1, int(total * warmup_fraction))
    decay_every = max(1, int(round(config.step_epochs * steps_per_epoch)))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return config.step_gamma ** ((step - warmup) // decay_every)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class ExponentialAverage:
    """Moving average of a model's weights and buffers, with the usual warm-up of the decay
    (min(decay, (1 + step) / (10 + step))) so it is useful in short runs too."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        keep = min(self.decay, (1 + step) / (10 + step))
        current = model.state_dict()
        for key, average in self.module.state_dict().items():
            if average.dtype.is_floating_point:
                average.lerp_(current[key], 1.0 - keep)
            else:
                average.copy_(current[key])


def evaluate_copy(model: nn.Module, calibration: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor,
                  device: torch.device) -> float:
    """Accuracy of a copy whose BatchNorm statistics are re-estimated at the eval size.

    Training images are smaller than eval images (progressive learning, train/eval recipes), so
    running statistics gathered in training do not fit; the copy leaves the training state alone.
    """
    net = copy.deepcopy(model)
    recalibrate_batchnorm(net, calibration, device)
    return evaluate_accuracy(net, val_x, val_y, device)


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise RunError(f"cannot write {path}: {exc.strerror or exc}") from None


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as exc:
        raise RunError(f"cannot read checkpoint {path}: {exc}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise RunError(f"{path} must be a nas training checkpoint (format {CHECKPOINT_FORMAT}), but it is not")
    return state


def _subset(data: Dataset, max_train: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = data.train_x, data.train_y
    if max_train is not None and max_train < len(x):
        # a seeded random subset: the stored order may be sorted by class
        keep = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:max_train]
        x, y = x[keep], y[keep]
    return x, y


# -- the run -------------------------------------------------------------------------------------


@dataclass
class Progress:
    """What the checkpoint carries besides module and optimizer states."""

    epoch: int = 0
    step: int = 0
    train_seconds: float = 0.0
    images: int = 0
    history: list[dict[str, float]] | None = None


def train(arch: Arch, config: TrainConfig, out: Path, *, resume: bool = False,
          log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train `arch` into the folder `out`; returns the metrics also written to metrics.json."""
    # a long run at a few shapes: autotuning pays for itself (nas.measure.step.cudnn_autotuning)
    with cudnn_autotuning(True):
        return _train(arch, config, out, resume=resume, log=log)


def _train(arch: Arch, config: TrainConfig, out: Path, *, resume: bool,
           log: Callable[[str], None] | None) -> dict[str, Any]:
    log = log or logging.getLogger(__name__).info
    config = config.resolved(arch)
    out = Path(out)
    start_wall = time.perf_counter()
    device = resolve_device(config.device)
    schedule = config.stage_schedule()
    train_size = max(schedule.at_stage(i).resolution for i in range(schedule.stages))
    # a bad device or dataset fails before the folder exists, so the corrected command needs no --resume
    data = load_dataset(config.dataset, resolution=max(train_size, config.eval_resolution),
                        val_fraction=config.val_fraction, seed=config.seed)
    resumed_from = _prepare_folder(arch, config, out, resume)
    mode = "progressive" if config.progressive is not None else "fixed-size"
    log(f"nas: training {arch.name or 'architecture'} into {out} ({mode}, {data.describe()}, {device_name(device)})")
    train_x, train_y = _subset(data, config.max_train, config.seed)
    steps_per_epoch = max(1, len(train_x) // config.batch)  # drop the ragged last batch
    total_steps = config.epochs * steps_per_epoch
    val_x = resize(data.val_x, config.eval_resolution)
    calib_order = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(config.seed + 1))
    calibration = resize(train_x[calib_order[:512]], config.eval_resolution)

    torch.manual_seed(config.seed)
    model = prepare(build(arch, num_classes=data.num_classes, in_channels=data.in_channels), device)
    optimizer = make_optimizer(model, config)
    lr_schedule = make_schedule(optimizer, config, steps_per_epoch)
    ema = ExponentialAverage(model, config.ema) if config.ema > 0 else None
    order_rng = torch.Generator().manual_seed(config.seed)
    augment = BatchAugment.for_images(train_x)
    loss_fn = SoftTargetCrossEntropy(config.label_smoothing)
    progress = Progress(history=[])
    if resumed_from:
        progress = _restore(load_checkpoint(out / CHECKPOINT), model, optimizer, lr_schedule, ema, order_rng)
        log(f"nas: resuming {out} after epoch {progress.epoch}/{config.epochs}")

    from torch.utils.tensorboard import SummaryWriter  # slow import: only when training

    with SummaryWriter(log_dir=str(out)) as writer:
        for epoch in range(progress.epoch + 1, config.epochs + 1):
            values = _train_epoch(model, optimizer, lr_schedule, ema, order_rng, augment, loss_fn, schedule,
                                  train_x, train_y, config, device, progress, steps_per_epoch, total_steps)
            accuracy = evaluate_copy(model, calibration, val_x, data.val_y, device)
            point = {"epoch": epoch, "train_loss": values["loss"], "val_acc": accuracy,
                     "lr": optimizer.param_groups[0]["lr"], "resolution": values["stage"].resolution,
                     "randaugment": values["stage"].randaugment, "mixup": values["stage"].mixup,
                     "dropout": values["stage"].dropout}
            if ema is not None:
                point["val_acc_ema"] = evaluate_copy(ema.module, calibration, val_x, data.val_y, device)
            progress.epoch = epoch
            progress.history.append(point)
            _log_scalars(writer, point, progress)
            _atomic_save(_checkpoint(model, optimizer, lr_schedule, ema, order_rng, progress), out / CHECKPOINT)
            ema_text = f" (EMA {point['val_acc_ema']:.4f})" if ema is not None else ""
            log(f"epoch {epoch}/{config.epochs}: loss {point['train_loss']:.4f}, val acc {accuracy:.4f}{ema_text}, "
                f"{point['resolution']} px, {progress.images / max(progress.train_seconds, 1e-9):.0f} img/s")

    final = ema.module if ema is not None else model
    metrics = _final_metrics(arch, config, data, model, progress, device, resumed_from,
                             time.perf_counter() - start_wall)
    _atomic_save({"model": {k: v.cpu() for k, v in final.state_dict().items()}, "arch": arch.to_string(),
                  "num_classes": data.num_classes, "in_channels": data.in_channels,
                  "resolution": config.eval_resolution, "ema": ema is not None}, out / FINAL_MODEL)
    atomic_write(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return metrics


def _train_epoch(model, optimizer, lr_schedule, ema, order_rng, augment, loss_fn, schedule, train_x, train_y,
                 config: TrainConfig, device: torch.device, progress: Progress, steps_per_epoch: int,
                 total_steps: int) -> dict[str, Any]:
    model.train()
    order = torch.randperm(len(train_x), generator=order_rng)
    loss_sum = torch.zeros((), device=device)
    synchronize(device)
    start = time.perf_counter()
    stage = schedule.at(progress.step, total_steps)
    for i in range(steps_per_epoch):
        stage = schedule.at(progress.step, total_steps)
        model.set_dropout(stage.dropout)
        idx = order[i * config.batch : (i + 1) * config.batch]
        images, labels = augment(train_x[idx].to(device, non_blocking=True), train_y[idx].to(device), stage)
        # channels_last (CUDA) after augmenting: resizing and kornia return contiguous tensors
        loss_sum += train_step(model, optimizer, to_device(images, device), labels, device, loss_fn)
        lr_schedule.step()
        progress.step += 1
        if ema is not None:
            ema.update(model, progress.step)
    mean_loss = float(loss_sum) / steps_per_epoch  # one host sync per epoch
    synchronize(device)
    progress.train_seconds += time.perf_counter() - start
    progress.images += steps_per_epoch * config.batch
    if not math.isfinite(mean_loss):
        raise RunError(f"training diverged: the loss must be finite, but got {mean_loss} in epoch "
                       f"{progress.epoch + 1}; lower --lr")
    return {"loss": mean_loss, "stage": stage}


def _log_scalars(writer: Any, point: dict[str, float], progress: Progress) -> None:
    epoch = int(point["epoch"])
    for key in ("train_loss", "lr", "resolution", "randaugment", "mixup", "dropout"):
        writer.add_scalar(f"train/{key}", point[key], epoch)
    writer.add_scalar("val/accuracy", point["val_acc"], epoch)
    if "val_acc_ema" in point:
        writer.add_scalar("val/accuracy_ema", point["val_acc_ema"], epoch)
    writer.add_scalar("train/images_per_s", progress.images / max(progress.train_seconds, 1e-9), epoch)
    writer.flush()


def _checkpoint(model, optimizer, lr_schedule, ema, order_rng, progress: Progress) -> dict[str, Any]:
    state = {
        "format": CHECKPOINT_FORMAT,
        "epoch": progress.epoch,
        "step": progress.step,
        "train_seconds": progress.train_seconds,
        "images": progress.images,
        "history": progress.history,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "lr_schedule": lr_schedule.state_dict(),
        "rng_torch": torch.get_rng_state(),
        "rng_order": order_rng.get_state(),
    }
    if ema is not None:
        state["ema"] = ema.module.state_dict()
    if torch.cuda.is_available():
        state["rng_cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore(state: dict[str, Any], model, optimizer, lr_schedule, ema, order_rng) -> Progress:
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    lr_schedule.load_state_dict(state["lr_schedule"])
    if ema is not None:
        ema.module.load_state_dict(state["ema"])
    torch.set_rng_state(state["rng_torch"])
    order_rng.set_state(state["rng_order"])
    if "rng_cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng_cuda"])
    return Progress(epoch=int(state["epoch"]), step=int(state["step"]), train_seconds=float(state["train_seconds"]),
                    images=int(state["images"]), history=list(state["history"]))


def _prepare_folder(arch: Arch, config: TrainConfig, out: Path, resume: bool) -> int:
    """Create the folder, or check a resumed one; returns the epoch to resume after (0: fresh)."""
    settings_path = out / "train.yaml"
    if settings_path.is_file():
        if not resume:
            raise RunError(f"{out} already holds a training run; pass --resume to continue it or -o another folder")
        saved = yaml.safe_load(settings_path.read_text()) or {}
        if saved.get("arch") != arch.to_string():
            raise ConfigError(f"the architecture must be the one {out} was trained with ({saved.get('arch')}), "
                              f"but got {arch.to_string()}")
        changed = differences(TrainConfig.from_dict(saved.get("config", {}), str(settings_path)), config)
        if changed:
            key = changed[0]
            raise ConfigError(f"--{key.replace('_', '-')} must be {saved['config'][key]!r} as when {out} was "
                              f"started, but got {getattr(config, key)!r}")
        if not (out / CHECKPOINT).is_file():
            return 0  # killed before the first checkpoint: start again
        return int(load_checkpoint(out / CHECKPOINT)["epoch"])
    if resume and not out.exists():
        raise RunError(f"cannot resume: there is no training run in {out}")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"cannot create {out}: {exc.strerror or exc}") from None
    atomic_write(out / "arch.yaml", arch.to_yaml())
    settings = {"arch": arch.to_string(), "config": config.to_dict(),
                "created": dt.datetime.now().isoformat(timespec="seconds"), "versions": versions(),
                "command": " ".join(["nas", *sys.argv[1:]])}
    atomic_write(settings_path, yaml.safe_dump(settings, sort_keys=False))
    return 0


def _final_metrics(arch: Arch, config: TrainConfig, data: Dataset, model: nn.Module, progress: Progress,
                   device: torch.device, resumed_from: int, wall_seconds: float) -> dict[str, Any]:
    history = progress.history or []
    last = history[-1] if history else {}
    key = "val_acc_ema" if config.ema > 0 else "val_acc"
    return {
        "arch": arch.to_string(),
        "name": arch.name,
        "dataset": data.name,
        "num_classes": data.num_classes,
        "in_channels": data.in_channels,
        "epochs": progress.epoch,
        "steps": progress.step,
        "accuracy": last.get(key),  # of the weights in model.pt
        "final_val_acc": last.get("val_acc"),
        "final_val_acc_ema": last.get("val_acc_ema"),
        "best_val_acc": max((h[key] for h in history), default=None),
        "train_images_per_s": round(progress.images / max(progress.train_seconds, 1e-9), 2),
        "train_seconds": round(progress.train_seconds, 3),
        "wall_seconds_this_process": round(wall_seconds, 3),
        "params": count_params(model),
        "macs": count_macs(model, config.eval_resolution, data.in_channels),
        "eval_resolution": config.eval_resolution,
        "progressive": config.progressive is not None,
        "device": device_name(device),
        "resumed_from_epoch": resumed_from or None,
        "history": history,
    }

