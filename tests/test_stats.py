"""Pure statistics on hand-made inputs with known answers."""

from __future__ import annotations

import math
import random

import pytest

from nas.arch import Arch, Stage
from nas.stats import (
    choice_frequencies,
    dominates,
    kendall_tau,
    majority,
    mean_std,
    pareto_front,
    running_best,
    stage_mean,
    stage_share,
)


def arch(*stages: tuple[str, int, float, float]) -> Arch:
    """An architecture from (op, kernel, expansion, se) per stage; the rest is fixed."""
    return Arch(
        stages=tuple(
            Stage(op=o, kernel=k, expansion=e, se=s, channels=16, layers=1, stride=1) for o, k, e, s in stages
        ),
        stem_channels=16,
    )


# -- Kendall tau -----------------------------------------------------------------------------
def test_kendall_tau_known_values() -> None:
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    # pairs of [1,2,3,4] vs [1,3,2,4]: 5 concordant, 1 discordant -> (5 - 1) / 6
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)


def test_kendall_tau_b_with_ties() -> None:
    # x = [1, 1, 2], y = [1, 2, 3]: pairs (0,1) tied in x only; (0,2), (1,2) concordant
    # tau-b = (2 - 0) / sqrt((2 + 0 + 1) * (2 + 0 + 0)) = 2 / sqrt(6)
    assert kendall_tau([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / math.sqrt(6))


def test_kendall_tau_degenerate_inputs() -> None:
    assert math.isnan(kendall_tau([1], [2]))
    assert math.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))  # one ranking is all ties
    with pytest.raises(ValueError, match="same length"):
        kendall_tau([1, 2], [1])


def test_kendall_tau_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = random.Random(3)
    for n in (5, 8, 20):
        x = [rng.choice([0.90, 0.91, 0.92, 0.93]) for _ in range(n)]  # with ties, as accuracies have
        y = [rng.random() for _ in range(n)]
        y[1] = y[0]
        assert kendall_tau(x, y) == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)


# -- Pareto front ----------------------------------------------------------------------------
def test_pareto_front_known_points() -> None:
    # (cost, value): 0 (1, .5), 1 (2, .7), 2 (3, .6) dominated by 1, 3 (4, .9), 4 (2, .4) dominated by 1
    costs = [1, 2, 3, 4, 2]
    values = [0.5, 0.7, 0.6, 0.9, 0.4]
    assert pareto_front(costs, values) == [0, 1, 3]


def test_pareto_front_ties_and_duplicates() -> None:
    # equal cost: only the higher value; equal value: only the cheaper; identical points: both kept
    assert pareto_front([1, 1], [0.5, 0.6]) == [1]
    assert pareto_front([1, 2], [0.6, 0.6]) == [0]
    assert sorted(pareto_front([1, 1], [0.6, 0.6])) == [0, 1]
    assert pareto_front([], []) == []


def test_pareto_front_agrees_with_brute_force() -> None:
    rng = random.Random(0)
    costs = [rng.randint(1, 10) for _ in range(60)]
    values = [rng.randint(1, 10) / 10 for _ in range(60)]
    brute = [i for i in range(60) if not any(dominates(costs[j], values[j], costs[i], values[i]) for j in range(60))]
    assert sorted(pareto_front(costs, values)) == brute


# -- choice frequencies ----------------------------------------------------------------------
def test_choice_frequencies_on_hand_built_trials() -> None:
    trials = [
        arch(("fused_mbconv", 3, 1, 0.0), ("mbconv", 3, 6, 0.25)),
        arch(("fused_mbconv", 3, 4, 0.0), ("mbconv", 5, 6, 0.25)),
        arch(("fused_mbconv", 5, 4, 0.0), ("mbconv", 3, 4, 0.0)),
        arch(("mbconv", 3, 4, 0.25), ("fused_mbconv", 3, 6, 0.25)),
    ]
    freqs = choice_frequencies(trials)
    assert freqs[0]["op"] == {"fused_mbconv": 0.75, "mbconv": 0.25}
    assert freqs[0]["kernel"] == {3: 0.75, 5: 0.25}
    assert freqs[0]["expansion"] == {1: 0.25, 4: 0.75}
    assert freqs[0]["se"] == {0.0: 0.75, 0.25: 0.25}
    assert freqs[1]["op"] == {"fused_mbconv": 0.25, "mbconv": 0.75}
    assert freqs[1]["expansion"] == {4: 0.25, 6: 0.75}
    assert freqs[1]["se"] == {0.0: 0.25, 0.25: 0.75}
    for stage in freqs:
        for shares in stage.values():
            assert sum(shares.values()) == pytest.approx(1.0)
    assert majority(freqs[1]["op"]) == ("mbconv", 0.75)
    # joint choices over stages: MBConv with SE in stage 2 for 2 of 4 trials
    assert stage_share(trials, [1], lambda s: s.op == "mbconv" and s.se > 0) == 0.5
    assert stage_share(trials, [0, 1], lambda s: s.kernel == 3) == 6 / 8
    assert stage_mean(trials, [1], "expansion") == pytest.approx(5.5)


def test_choice_frequencies_of_nothing() -> None:
    assert choice_frequencies([]) == []
    assert math.isnan(stage_share([], [0], lambda s: True))
    value, share = majority({})
    assert value is None and math.isnan(share)


# -- small helpers ---------------------------------------------------------------------------
def test_running_best_and_mean_std() -> None:
    assert running_best([None, 0.5, 0.4, float("nan"), 0.7]) == [None, 0.5, 0.5, 0.5, 0.7]
    mean, std = mean_std([1.0, 2.0, 3.0])
    assert (mean, std) == (2.0, 1.0)
    assert mean_std([4.0]) == (4.0, 0.0)
    assert all(math.isnan(v) for v in mean_std([]))
