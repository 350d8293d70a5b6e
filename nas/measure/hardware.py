"""Which hardware a timing belongs to.

A step time means something only next to the machine it was measured on: the same network
steps at different speeds on another CPU model, with another thread count, in another dtype or
torch release. Every cached timing and every reward normaliser carries this fingerprint, so
timings from different hardware are never mixed silently.
"""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import torch

from nas.measure.precision import precision


@lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo; the platform's processor string elsewhere)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown-cpu"


@dataclass(frozen=True)
class Hardware:
    """Device kind and model, CPU model, torch threads, step dtype and torch version; on a GPU
    also what changes cuDNN's kernel choice: the CUDA runtime, cuDNN and driver versions."""

    device: str
    device_model: str
    cpu: str
    threads: int
    dtype: str
    torch: str
    cuda: str = ""
    cudnn: str = ""
    driver: str = ""

    def key(self) -> str:
        """One-line form used inside cache keys (on a CPU the same as before GPU fields existed)."""
        key = f"{self.device}:{self.device_model}|{self.cpu}|{self.threads}t|{self.dtype}|torch{self.torch}"
        if self.device == "cuda":
            key += f"|cuda{self.cuda}|cudnn{self.cudnn}|driver{self.driver}"
        return key

    def differences(self, other: Hardware) -> list[str]:
        """`field: mine -> theirs` for every field that differs."""
        mine, theirs = asdict(self), asdict(other)
        return [f"{k}: {mine[k]} -> {theirs[k]}" for k in mine if mine[k] != theirs[k]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Hardware:
        gpu = {k: str(data.get(k, "")) for k in ("cuda", "cudnn", "driver")}  # absent from older runs' records
        return cls(**{k: data[k] for k in ("device", "device_model", "cpu", "threads", "dtype", "torch")}, **gpu)


def fingerprint(device: torch.device) -> Hardware:
    """The fingerprint of `device` as this process uses it now (threads can change at run time)."""
    cuda = device.type == "cuda"
    return Hardware(
        device=device.type,
        device_model=torch.cuda.get_device_name(device) if cuda else "cpu",
        cpu=cpu_model(),
        threads=torch.get_num_threads(),
        dtype=precision(device).name,  # the one precision decision (nas.measure.precision.precision)
        torch=torch.__version__.split("+")[0],
        cuda=(torch.version.cuda or torch.version.hip or "") if cuda else "",
        cudnn=str(torch.backends.cudnn.version() or "") if cuda else "",
        driver=_driver_version() if cuda else "",
    )


def _driver_version() -> str:
    """The CUDA driver's API version (e.g. 13000), which decides the kernels the driver JITs."""
    getter = getattr(torch._C, "_cuda_getDriverVersion", None)
    try:
        return str(getter()) if getter is not None else ""
    except RuntimeError:
        return ""
