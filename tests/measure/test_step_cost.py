"""The per-part step-time table: parts, keys by hardware, caching, warm-up, adaptive repeats."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from nas.measure import costs as measure
from nas.measure.costs import Repeats, StepTimeCache, time_steps
from nas.measure.hardware import fingerprint
from nas.measure.step_cost import TimingShape, network_parts, table_step_time, timing_arch
from nas.model import build
from nas.spec.resources import load_arch
from nas.spec.space import SearchSpace

CPU = torch.device("cpu")
SHAPE = TimingShape(batch=4, resolution=16, in_channels=3, num_classes=10)
QUICK = Repeats(warmup=1, steps=2, max_steps=2, target_spread=0.0)


def tiny_arch():
    return SearchSpace.load("tiny").reference


def test_parts_are_stem_every_block_and_head_with_their_input_shapes() -> None:
    arch = tiny_arch()
    with torch.device("meta"):
        net = build(timing_arch(arch), num_classes=10, in_channels=3)
    parts = network_parts(net, SHAPE)
    assert [p.kind for p in parts] == ["stem"] + ["block"] * sum(s.layers for s in arch.stages) + ["head"]
    assert parts[0].input_shape == (4, 3, 16, 16)
    # tiny: stem stride 1, stages strides 1, 2, 2 -> the head sees 4x4 maps of the last stage's width
    assert parts[-1].input_shape == (4, arch.stages[-1].channels, 4, 4)
    # the last stage's two blocks: the second repeats the first's output shape, a different part
    assert parts[-3].key() != parts[-2].key()


def test_equal_parts_share_a_key_and_different_parts_do_not() -> None:
    space = SearchSpace.load("v2")
    with torch.device("meta"):
        net = build(timing_arch(space.reference), num_classes=10, in_channels=3)
    keys = [p.key() for p in network_parts(net, TimingShape(8, 64))]
    # V2-S has 40 blocks, most repeated within their stage: far fewer distinct parts
    assert len(keys) == 42
    # stem, head, and per stage a first and a repeated block; stage 0 (24 -> 24, stride 1) has
    # one: its first block is its repeated block
    assert len(set(keys)) == 2 + 1 + 5 * 2


def test_the_table_is_filled_once_and_then_read(tmp_path) -> None:
    cache = StepTimeCache(tmp_path / "steps.json")
    first = table_step_time(tiny_arch(), SHAPE, CPU, QUICK, cache)
    filled = len(cache)
    assert filled >= 4 and first.median_ms > 0
    again = table_step_time(tiny_arch(), SHAPE, CPU, QUICK, StepTimeCache(tmp_path / "steps.json"))
    assert again == first  # read back from the file, not timed again
    assert len(StepTimeCache(tmp_path / "steps.json")) == filled


def test_table_keys_carry_the_hardware_fingerprint(tmp_path) -> None:
    cache = StepTimeCache(tmp_path / "steps.json")
    table_step_time(tiny_arch(), SHAPE, CPU, QUICK, cache)
    here = fingerprint(CPU)
    assert all(key.startswith(here.key() + "|") for key in cache._read())
    other = replace(here, threads=here.threads + 7)
    before = len(cache)
    table_step_time(tiny_arch(), SHAPE, CPU, QUICK, cache, hardware=other)
    assert len(cache) == 2 * before  # other hardware: its own entries, never this machine's


def test_a_process_warms_up_before_its_first_timing_is_kept(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(measure, "_warm_devices", set())
    calls = []
    original = measure.time_steps

    def spy(step, device, repeats):
        calls.append(str(device) in measure._warm_devices)
        return original(step, device, repeats)

    monkeypatch.setattr("nas.measure.step_cost.time_steps", spy)
    table_step_time(tiny_arch(), SHAPE, CPU, QUICK, StepTimeCache(tmp_path / "steps.json"))
    assert calls and all(calls), "a part was timed before the process warmed up"


def test_adaptive_repeats_stop_at_the_target_spread_or_the_cap() -> None:
    count = [0]

    def steady() -> None:
        count[0] += 1

    st = time_steps(steady, CPU, Repeats(warmup=0, steps=3, max_steps=50, target_spread=10.0))
    assert st.samples == 3  # any spread is within 1000%: stops at the minimum
    st = time_steps(steady, CPU, Repeats(warmup=2, steps=3, max_steps=7, target_spread=-1.0))
    assert st.samples == 7  # a spread below zero is never reached: stops at the cap
    assert count[0] == 3 + 2 + 7


def test_bad_repeats_are_config_errors() -> None:
    from nas.spec.errors import ConfigError

    with pytest.raises(ConfigError, match="max_steps >= steps"):
        time_steps(lambda: None, CPU, Repeats(warmup=0, steps=5, max_steps=2))


def test_known_b0_parts() -> None:
    with torch.device("meta"):
        net = build(timing_arch(load_arch("efficientnet-b0")), num_classes=1000, in_channels=3)
    parts = network_parts(net, TimingShape(1, 224, 3, 1000))
    assert len(parts) == 16 + 2
    assert parts[1].input_shape == (1, 32, 112, 112)  # stem stride 2
    assert parts[-1].input_shape == (1, 320, 7, 7)
