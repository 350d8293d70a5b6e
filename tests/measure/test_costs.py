"""Measurement tests: counts by hand, step timing side effects, cache sharing."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from nas.measure.costs import (
    Repeats,
    StepTime,
    StepTimeCache,
    count_macs,
    count_params,
    measure_step_time,
    time_steps,
)
from nas.model import build
from nas.spec.resources import load_arch

CPU = torch.device("cpu")


def test_count_params_by_hand() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8, 4))
    assert count_params(model) == 3 * 8 * 9 + 2 * 8 + (8 * 4 + 4)
    model[0].weight.requires_grad_(False)  # frozen weights are not trainable parameters
    assert count_params(model) == 2 * 8 + (8 * 4 + 4)


def test_macs_of_a_conv_by_hand() -> None:
    conv = nn.Conv2d(3, 8, 3, padding=1)
    assert count_macs(conv, 16, 3) == 16 * 16 * 8 * (3 * 3 * 3)
    depthwise = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8)
    assert count_macs(depthwise, 16, 8) == 8 * 8 * 8 * 9


def test_macs_keep_training_mode() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)).train()
    count_macs(model, 8, 1)
    assert model.training


def test_b0_macs_at_224() -> None:
    macs = count_macs(build(load_arch("efficientnet-b0")), 224, 3)
    assert 0.38e9 <= macs <= 0.40e9


def _tiny_model() -> nn.Module:
    arch = load_arch("efficientnetv2-s").with_(width=0.25, depth=0.2, stem_stride=1, resolution=16)
    return build(arch, num_classes=10, in_channels=1)


def test_step_time_leaves_model_and_rng_alone() -> None:
    model = _tiny_model().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    st = measure_step_time(
        model, batch=4, resolution=16, in_channels=1, num_classes=10, device=CPU, warmup=1, steps=5
    )
    assert torch.equal(torch.rand(3), expected_next)
    assert st.median_ms > 0 and math.isfinite(st.spread) and st.spread >= 0 and st.samples == 5
    assert 0 < st.min_ms <= st.median_ms
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not model.training
    assert StepTime.from_dict(json.loads(json.dumps(st.to_dict()))) == st


def test_step_time_single_sample() -> None:
    st = measure_step_time(
        _tiny_model(), batch=2, resolution=8, in_channels=1, num_classes=10, device=CPU, warmup=0, steps=1
    )
    assert st.samples == 1 and st.spread == 0.0


def test_cache_shared_between_instances(tmp_path) -> None:
    path = tmp_path / "sub" / "step_times.json"
    key_a, key_b, key_c = "hw|archA|b128", "hw|archB|b128", "hw|archA|b64"
    first, second = StepTimeCache(path), StepTimeCache(path)
    assert first.get(key_a) is None
    first.put(key_a, StepTime(12.5, 0.1, 10, 11.0))
    assert second.get(key_a) == StepTime(12.5, 0.1, 10, 11.0)  # second was opened before the write
    second.put(key_b, StepTime(3.0, 0.0, 5, 2.9))
    first.put(key_c, StepTime(7.0, 0.2, 10, 6.1))  # must not drop key_b, which first never saw
    third = StepTimeCache(path)
    assert {k for k in (key_a, key_b, key_c) if third.get(k) is not None} == {key_a, key_b, key_c}
    assert not list(path.parent.glob("*.tmp"))


def test_cache_ignores_corrupt_file(tmp_path) -> None:
    path = tmp_path / "step_times.json"
    path.write_text("{not json")
    cache = StepTimeCache(path)
    assert cache.get("x") is None
    cache.put("x", StepTime(1.0, 0.0, 1, 1.0))
    assert StepTimeCache(path).get("x") == StepTime(1.0, 0.0, 1, 1.0)


def test_cache_entries_from_before_min_ms_still_load(tmp_path) -> None:
    path = tmp_path / "step_times.json"
    path.write_text(json.dumps({"x": {"median_ms": 4.0, "spread": 0.1, "samples": 8}}))
    assert StepTimeCache(path).get("x") == StepTime(4.0, 0.1, 8, 4.0)


@pytest.mark.parametrize("bad", [dict(steps=0), dict(warmup=-1), dict(batch=0)])
def test_step_time_rejects_bad_settings(bad: dict) -> None:
    from nas.spec.errors import ConfigError

    kwargs = dict(batch=2, resolution=8, in_channels=1, num_classes=10, device=CPU, warmup=0, steps=1)
    kwargs.update(bad)
    with pytest.raises(ConfigError):
        measure_step_time(nn.Linear(1, 1), **kwargs)


def _recorded_timing(monkeypatch, device: torch.device, warmup: int) -> list[str]:
    events: list[str] = []
    monkeypatch.setattr("nas.measure.costs.synchronize", lambda d: events.append("sync"))
    time_steps(lambda: events.append("step"), device, Repeats(warmup=warmup, steps=2, max_steps=2, target_spread=1e9))
    return events


def test_timed_steps_start_and_end_synchronised(monkeypatch) -> None:
    events = _recorded_timing(monkeypatch, CPU, warmup=2)
    # warm-up, drain, then every timed step between two synchronisations
    assert events == ["step", "step", "sync", "sync", "step", "sync", "sync", "step", "sync"]


def test_cuda_never_times_the_autotuning_step(monkeypatch) -> None:
    """cudnn.benchmark autotunes in the first step of a shape: one untimed step even at warmup=0."""
    assert _recorded_timing(monkeypatch, torch.device("cuda"), warmup=0)[:2] == ["step", "sync"]
    assert _recorded_timing(monkeypatch, CPU, warmup=0)[:2] == ["sync", "sync"]
