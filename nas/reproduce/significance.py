"""Tests behind every verdict of a reproduction report: a design finding against random search
with the search seed as the unit and against the reward on unbiased samples, what made it
(accuracy or cost), TPE against random search over seeds. Pure functions of numbers and architectures (no I/O), so each
verdict can be checked on constructed inputs.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import scipy.stats

from nas.reproduce.claims import Claim
from nas.reproduce.precondition import Expectation
from nas.spec.arch import Arch

ALPHA = 0.05  # significance level of every verdict
MIN_POINTS = 3  # below this many points (seeds, architectures) a result is only a direction
ACCURACY_MARGIN = 0.005  # two accuracies are "equivalent" only when TOST puts their gap within ±0.5 points


# -- design findings against chance ------------------------------------------------------------
def claim_score(claim: Claim, archs: Sequence[Arch]) -> float:
    """How strongly `archs` show a finding: its value, or for a claim that is not `monotone`,
    1.0 / 0.0 for whether it holds (NaN when there is nothing to measure)."""
    if not archs:
        return math.nan
    value = claim.value(archs)
    if math.isnan(value) or claim.monotone:
        return value
    return float(claim.holds(archs, value))


@dataclass(frozen=True)
class SeedTest:
    """A finding's score per search seed in two kinds of run (a: e.g. TPE's top k, b: the same
    seed's random search's top k), and the one-sided Wilcoxon signed-rank p-value that a is
    higher: the seed, not the trial, is the unit."""

    a: tuple[float, ...]
    b: tuple[float, ...]
    pvalue: float

    @property
    def seeds(self) -> int:
        return len(self.a)


def seed_test(a: Sequence[float], b: Sequence[float], alternative: str = "greater") -> SeedTest:
    """`scipy.stats.wilcoxon` over the seeds that have both values; NaN below `MIN_POINTS`
    seeds, and 1 when no seed differs (nothing shows a over b). With n seeds all one way the
    one-sided p is 1 / 2^n: 3 seeds cannot go below 0.125, 6 reach 0.016."""
    pairs = [(x, y) for x, y in zip(a, b, strict=True) if not (math.isnan(x) or math.isnan(y))]
    xs, ys = tuple(x for x, _ in pairs), tuple(y for _, y in pairs)
    if len(pairs) < MIN_POINTS:
        return SeedTest(xs, ys, math.nan)
    diffs = [x - y for x, y in pairs]
    if all(d == 0 for d in diffs):
        return SeedTest(xs, ys, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns that small samples use the exact distribution
        return SeedTest(xs, ys, float(scipy.stats.wilcoxon(diffs, alternative=alternative).pvalue))


@dataclass(frozen=True)
class RankTest:
    """Spearman's rank correlation of a finding's score with a figure (reward, accuracy or the
    cost factor) over unbiased samples: every finished trial of the random searches. One-sided:
    p is the chance of a correlation this positive if the figure did not favour the finding."""

    rho: float
    pvalue: float
    n: int


def rank_test(scores: Sequence[float], figures: Sequence[float]) -> RankTest:
    """`scipy.stats.spearmanr`, alternative "greater"; NaN below `MIN_POINTS` points or when
    either side is constant (a space where every architecture shows the finding alike)."""
    pairs = [(x, y) for x, y in zip(scores, figures, strict=True) if not (math.isnan(x) or math.isnan(y))]
    if len(pairs) < MIN_POINTS or len({x for x, _ in pairs}) < 2 or len({y for _, y in pairs}) < 2:
        return RankTest(math.nan, math.nan, len(pairs))
    result = scipy.stats.spearmanr([x for x, _ in pairs], [y for _, y in pairs], alternative="greater")
    return RankTest(float(result.statistic), float(result.pvalue), len(pairs))


def judge_finding(holds: bool, seed_p: float, reward_p: float, seeds: int, hardware: Expectation,
                  alpha: float = ALPHA) -> str:
    """The verdict on one design finding. "reproduced" needs the finding, both tests below
    `alpha` (TPE's top k shows it more than random search's top k of the same seed, paired over
    at least `MIN_POINTS` seeds; and the reward favours it among unbiased samples) and a device
    that does not speak against it; a device on which the design is not faster gets its own
    verdict, apart from "expected but not found"."""
    not_expected = hardware.expected is False
    if not holds:
        if not_expected:
            return hardware.text
        return "expected but not found" if hardware.expected else "not found"
    if seeds < MIN_POINTS:
        return f"a direction only ({seeds} search seed{'s' if seeds != 1 else ''})"
    failed = []
    if not seed_p < alpha:  # NaN included
        failed.append(f"TPE vs random per seed p = {_p(seed_p)}")
    if not reward_p < alpha:
        failed.append(f"reward among random trials p = {_p(reward_p)}")
    if failed:
        chance = f"not shown ({'; '.join(failed)}; each must be < {alpha:g})"
        return f"{chance}; {hardware.text}" if not_expected else chance
    if not_expected:
        return f"found although {hardware.text}"
    return "reproduced"


def attribute(found_by_reward: SeedTest, found_by_accuracy: SeedTest, reward_vs_accuracy: SeedTest,
              alpha: float = ALPHA) -> str:
    """What made a finding, from the cost-term ablation (the same seeds and budget searched for
    accuracy alone): accuracy when the accuracy-only search also shows it beyond random search;
    cost when the reward search shows it more than the accuracy-only search; both; or neither."""
    if found_by_accuracy.seeds == 0 and reward_vs_accuracy.seeds == 0:
        return "not attributable: no accuracy-only search"
    if found_by_accuracy.seeds < MIN_POINTS or reward_vs_accuracy.seeds < MIN_POINTS:
        return f"not attributable: fewer than {MIN_POINTS} seeds with an accuracy-only search"
    accuracy = found_by_accuracy.pvalue < alpha
    cost = reward_vs_accuracy.pvalue < alpha
    if accuracy and cost:
        return "accuracy and cost (found without the cost term, and more with it)"
    if accuracy:
        return (f"accuracy (found without the cost term, p = {_p(found_by_accuracy.pvalue)}; the cost term adds "
                f"nothing shown, p = {_p(reward_vs_accuracy.pvalue)})")
    if cost:
        return (f"cost (found more with the cost term than without, p = {_p(reward_vs_accuracy.pvalue)}; without "
                f"it not beyond random search, p = {_p(found_by_accuracy.pvalue)})")
    shown = "" if found_by_reward.pvalue < alpha else " (nor is the finding itself shown)"
    return (f"neither shown: accuracy-only vs random p = {_p(found_by_accuracy.pvalue)}, with vs without the cost "
            f"term p = {_p(reward_vs_accuracy.pvalue)}{shown}")


# -- TPE against random search, paired by seed ---------------------------------------------------
@dataclass(frozen=True)
class PairedTest:
    """Best rewards of two methods run with the same seeds (pairs), their mean difference a - b,
    the paired t-test's 95% interval and p-value, and Wilcoxon's signed-rank p-value."""

    a: tuple[float, ...]
    b: tuple[float, ...]
    mean_difference: float
    low: float
    high: float
    pvalue: float
    wilcoxon_pvalue: float

    @property
    def pairs(self) -> int:
        return len(self.a)

    def verdict(self, alpha: float = ALPHA) -> str:
        """"better", "worse", "no difference beyond the spread" or "a direction only"."""
        if self.pairs < MIN_POINTS:
            return f"a direction only ({self.pairs} seed{'s' if self.pairs != 1 else ''})"
        if not self.pvalue < alpha:
            return f"no difference beyond the spread (p = {_p(self.pvalue)} ≥ {alpha:g})"
        return "better" if self.mean_difference > 0 else "worse"


def paired_test(a: Sequence[float], b: Sequence[float]) -> PairedTest:
    """`scipy.stats.ttest_rel` and `wilcoxon` of a against b (NaN below `MIN_POINTS` pairs, or
    when every difference is the same: no spread to test against)."""
    if len(a) != len(b):
        raise ValueError(f"a and b must pair up, but got {len(a)} and {len(b)} values")
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    mean = statistics.fmean(diffs) if diffs else math.nan
    low = high = p = w = math.nan
    if len(diffs) >= MIN_POINTS and statistics.pstdev(diffs) > 0:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            test = scipy.stats.ttest_rel(a, b)
            interval = test.confidence_interval(1 - ALPHA)
            low, high, p = float(interval.low), float(interval.high), float(test.pvalue)
            if any(d != 0 for d in diffs):
                w = float(scipy.stats.wilcoxon(diffs).pvalue)
    return PairedTest(tuple(a), tuple(b), mean, low, high, p, w)


def _p(p: float) -> str:
    return "–" if math.isnan(p) else f"{p:.2g}"
