"""Cost measurements of a model: parameters, multiply-adds and training-step time.

Step time is measured with the device to itself (`nas.measure.device_gate`: other measurements and
other trials' training steps wait), because trials that share a device would otherwise time
each other's work, and only in a warmed-up process (`warm_up_process`). Timings are cached in a
JSON file shared by processes; `nas.measure.step_cost` keys them by hardware fingerprint, part and shape.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nas.measure.cpu_allocator import keep_freed_memory
from nas.measure.device import synchronize
from nas.measure.device_gate import exclusive_device
from nas.measure.step import cudnn_autotuning, prepare, to_device, train_step
from nas.model.blocks import MBConv
from nas.records.file_lock import file_lock
from nas.spec.arch import Arch
from nas.spec.errors import ConfigError
from nas.spec.timing import Repeats

log = logging.getLogger(__name__)


# -- counts ----------------------------------------------------------------------------------
def count_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@functools.lru_cache(maxsize=4096)
def network_size(arch: Arch, resolution: int, num_classes: int = 1000, in_channels: int = 3,
                 macs: bool = True) -> tuple[int, int | None]:
    """Parameters and multiply-adds (None unless `macs`) of `arch`'s network at `resolution`,
    built on the meta device: no memory, no compute (B7 in a second). Memoised per process."""
    from nas.model import build

    with torch.device("meta"):
        model = build(arch, num_classes=num_classes, in_channels=in_channels)
    return count_params(model), count_macs(model, resolution, in_channels) if macs else None


def count_costs(arch: Arch, num_classes: int = 1000, in_channels: int = 3,
                macs: bool = True) -> tuple[int, int | None]:
    """Params and MACs of `arch`'s network at its own resolution; the defaults are the papers'
    setting (1000 classes, RGB), which the run report's full-size columns use."""
    return network_size(arch, arch.resolution, num_classes, in_channels, macs)


def _model_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def count_macs(model: nn.Module, resolution: int, in_channels: int) -> int:
    """Multiply-adds of one forward pass at batch 1 (FlopCounterMode counts FLOPs = 2 x MACs).

    Only matmul-like ops (convs, linear) are counted, as in the papers' FLOP figures.
    """
    was_training = model.training
    model.eval()
    try:
        x = torch.zeros(1, in_channels, resolution, resolution, device=_model_device(model))
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops()) // 2


# -- step time -------------------------------------------------------------------------------
@dataclass(frozen=True)
class StepTime:
    """Milliseconds of one training step: the median (what the reward uses), its relative
    interquartile range, the sample count, and the fastest step (kept for comparison: on a
    shared machine interference only ever adds time, see benchmarks/cost_fidelity.py)."""

    median_ms: float
    spread: float
    samples: int
    min_ms: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepTime:
        median = float(data["median_ms"])
        # caches written before min_ms existed: the median is the closest value they hold
        return cls(median, float(data["spread"]), int(data["samples"]), float(data.get("min_ms", median)))


def _summarise(times_ms: list[float]) -> StepTime:
    median = statistics.median(times_ms)
    if len(times_ms) >= 2:
        q1, _, q3 = statistics.quantiles(times_ms, n=4, method="inclusive")
        spread = (q3 - q1) / median if median > 0 else 0.0
    else:
        spread = 0.0
    return StepTime(median_ms=median, spread=spread, samples=len(times_ms), min_ms=min(times_ms))


def time_steps(step: Callable[[], object], device: torch.device, repeats: Repeats) -> StepTime:
    """Time `step()` after its warm-up, synchronising around every timed step (CUDA runs ahead).

    The caller holds the device (`exclusive_device`) so other trials' work is not timed too.
    """
    repeats.check()
    # a timed step autotunes cuDNN as a long training run at this one shape would
    # (nas.measure.step.cudnn_autotuning says who autotunes and why)
    with cudnn_autotuning(True):
        return _time_steps(step, device, repeats)


def _time_steps(step: Callable[[], object], device: torch.device, repeats: Repeats) -> StepTime:
    # On CUDA the first step of a new shape autotunes cuDNN and grows the allocator: never time
    # it, whatever the warm-up asked for.
    warmup = max(1, repeats.warmup) if device.type == "cuda" else repeats.warmup
    for _ in range(warmup):
        step()
    synchronize(device)  # the warm-up's queued kernels end before the first timed step starts
    times_ms: list[float] = []
    while len(times_ms) < repeats.max_steps:
        # One clock on every device: wall time between two synchronisations. On CUDA it includes
        # the host's launch overhead, which small proxy-sized steps are bound by and a training
        # run pays too (CUDA events would time the GPU stream alone and miss it).
        synchronize(device)
        start = time.perf_counter()
        step()
        synchronize(device)
        times_ms.append((time.perf_counter() - start) * 1000.0)
        if len(times_ms) >= repeats.steps and _summarise(times_ms).spread <= repeats.target_spread:
            break
    return _summarise(times_ms)


_warm_devices: set[str] = set()


def warm_up_process(device: torch.device, seconds: float = 1.0) -> None:
    """Once per process and device: run training steps of a small network for `seconds`.

    The first timing in a fresh process pays one-off costs (thread pool start, allocator
    growth, kernel selection; seen: 490 ms cold vs 256 ms warm for one network); no such timing
    may enter a cache or a normaliser, so every process warms up before its first timing.
    """
    slug = str(device)
    if slug in _warm_devices:
        return
    if device.type == "cpu":
        keep_freed_memory()  # before the warm-up, so its blocks already stay on the heap
    with torch.random.fork_rng(devices=rng_devices(device)):
        torch.manual_seed(0)
        net = prepare(nn.Sequential(MBConv(32, 32, 3, 1, 4.0, se=0.25), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                    nn.Linear(32, 10)), device)
        images = to_device(torch.randn(8, 32, 32, 32), device)
        labels = torch.randint(0, 10, (8,)).to(device)
        optimizer = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
        deadline = time.perf_counter() + seconds
        with exclusive_device(device):
            while time.perf_counter() < deadline:
                train_step(net, optimizer, images, labels, device)
            synchronize(device)
    _warm_devices.add(slug)


def rng_devices(device: torch.device) -> list[int]:
    """The CUDA devices whose generators `torch.random.fork_rng` must save for `device`."""
    if device.type == "cuda":
        return [device.index if device.index is not None else torch.cuda.current_device()]
    return []


def measure_step_time(
    model: nn.Module,
    *,
    batch: int,
    resolution: int,
    in_channels: int,
    num_classes: int,
    device: torch.device,
    warmup: int = 3,
    steps: int = 10,
    repeats: Repeats | None = None,
) -> StepTime:
    """Time forward + backward + SGD step (the trainer's `train_step`) on random data.

    Runs on a deep copy, so the caller's weights, BatchNorm statistics and RNG state are
    untouched. Holds the device exclusively (`nas.measure.device_gate`) for warm-up and timing.
    `repeats` (adaptive) replaces the fixed `warmup` + `steps` when given.
    """
    if batch < 1 or resolution < 1 or in_channels < 1 or num_classes < 1:
        raise ConfigError(
            f"batch, resolution, in_channels and num_classes must be >= 1, but got "
            f"{batch}, {resolution}, {in_channels}, {num_classes}"
        )
    if repeats is None:
        repeats = Repeats(warmup=warmup, steps=steps, max_steps=max(steps, 1), target_spread=0.0)
    repeats.check()
    warm_up_process(device)
    with torch.random.fork_rng(devices=rng_devices(device)):
        torch.manual_seed(0)
        net = prepare(copy.deepcopy(model), device)
        net.train()
        optimizer = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
        images = to_device(torch.randn(batch, in_channels, resolution, resolution), device)
        labels = torch.randint(0, num_classes, (batch,)).to(device)
        with exclusive_device(device):
            return time_steps(lambda: train_step(net, optimizer, images, labels, device), device, repeats)


# -- cache -----------------------------------------------------------------------------------
class StepTimeCache:
    """Step times in a JSON file shared by concurrent processes.

    Writes re-read the file under a sidecar lock and replace it atomically, so processes never
    lose each other's entries and readers never see a half-written file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._entries: dict[str, StepTime] = {}
        self._entries = self._read()

    def _read(self) -> dict[str, StepTime]:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            # a cache is only an optimisation: start afresh rather than fail the search
            log.warning("ignoring unreadable step-time cache %s (%s)", self.path, exc)
            return {}
        out: dict[str, StepTime] = {}
        if isinstance(raw, dict):
            for key, value in raw.items():
                try:
                    out[key] = StepTime.from_dict(value)
                except (KeyError, TypeError, ValueError):
                    log.warning("ignoring malformed step-time cache entry %r in %s", key, self.path)
        return out

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(self._lock_path):
            yield

    def get(self, key: str) -> StepTime | None:
        """The cached step time, re-reading the file on a miss (another process may have added it)."""
        if key not in self._entries:
            self._entries.update(self._read())
        return self._entries.get(key)

    def put(self, key: str, st: StepTime) -> None:
        with self._locked():
            entries = self._read()
            entries[key] = st
            payload = json.dumps({k: v.to_dict() for k, v in sorted(entries.items())}, indent=1)
            fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".tmp", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(payload + "\n")
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
            self._entries = entries

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None
