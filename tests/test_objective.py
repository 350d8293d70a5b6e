"""The reward formulas against hand-computed values."""

import pytest

from nas.objective import Objective, Reference
from nas.space import ObjectiveSpec

REF = Reference(step_ms=100.0, params=1_000_000, macs=50_000_000, full_macs=400_000_000)


def test_v2_reward_matches_the_paper_formula() -> None:
    obj = Objective(ObjectiveSpec(kind="reward"), REF)
    assert obj.reward(0.9, 100.0, 1_000_000, 1) == pytest.approx(0.9)
    # twice as slow and twice as large: 0.9 * 2^-0.07 * 2^-0.05
    assert obj.reward(0.9, 200.0, 2_000_000, 1) == pytest.approx(0.9 * 2**-0.07 * 2**-0.05)
    assert obj.reward(0.9, 50.0, 1_000_000, 1) > 0.9  # faster is rewarded
    assert obj.directions == ["maximize"]
    assert obj.values(0.9, 100.0, 1_000_000, 1) == [pytest.approx(0.9)]


def test_v1_macs_reward_scales_the_target_to_the_proxy() -> None:
    obj = Objective(ObjectiveSpec(kind="macs", target_macs=400e6, macs_weight=-0.07), REF)
    # the reference is exactly at T at full size, so it is exactly at T at the proxy too
    assert obj.target_macs() == pytest.approx(50e6)
    assert obj.reward(0.8, 1.0, 1, 50_000_000) == pytest.approx(0.8)
    assert obj.reward(0.8, 1.0, 1, 100_000_000) == pytest.approx(0.8 * 2**-0.07)


def test_pareto_values_are_accuracy_and_step_time() -> None:
    obj = Objective(ObjectiveSpec(kind="pareto"), REF)
    assert obj.directions == ["maximize", "minimize"]
    assert obj.values(0.7, 42.0, 5, 5) == [0.7, 42.0]
