"""Tests behind every verdict of a reproduction report: a design finding against chance, TPE
against random search over seeds. Pure functions of numbers and architectures (no I/O), so each
verdict can be checked on constructed inputs.
"""

from __future__ import annotations

import math
import random
import statistics
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import scipy.stats

from nas.arch import Arch
from nas.reproduce.claims import Claim
from nas.reproduce.precondition import Expectation

ALPHA = 0.05  # significance level of every verdict
MIN_POINTS = 3  # below this many points (seeds, architectures) a result is only a direction


# -- design findings against chance ------------------------------------------------------------
def finding_pvalue(claim: Claim, uniform: Sequence[Arch], top: Sequence[Arch], draws: int = 1000,
                   seed: int = 1) -> float:
    """One-sided Monte Carlo p-value of a finding among `top`: how often as many architectures
    drawn uniformly from the space show it at least as strongly (a claim that is not `monotone`:
    show it at all); (hits + 1) / (draws + 1), so never 0. NaN when there is nothing to measure."""
    if not uniform or not top:
        return math.nan
    observed = claim.value(top)
    if math.isnan(observed):
        return math.nan
    rng = random.Random(seed)
    pool = list(uniform)
    hits = 0
    for _ in range(draws):
        subset = rng.sample(pool, min(len(top), len(pool)))
        value = claim.value(subset)
        if math.isnan(value):
            continue
        # monotone: at least as strong as observed (for an observation that holds, that implies holding)
        hits += (value >= observed) if claim.monotone else claim.holds(subset, value)
    return (hits + 1) / (draws + 1)


def judge_finding(holds: bool, pvalue: float, points: int, hardware: Expectation, alpha: float = ALPHA) -> str:
    """The verdict on one design finding. "reproduced" needs the finding, p < `alpha`, at least
    `MIN_POINTS` architectures and a device that does not speak against it; a device on which
    the design is not faster gets its own verdict, apart from "expected but not found"."""
    significant = pvalue < alpha  # False for NaN
    not_expected = hardware.expected is False
    if not holds:
        if not_expected:
            return hardware.text
        return "expected but not found" if hardware.expected else "not found"
    if points < MIN_POINTS:
        return f"a direction only ({points} architectures)"
    if not significant:
        chance = f"not beyond chance (p = {_p(pvalue)} ≥ {alpha:g})"
        return f"{chance}; {hardware.text}" if not_expected else chance
    if not_expected:
        return f"found although {hardware.text}"
    return "reproduced"


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
