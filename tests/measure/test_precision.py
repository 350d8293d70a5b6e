"""nas.measure.precision and nas.measure.step: which precision a device trains in, and the
training step's loss scaling."""

from __future__ import annotations

import pytest
import torch

from nas.measure.hardware import fingerprint
from nas.measure.precision import BF16, FP16, FP32, grad_scaler, precision
from nas.measure.step import train_step

# -- precision -------------------------------------------------------------------------------
CUDA = torch.device("cuda")


@pytest.fixture
def gpu_with(monkeypatch):
    """Pretend the CUDA device has a given compute capability (no GPU needed)."""

    def set_capability(major: int, minor: int) -> None:
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (major, minor))
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: f"Fake GPU sm{major}{minor}")
        monkeypatch.setattr(torch.version, "hip", None)
        precision.cache_clear()

    yield set_capability
    precision.cache_clear()


@pytest.mark.parametrize(("capability", "expected"), [((9, 0), BF16), ((8, 0), BF16), ((8, 6), BF16),
                                                     ((7, 5), FP16), ((7, 0), FP16), ((6, 1), FP32)])
def test_precision_follows_native_support(gpu_with, capability, expected) -> None:
    gpu_with(*capability)
    assert precision(CUDA) == expected
    assert fingerprint(CUDA).dtype == expected.name


def test_cpu_stays_fp32(gpu_with) -> None:
    gpu_with(9, 0)
    assert precision(torch.device("cpu")) == FP32
    assert fingerprint(torch.device("cpu")).dtype == "fp32"


def test_precision_is_in_the_step_time_key(gpu_with) -> None:
    gpu_with(8, 0)
    bf16_key = fingerprint(CUDA).key()
    gpu_with(7, 5)
    assert fingerprint(CUDA).key() != bf16_key and "|fp16|" in fingerprint(CUDA).key()


def _tiny() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.SiLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 4))
    return model, torch.randn(8, 3, 8, 8), torch.randint(0, 4, (8,))


def test_fp16_steps_through_a_grad_scaler(monkeypatch) -> None:
    """The fp16 branch runs for real on the CPU (CPU autocast has fp16): scaled loss, step taken."""
    cpu = torch.device("cpu")
    monkeypatch.setattr("nas.measure.precision.precision", lambda device: FP16)
    model, images, labels = _tiny()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    loss = train_step(model, optimizer, images, labels, cpu)
    scaler = grad_scaler(optimizer, cpu)
    assert scaler is not None and scaler is grad_scaler(optimizer, cpu)  # one per optimizer
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_fp32_has_no_scaler() -> None:
    cpu = torch.device("cpu")
    model, images, labels = _tiny()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    train_step(model, optimizer, images, labels, cpu)
    assert grad_scaler(optimizer, cpu) is None
