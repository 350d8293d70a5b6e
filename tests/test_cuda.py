"""The CUDA path for real: train step, step timing, proxy training, export, the device gate with
two processes on one GPU, and which CUDA failures poison a process. Skipped without a GPU;
`pytest -m cuda` runs them (benchmarks/gpu/check.sh does, on the GPU box)."""

from __future__ import annotations

import json
import multiprocessing as mp
import subprocess
import sys
import tempfile
from typing import Any

import pytest
import torch

from nas.measure.costs import Repeats, measure_step_time
from nas.measure.device import device_name
from nas.measure.device_gate import exclusive_device
from nas.measure.hardware import fingerprint
from nas.measure.precision import precision
from nas.measure.step import prepare, to_device, train_step
from nas.model import build
from nas.spec.space import SearchSpace
from nas.training.data import load_dataset
from nas.training.proxy import ProxyRecipe, proxy_train
from tests.conftest import nas_env

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.fixture
def gpu() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device())


@pytest.fixture(autouse=True)
def private_gate(tmp_path, monkeypatch) -> str:
    """Gate files of this test's own (another nas process on the box must not decide it)."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return str(tmp_path)


def _tiny(num_classes: int = 10, in_channels: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    return build(SearchSpace.load("tiny").reference, num_classes=num_classes, in_channels=in_channels)


def test_train_step_runs_in_the_chosen_precision_and_channels_last(gpu) -> None:
    model = prepare(_tiny(), gpu)
    assert next(model.parameters()).is_cuda
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    images = to_device(torch.randn(16, 3, 16, 16), gpu)
    assert images.is_contiguous(memory_format=torch.channels_last)
    before = [p.detach().clone() for p in model.parameters()]
    losses = [train_step(model, optimizer, images, torch.randint(0, 10, (16,), device=gpu), gpu) for _ in range(3)]
    assert all(torch.isfinite(loss) for loss in losses)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert not torch.backends.cudnn.benchmark  # heuristics unless a timing or `nas train` asks (cudnn_autotuning)
    assert precision(gpu).name in ("bf16", "fp16", "fp32")
    if precision(gpu).name == "bf16":
        assert torch.cuda.get_device_capability(gpu) >= (8, 0)


def test_measure_step_time_on_the_gpu(gpu) -> None:
    st = measure_step_time(_tiny(), batch=32, resolution=32, in_channels=3, num_classes=10, device=gpu,
                           repeats=Repeats(warmup=2, steps=5, max_steps=10))
    assert st.median_ms > 0 and st.samples >= 5 and st.min_ms <= st.median_ms
    hw = fingerprint(gpu)
    assert hw.device == "cuda" and hw.device_model == device_name(gpu) and hw.dtype == precision(gpu).name


def test_proxy_train_on_the_gpu(gpu) -> None:
    data = load_dataset("synthetic", resolution=16, seed=0)
    recipe = ProxyRecipe(epochs=2, batch=64, lr=0.02, seed=0)
    states: list[dict[str, Any]] = []
    outcome = proxy_train(_tiny(data.num_classes, data.in_channels), data, recipe, gpu, on_state=states.append)
    assert 0.0 <= outcome.accuracy <= 1.0 and len(outcome.history) == 2
    assert all(torch.isfinite(torch.tensor(point["train_loss"])) for point in outcome.history)
    # resuming on the GPU ends where the uninterrupted run ended
    resumed = proxy_train(_tiny(data.num_classes, data.in_channels), data, recipe, gpu, resume=states[0])
    assert resumed.history[-1]["val_acc"] == pytest.approx(outcome.history[-1]["val_acc"], abs=0.02)


def test_export_times_on_the_gpu(gpu, tmp_path) -> None:
    from nas.training.export import export

    result = export(SearchSpace.load("tiny").reference, tmp_path / "out", num_classes=10, in_channels=3,
                    resolution=16, device=gpu, batch=16, steps=3)
    saved = json.loads((tmp_path / "out" / "export.json").read_text())
    assert result.step_ms > 0 and saved["step_device"] == device_name(gpu)


# A trainer on the same GPU: queues a lot of GPU work inside its step, says so, then leaves the
# step; the gate's release must wait for that work (the hold ends when the kernels end).
_GPU_TRAINER = """
import tempfile
tempfile.tempdir = TMP
import torch
from nas.measure.device_gate import shared_device
gpu = torch.device("cuda")
a = torch.randn(4096, 4096, device=gpu)
torch.cuda.synchronize()
with shared_device(gpu):
    for _ in range(200):
        a = (a @ a).tanh_()
    results.put(("queued", torch.cuda.current_stream().query()))
results.put(("released", torch.cuda.current_stream().query()))
"""


def test_gate_waits_for_another_process_kernels_on_one_gpu(gpu, private_gate) -> None:
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    child = ctx.Process(target=exec, args=(_GPU_TRAINER, {"TMP": private_gate, "results": results}))
    child.start()
    try:
        kind, idle = results.get(timeout=120)
        assert kind == "queued"
        with exclusive_device(gpu, timeout=120):
            # the trainer let go of the gate, and only after its kernels had run
            kind, idle_at_release = results.get(timeout=120)
            assert kind == "released" and idle_at_release
    finally:
        child.join(120)
        if child.is_alive():
            child.kill()
    assert child.exitcode == 0
    if idle:
        pytest.skip("the GPU ran the queued work before the step ended: nothing was left to drain")


# os._exit: a poisoned CUDA context may fail again while the interpreter tears it down
_FAIL = """
import os, sys, torch
from nas.search.failure import poisons_process
try:
    {action}
    torch.cuda.synchronize()
except BaseException as exc:
    print(type(exc).__name__, poisons_process(exc), flush=True)
    os._exit(0)
print("no error", flush=True)
os._exit(0)
"""


@pytest.mark.parametrize(("action", "poisons"), [
    ("torch.randn(3, device='cuda')[torch.tensor([7], device='cuda')].sum().item()", True),  # device-side assert
    ("torch.empty(1 << 50, dtype=torch.uint8, device='cuda')", False),  # out of memory: the candidate's
])
def test_real_cuda_failures_are_classified(action: str, poisons: bool) -> None:
    """Each in a process of its own: a device-side assert leaves its process's CUDA unusable."""
    done = subprocess.run([sys.executable, "-c", _FAIL.format(action=action)], env=nas_env(), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == str(poisons), done.stdout
