"""Pure statistics the reports are made of: rank correlation, Pareto fronts, choice frequencies.

No I/O and no plotting here, so each function can be checked on hand-made inputs.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from nas.arch import Arch, Stage

# The per-stage choices the papers discuss (and the report's heatmap shows).
CHOICE_FIELDS = ("op", "kernel", "expansion", "se")


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (ties in either ranking are accounted for, as scipy's default does).

    Returns NaN when fewer than two points or when one ranking is all ties.
    """
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, but got {len(x)} and {len(y)}")
    concordant = discordant = ties_x = ties_y = 0
    n = len(x)
    for i in range(n):
        for j in range(i + 1, n):
            dx = _sign(x[i] - x[j])
            dy = _sign(y[i] - y[j])
            if dx == 0 and dy == 0:
                continue  # tied in both: counts in neither denominator term
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif dx == dy:
                concordant += 1
            else:
                discordant += 1
    denominator = math.sqrt((concordant + discordant + ties_x) * (concordant + discordant + ties_y))
    return (concordant - discordant) / denominator if denominator > 0 else math.nan


def _sign(value: float) -> int:
    return (value > 0) - (value < 0)


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
    """Mean and sample standard deviation (0 for one value; NaN, NaN for none)."""
    if not values:
        return math.nan, math.nan
    mean = statistics.fmean(values)
    return mean, statistics.stdev(values) if len(values) > 1 else 0.0
