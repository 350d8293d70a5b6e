"""Statistics on hand-made inputs with known answers (the tests themselves are scipy's)."""

from __future__ import annotations

import math
import random

import pytest

from nas.report.stats import (
    choice_frequencies,
    dominates,
    kendall_tau,
    kendall_tau_interval,
    majority,
    mean_std,
    pareto_front,
    running_best,
    spearman,
    stage_mean,
    stage_share,
    welch_difference,
    welch_pvalue,
)
from nas.spec.arch import Arch, Stage


def arch(*stages: tuple[str, int, float, float]) -> Arch:
    """An architecture from (op, kernel, expansion, se) per stage; the rest is fixed."""
    return Arch(
        stages=tuple(
            Stage(op=o, kernel=k, expansion=e, se=s, channels=16, layers=1, stride=1) for o, k, e, s in stages
        ),
        stem_channels=16,
    )


# -- rank correlations with p-values (scipy.stats) -------------------------------------------
def test_kendall_tau_known_values() -> None:
    tau, p = kendall_tau([1, 2, 3, 4], [10, 20, 30, 40])
    assert tau == pytest.approx(1.0) and p == pytest.approx(2 / 24)  # exact: 1 of 4! orders, two-sided
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]).statistic == pytest.approx(-1.0)
    # pairs of [1,2,3,4] vs [1,3,2,4]: 5 concordant, 1 discordant -> (5 - 1) / 6; exact two-sided p:
    # orders of 4 with at most 1 discordant pair are 1 + 3 (adjacent swaps) of 24, times 2 sides
    tau, p = kendall_tau([1, 2, 3, 4], [1, 3, 2, 4])
    assert tau == pytest.approx(4 / 6) and p == pytest.approx(2 * 4 / 24)


def test_kendall_tau_b_with_ties() -> None:
    # x = [1, 1, 2], y = [1, 2, 3]: pairs (0,1) tied in x only; (0,2), (1,2) concordant
    # tau-b = (2 - 0) / sqrt((2 + 0 + 1) * (2 + 0 + 0)) = 2 / sqrt(6)
    tau, p = kendall_tau([1, 1, 2], [1, 2, 3])
    assert tau == pytest.approx(2 / math.sqrt(6)) and 0.0 < p <= 1.0


def test_perfect_order_of_ten_is_significant_and_random_order_is_not() -> None:
    x = list(range(10))
    for correlate in (kendall_tau, spearman):
        value, p = correlate(x, [2 * v + 1 for v in x])
        assert value == pytest.approx(1.0)
        assert 0.0 <= p < 1e-5, correlate.__name__  # Kendall exact: 2 / 10! = 5.5e-7
        assert correlate(x, x).significant(0.01, at_least=0.6)
    assert kendall_tau(x, x).pvalue == pytest.approx(2 / math.factorial(10))
    shuffled = [3, 7, 0, 9, 5, 1, 8, 2, 6, 4]
    for correlate in (kendall_tau, spearman):
        value, p = correlate(x, shuffled)
        assert abs(value) < 0.3 and 0.3 < p <= 1.0
        assert not correlate(x, shuffled).significant(0.01)


def test_spearman_known_value() -> None:
    # ranks [1,2,3,4,5] vs [2,1,4,3,5]: d^2 = 1+1+1+1+0 = 4, rho = 1 - 6 * 4 / (5 * 24) = 0.8
    rho, p = spearman([10, 20, 30, 40, 50], [2, 1, 4, 3, 5])
    assert rho == pytest.approx(0.8) and 0.05 < p < 0.2  # t approximation: p = 0.104


def test_correlations_are_nan_and_never_significant_when_undefined() -> None:
    for correlate in (kendall_tau, spearman):
        for x, y in (([1], [2]), ([], []), ([1, 1, 1], [1, 2, 3]), ([1, 2, 3], [5, 5, 5])):
            result = correlate(x, y)
            assert math.isnan(result.statistic) and math.isnan(result.pvalue)
            assert not result.significant(1.0, at_least=-1.0)
        with pytest.raises(ValueError, match="same length"):
            correlate([1, 2], [1])


def test_kendall_tau_matches_a_pairwise_count() -> None:
    """tau-b from the definition, on accuracies with ties, against scipy's."""
    rng = random.Random(3)
    for n in (5, 8, 20):
        x = [rng.choice([0.90, 0.91, 0.92, 0.93]) for _ in range(n)]
        y = [rng.random() for _ in range(n)]
        y[1] = y[0]
        pairs = [(a, b) for a in range(n) for b in range(a + 1, n)]
        sx = [(x[a] > x[b]) - (x[a] < x[b]) for a, b in pairs]
        sy = [(y[a] > y[b]) - (y[a] < y[b]) for a, b in pairs]
        s = sum(i * j for i, j in zip(sx, sy, strict=True))
        expected = s / math.sqrt(sum(i != 0 for i in sx) * sum(j != 0 for j in sy))
        tau, p = kendall_tau(x, y)
        assert tau == pytest.approx(expected, abs=1e-12) and 0.0 <= p <= 1.0


def test_kendall_tau_interval() -> None:
    x = list(range(10))
    assert kendall_tau_interval(x, x) == pytest.approx((1.0, 1.0))  # every resample is in order
    rng = random.Random(0)
    y = [v + rng.gauss(0, 3) for v in x]
    tau = kendall_tau(x, y).statistic
    low, high = kendall_tau_interval(x, y)
    assert -1.0 <= low < tau < high <= 1.0 and high - low > 0.2  # 10 noisy points: a wide interval
    assert kendall_tau_interval(x, y) == (low, high)  # seeded
    narrower = kendall_tau_interval(x, y, confidence=0.5)
    assert low < narrower[0] < narrower[1] < high
    assert all(math.isnan(v) for v in kendall_tau_interval([1, 1, 1], [1, 2, 3]))


# -- Welch's test over seeds -----------------------------------------------------------------
def test_welch_pvalue() -> None:
    # means 0.95 vs 0.90, std 0.01, 3 seeds each: t = 0.05 / sqrt(2 * 0.01^2 / 3) = 6.12, df = 4
    assert welch_pvalue((0.95, 0.01), 3, (0.90, 0.01), 3) == pytest.approx(0.0036, abs=1e-4)
    assert welch_pvalue((0.905, 0.01), 3, (0.90, 0.01), 3) > 0.5
    assert math.isnan(welch_pvalue((0.95, 0.0), 1, (0.90, 0.01), 3))  # one seed: no spread to test against
    assert math.isnan(welch_pvalue((0.9, 0.0), 3, (0.9, 0.0), 3))  # constant and equal: no difference


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
    assert all(math.isnan(v) for v in mean_std([math.nan, math.nan, math.nan]))  # not measured: no spread
    assert all(math.isnan(v) for v in mean_std([1.0, math.nan]))


def test_welch_difference_is_scipys_interval_and_two_one_sided_tests() -> None:
    import statistics

    import scipy.stats

    a = [0.951, 0.957, 0.962, 0.955, 0.949]
    b = [0.948, 0.953, 0.950, 0.958]
    margin = 0.005
    d = welch_difference((statistics.fmean(a), statistics.stdev(a)), len(a),
                         (statistics.fmean(b), statistics.stdev(b)), len(b), margin)
    interval = scipy.stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert (d.low, d.high) == pytest.approx((interval.low, interval.high))
    # TOST = the larger p of "a - b > -margin" and "a - b < +margin", each a one-sided Welch test
    lower = scipy.stats.ttest_ind([x + margin for x in a], b, equal_var=False, alternative="greater").pvalue
    upper = scipy.stats.ttest_ind([x - margin for x in a], b, equal_var=False, alternative="less").pvalue
    assert d.equivalence_pvalue == pytest.approx(max(lower, upper))
    assert math.isnan(welch_difference((0.9, 0.0), 1, (0.9, 0.01), 3, margin).equivalence_pvalue)
