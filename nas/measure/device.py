"""Device choice (`--device`), its name, synchronisation, and the split of this machine's CPU
cores between worker processes. Precision is `nas.measure.precision`, the training step
`nas.measure.step`."""

from __future__ import annotations

import os

import torch

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
