"""`nas calibrate` covers every part a space can produce, from meta-device shapes alone."""

from __future__ import annotations

import random

import pytest
import torch

from nas.measure.calibrate import covering_archs, space_parts
from nas.measure.hardware import fingerprint
from nas.measure.step_cost import table_parts
from nas.spec.space import SearchSpace

CPU = torch.device("cpu")


class RandomChoices:
    """A Suggester that draws uniformly, seeded."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def suggest_categorical(self, name: str, choices: list) -> object:
        return self.rng.choice(choices)


# v1 (2,736 covering architectures, ~2 min of meta builds) is left out for time: its MACs reward
# times no step, so a v1 search has no table to fill
@pytest.mark.parametrize("name", ["tiny", "v2"])
def test_every_sampled_architecture_is_made_of_calibrated_parts(name: str) -> None:
    space = SearchSpace.load(name)
    shape = space.measure.timing_shape("cpu", space.resolution, 10)
    calibrated = set(space_parts(space, shape, CPU))
    hardware = fingerprint(CPU)
    for seed in range(25):
        arch = space.sample(RandomChoices(seed))
        assert set(table_parts(arch, shape, hardware)) <= calibrated, arch.to_string()
    assert set(table_parts(space.reference, shape, hardware)) <= calibrated


def test_the_covering_set_stays_small() -> None:
    space = SearchSpace.load("v2")
    # one architecture per stage and block choice (the stages' channels are fixed in v2)
    combos = sum(len(s.op) * len(s.kernel) * len(s.expansion) * len(s.se) * len(s.skip) for s in space.stages)
    assert sum(1 for _ in covering_archs(space)) == combos


def test_parts_are_found_without_building_anything_real(monkeypatch) -> None:
    import nas.measure.step_cost as step_cost

    def no_real_module(*args, **kwargs):
        raise AssertionError("a part was timed or materialised")

    monkeypatch.setattr(step_cost, "_materialise", no_real_module)
    space = SearchSpace.load("tiny")
    parts = space_parts(space, space.measure.timing_shape("cpu", space.resolution, 10), CPU)
    assert parts and all(p.module is not None and next(p.module.parameters()).is_meta for p in parts.values())
