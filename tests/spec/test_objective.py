"""The reward formulas against hand-computed values, and the pruners judging the reward."""

import optuna
import pytest

from nas.spec.objective import Objective, Reference
from nas.spec.space import ObjectiveSpec

REF = Reference(step_ms=100.0, params=1_000_000, macs=400_000_000)


def test_v2_reward_matches_the_paper_formula() -> None:
    obj = Objective(ObjectiveSpec(kind="reward"), REF)
    assert obj.reward(0.9, 100.0, 1_000_000, 1) == pytest.approx(0.9)
    # twice as slow and twice as large: 0.9 * 2^-0.07 * 2^-0.05
    assert obj.reward(0.9, 200.0, 2_000_000, 1) == pytest.approx(0.9 * 2**-0.07 * 2**-0.05)
    assert obj.reward(0.9, 50.0, 1_000_000, 1) > 0.9  # faster is rewarded
    assert obj.directions == ["maximize"]
    assert obj.values(0.9, 100.0, 1_000_000, 1) == [pytest.approx(0.9)]


def test_a_trial_timed_on_other_hardware_is_normalised_by_its_own_reference_timing() -> None:
    obj = Objective(ObjectiveSpec(kind="reward"), REF)
    # 300 ms where the reference takes 150 ms: twice the reference, whatever REF.step_ms says
    assert obj.reward(0.9, 300.0, 1_000_000, 1, ref_step_ms=150.0) == pytest.approx(0.9 * 2**-0.07)


def test_v1_macs_reward_uses_the_full_size_target() -> None:
    obj = Objective(ObjectiveSpec(kind="macs", target_macs=400e6, macs_weight=-0.07), REF)
    assert obj.reward(0.8, 1.0, 1, 400_000_000) == pytest.approx(0.8)
    assert obj.reward(0.8, 1.0, 1, 800_000_000) == pytest.approx(0.8 * 2**-0.07)


def test_pareto_values_are_accuracy_and_step_time() -> None:
    obj = Objective(ObjectiveSpec(kind="pareto"), REF)
    assert obj.directions == ["maximize", "minimize"]
    assert obj.values(0.7, 42.0, 5, 5) == [0.7, 42.0]


def test_the_median_pruner_stops_an_accurate_but_slow_candidate_on_the_reward() -> None:
    """Five finished candidates as fast as the reference at 0.80 accuracy; a sixth is more
    accurate (0.90) but 100x slower. On raw accuracy it survives; on what the sampler maximises
    (0.90 x 100^-0.07 = 0.65) it is pruned. The backends report `values(...)[0]` to pruners."""
    obj = Objective(ObjectiveSpec(kind="reward"), REF)
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=5))
    for _ in range(5):
        trial = study.ask()
        trial.report(obj.values(0.80, 100.0, 1_000_000, 1)[0], 1)
        study.tell(trial, obj.values(0.80, 100.0, 1_000_000, 1)[0])
    slow = study.ask()
    slow.report(0.90, 1)
    assert not slow.should_prune(), "raw accuracy would keep the slow candidate"
    judged = study.ask()
    judged.report(obj.values(0.90, 10_000.0, 1_000_000, 1)[0], 1)
    assert judged.should_prune()
