"""Statistics the reports are made of: rank correlations and tests (from `scipy.stats`, each
with its p-value), Pareto fronts, choice frequencies.

No I/O and no plotting here, so each function can be checked on hand-made inputs.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from nas.spec.arch import Arch, Stage

# The per-stage choices the papers discuss (and the report's heatmap shows).
CHOICE_FIELDS = ("op", "kernel", "expansion", "se")


class Correlation(NamedTuple):
    """A rank correlation and the p-value of the test that there is none (two-sided).

    Unpacks as ``(statistic, pvalue)``; both are NaN when the correlation is undefined (fewer
    than two points, or one input constant), which `significant` never counts as a pass.
    """

    statistic: float
    pvalue: float

    def significant(self, alpha: float = 0.01, at_least: float = -math.inf) -> bool:
        """Whether the correlation is at least `at_least` with p below `alpha` (False for NaN)."""
        return bool(self.statistic >= at_least and self.pvalue < alpha)


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> Correlation:
    """Kendall's tau-b and its p-value (`scipy.stats.kendalltau`: exact for small inputs
    without ties, normal approximation otherwise)."""
    import scipy.stats  # here, not at the top: a search needs none of scipy (about 0.3 s to import)

    return _correlation(scipy.stats.kendalltau, x, y)


def spearman(x: Sequence[float], y: Sequence[float]) -> Correlation:
    """Spearman's rho and its p-value (`scipy.stats.spearmanr`, t approximation)."""
    import scipy.stats

    return _correlation(scipy.stats.spearmanr, x, y)


def _correlation(test: Callable[..., Any], x: Sequence[float], y: Sequence[float]) -> Correlation:
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, but got {len(x)} and {len(y)}")
    # scipy warns and returns NaN here; say NaN without the warning
    if len(x) < 2 or len(set(x)) < 2 or len(set(y)) < 2:
        return Correlation(math.nan, math.nan)
    result = test(x, y)
    # scipy leaves p NaN where its approximation is undefined (Spearman of 2 points)
    return Correlation(float(result.statistic), float(result.pvalue))


def kendall_tau_interval(x: Sequence[float], y: Sequence[float], confidence: float = 0.95,
                         resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Bootstrap confidence interval of Kendall's tau-b (`scipy.stats.bootstrap`, pairs
    resampled, percentile method: it copes with resamples whose tau is constant). (NaN, NaN)
    when tau is undefined, or when a resample's is (one side constant: likely below ~10 points)."""
    if math.isnan(kendall_tau(x, y).statistic):
        return math.nan, math.nan

    def tau(a: Sequence[float], b: Sequence[float]) -> float:
        return kendall_tau(a, b).statistic

    import scipy.stats

    with warnings.catch_warnings():  # a NaN resample makes the interval NaN, which is the answer
        warnings.simplefilter("ignore", scipy.stats.DegenerateDataWarning)
        # random_state, not rng: scipy < 1.15 knows only that name
        result = scipy.stats.bootstrap((list(x), list(y)), tau, paired=True, vectorized=False,
                                       n_resamples=resamples, confidence_level=confidence, method="percentile",
                                       random_state=seed)
    interval = result.confidence_interval
    return float(interval.low), float(interval.high)


def welch_pvalue(a: tuple[float, float], n_a: int, b: tuple[float, float], n_b: int) -> float:
    """Two-sided p-value of Welch's t-test that two means differ, from each side's (mean, sample
    std) and size (`scipy.stats.ttest_ind_from_stats`). NaN when a side has fewer than two
    samples (no spread to test against) or both are constant and equal."""
    if n_a < 2 or n_b < 2:
        return math.nan
    import scipy.stats

    with warnings.catch_warnings():  # 0/0 of two constant, equal sides: NaN is the answer
        warnings.simplefilter("ignore", RuntimeWarning)
        result = scipy.stats.ttest_ind_from_stats(a[0], a[1], n_a, b[0], b[1], n_b, equal_var=False)
    return float(result.pvalue)


class Difference(NamedTuple):
    """A difference of two means (a - b) with its Welch 95% interval, and the p-value of Schuirmann's
    two one-sided tests (TOST) that it lies within ±`margin`: below alpha, the two are equivalent."""

    value: float
    low: float
    high: float
    margin: float
    equivalence_pvalue: float

    def equivalent(self, alpha: float = 0.05) -> bool:
        return self.equivalence_pvalue < alpha  # False for NaN


def welch_difference(a: tuple[float, float], n_a: int, b: tuple[float, float], n_b: int, margin: float,
                     confidence: float = 0.95) -> Difference:
    """Welch's interval of mean a - mean b and the TOST p-value of |a - b| < `margin`, from each
    side's (mean, sample std) and size (`scipy.stats.t`). NaN interval and p below two samples a
    side; two constant sides have a zero-width interval and are equivalent exactly when their gap is
    inside the margin."""
    import scipy.stats

    diff = a[0] - b[0]
    if n_a < 2 or n_b < 2:
        return Difference(diff, math.nan, math.nan, margin, math.nan)
    va, vb = a[1] ** 2 / n_a, b[1] ** 2 / n_b
    se = math.sqrt(va + vb)
    if se == 0.0:
        return Difference(diff, diff, diff, margin, 0.0 if abs(diff) < margin else 1.0)
    df = (va + vb) ** 2 / (va ** 2 / (n_a - 1) + vb ** 2 / (n_b - 1))  # Welch-Satterthwaite
    half = float(scipy.stats.t.ppf(0.5 + confidence / 2, df)) * se
    # TOST: both "diff > -margin" and "diff < +margin" must reject their opposite
    p_low = float(scipy.stats.t.sf((diff + margin) / se, df))
    p_high = float(scipy.stats.t.cdf((diff - margin) / se, df))
    return Difference(diff, diff - half, diff + half, margin, max(p_low, p_high))


def pareto_front(costs: Sequence[float], values: Sequence[float]) -> list[int]:
    """Indices of the points no other point dominates (lower cost and higher value are better),
    ordered by increasing cost. Exact duplicates are all kept."""
    if len(costs) != len(values):
        raise ValueError(f"costs and values must have the same length, but got {len(costs)} and {len(values)}")
    # sweep by cost (ties: best value first); a point is on the front if it beats every cheaper value
    order = sorted(range(len(costs)), key=lambda i: (costs[i], -values[i]))
    front: list[int] = []
    best = -math.inf
    for i in order:
        if values[i] > best:
            front.append(i)
            best = values[i]
        elif front and values[i] == values[front[-1]] and costs[i] == costs[front[-1]]:
            front.append(i)  # an identical point is not dominated either
    return front


def dominates(cost_a: float, value_a: float, cost_b: float, value_b: float) -> bool:
    """Whether a is at least as good as b on both axes and strictly better on one."""
    return cost_a <= cost_b and value_a >= value_b and (cost_a < cost_b or value_a > value_b)


def choice_frequencies(
    archs: Sequence[Arch], fields: Sequence[str] = CHOICE_FIELDS
) -> list[dict[str, dict[Any, float]]]:
    """Per stage, per field: the share of `archs` that chose each value (shares sum to 1).

    Stages are matched by position; an architecture with fewer stages just does not count
    toward the stages it lacks.
    """
    stages = max((len(a.stages) for a in archs), default=0)
    out: list[dict[str, dict[Any, float]]] = []
    for index in range(stages):
        chosen = [a.stages[index] for a in archs if index < len(a.stages)]
        per_field = {}
        for name in fields:
            counts = Counter(getattr(stage, name) for stage in chosen)
            per_field[name] = {value: n / len(chosen) for value, n in sorted(counts.items())}
        out.append(per_field)
    return out


def stage_share(archs: Sequence[Arch], stages: Sequence[int], predicate: Callable[[Stage], bool]) -> float:
    """Share of (architecture, stage) pairs over the given stage indices where `predicate` holds."""
    picks = [a.stages[i] for a in archs for i in stages if i < len(a.stages)]
    if not picks:
        return math.nan
    return sum(bool(predicate(s)) for s in picks) / len(picks)


def stage_mean(archs: Sequence[Arch], stages: Sequence[int], field: str) -> float:
    """Mean of a numeric stage field over the given stage indices of all `archs`."""
    picks = [float(getattr(a.stages[i], field)) for a in archs for i in stages if i < len(a.stages)]
    return statistics.fmean(picks) if picks else math.nan


def majority(shares: dict[Any, float]) -> tuple[Any, float]:
    """The most frequent choice and its share (ties: the first in sorted order)."""
    if not shares:
        return None, math.nan
    value = max(sorted(shares, key=str), key=lambda v: shares[v])
    return value, shares[value]


def running_best(values: Sequence[float | None]) -> list[float | None]:
    """Best value so far after each position (None until the first value)."""
    out: list[float | None] = []
    best: float | None = None
    for value in values:
        if value is not None and math.isfinite(value) and (best is None or value > best):
            best = value
        out.append(best)
    return out


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value; NaN, NaN for none, or where a value is
    NaN: a figure that was not measured, such as the step time of a MACs search)."""
    if not values or any(math.isnan(v) for v in values):
        return math.nan, math.nan
    mean = statistics.fmean(values)
    return mean, statistics.stdev(values) if len(values) > 1 else 0.0
