"""Numbers the report states: retraining summaries, verdicts against the reference, curves."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from nas.report.run_report import (
    COST_AXES,
    interrupted,
)
from nas.report.stats import (
    Difference,
    dominates,
    mean_std,
    running_best,
    welch_difference,
    welch_pvalue,
)
from nas.reproduce.retrain import Candidate
from nas.reproduce.significance import ACCURACY_MARGIN, ALPHA, MIN_POINTS
from nas.spec.arch import Arch
from nas.spec.objective import Objective
from nas.spec.space import SearchSpace


# -- analysis --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Retrained:
    """One architecture's retrainings summarised over its seeds."""

    role: str
    trial: int | None
    arch: str
    proxy_accuracy: float | None
    proxy_reward: float | None
    accuracy: tuple[float, float]
    step_ms: tuple[float, float]
    reward: tuple[float, float]
    params: int | None
    macs: int | None
    seeds: int
    first_seed_accuracy: float | None
    failed: int
    split: str = "val"  # where `accuracy` was measured: the held-out "test" split, or "val"


def summarise_retrain(rows: Sequence[dict[str, Any]], candidates: Sequence[Candidate], objective: Objective | None,
                      reference_arch: str | None, epochs: int | None = None) -> list[Retrained]:
    """Mean ± std per candidate; rewards use the reference's re-measured step time as normaliser."""
    def mine(arch: str) -> list[dict[str, Any]]:
        return [r for r in rows if r["arch"] == arch and (epochs is None or r["epochs"] == epochs)]

    scale = objective
    ref_rows = [r for r in mine(reference_arch or "") if r["state"] == "COMPLETE"]
    if objective is not None and ref_rows:
        # re-measured figures; where they were measured (hardware, shape) stays the search's
        scale = Objective(objective.spec, replace(
            objective.reference, step_ms=mean_std([r["step_ms"] for r in ref_rows])[0],
            params=ref_rows[0]["params"], macs=ref_rows[0]["macs"]))
    out = []
    for cand in candidates:
        all_rows = mine(cand.arch)
        good = [r for r in all_rows if r["state"] == "COMPLETE"]
        if not good:
            continue
        rewards = [scale.reward(r["accuracy"], r["step_ms"], r["params"], r["macs"]) for r in good] if scale else []
        first = min(good, key=lambda r: r["seed"])
        out.append(Retrained(
            role=cand.role, trial=cand.trial, arch=cand.arch, proxy_accuracy=cand.proxy_accuracy,
            proxy_reward=cand.proxy_reward, accuracy=mean_std([r["accuracy"] for r in good]),
            step_ms=mean_std([r["step_ms"] for r in good]), reward=mean_std(rewards), params=good[0]["params"],
            macs=good[0]["macs"], seeds=len(good), first_seed_accuracy=first["accuracy"],
            failed=len(all_rows) - len(good), split=good[0].get("split") or "val",
        ))
    return out


REWARD_WORDS = {"beats": "better reward",
                "is not distinguishable from": f"reward not distinguishable (Welch p ≥ {ALPHA})",
                "loses to": "worse reward", "is untested against": f"fewer than {MIN_POINTS} seeds: a direction only"}


def cost_of(r: Retrained, cost: str) -> tuple[float, float]:
    """Mean and std of a retrained architecture's cost (MACs do not vary between seeds)."""
    return r.step_ms if cost == "step_ms" else (float(r.macs or 0), 0.0)


def reward_pvalue(found: Retrained, ref: Retrained) -> float:
    """Welch's p-value that the two mean rewards over seeds differ (NaN with one seed)."""
    return welch_pvalue(found.reward, found.seeds, ref.reward, ref.seeds)


def compare(found: Retrained, ref: Retrained, cost: str = "step_ms") -> tuple[str, str]:
    """Verdicts on reward (a difference only where Welch's t-test over at least `MIN_POINTS`
    seeds a side finds one at `ALPHA`) and on the accuracy / cost front."""
    p = reward_pvalue(found, ref)
    few_seeds = min(found.seeds, ref.seeds) < MIN_POINTS
    if few_seeds:
        on_reward = "is untested against"
    elif p < ALPHA:
        on_reward = "beats" if found.reward[0] > ref.reward[0] else "loses to"
    else:  # NaN here: equal constant rewards; never "equal": that needs an equivalence test
        on_reward = "is not distinguishable from"
    noun = COST_AXES[cost].noun
    fa, fs, ra, rs = found.accuracy[0], cost_of(found, cost)[0], ref.accuracy[0], cost_of(ref, cost)[0]
    ratio = f"{fa - ra:+.4f} accuracy at {fs / rs:.2f}× the {noun}" if rs else f"{fa - ra:+.4f} accuracy"
    accuracy_differs = cost_differs = True  # with too few seeds the means speak, as a direction
    if few_seeds:
        ratio += f"; fewer than {MIN_POINTS} seeds: a direction only, no gap tested against the spread over seeds"
    else:
        accuracy_differs = welch_pvalue(found.accuracy, found.seeds, ref.accuracy, ref.seeds) < ALPHA
        if not accuracy_differs:
            ratio += f"; accuracy {equivalence_text(accuracy_difference(found, ref))}"
        # MACs are exact: no spread to test
        if cost == "step_ms":
            cost_differs = welch_pvalue(found.step_ms, found.seeds, ref.step_ms, ref.seeds) < ALPHA
            if not cost_differs:
                ratio += f"; the {noun} gap is within the spread over seeds: Welch p ≥ {ALPHA}"
        else:
            cost_differs = fs != rs
    if accuracy_differs and cost_differs:
        if dominates(fs, fa, rs, ra):
            front = f"dominates the reference ({ratio})"
        elif dominates(rs, ra, fs, fa):
            front = f"is dominated by the reference ({ratio})"
        elif fs < rs:
            front = f"trades accuracy for less {noun} ({ratio})"
        else:
            front = f"buys accuracy with more {noun} ({ratio})"
    elif cost_differs:  # "dominates" would read a gap no test showed into the accuracy
        front = f"costs {'less' if fs < rs else 'more'} {noun} at an accuracy not distinguishable from the " \
                f"reference's ({ratio})"
    elif accuracy_differs:
        front = f"is {'more' if fa > ra else 'less'} accurate at a {noun} not distinguishable from the " \
                f"reference's ({ratio})"
    else:
        front = f"is not distinguishable from the reference in accuracy or {noun} ({ratio})"
    return on_reward, front


def accuracy_difference(a: Retrained, b: Retrained) -> Difference:
    """Mean accuracy a - b over seeds, its Welch interval and TOST at ±`ACCURACY_MARGIN`."""
    return welch_difference(a.accuracy, a.seeds, b.accuracy, b.seeds, ACCURACY_MARGIN)


def equivalence_text(d: Difference) -> str:
    """"equivalent" only from the equivalence test; otherwise the interval, never "equal"."""
    points = f"±{d.margin * 100:g} points"
    if d.equivalent(ALPHA):
        return f"equivalent within {points} (TOST p = {d.equivalence_pvalue:.2g})"
    if math.isnan(d.low):
        return "not distinguishable (too few seeds for an interval)"
    return (f"not distinguishable (95% CI of the difference {d.low:+.4f} to {d.high:+.4f}; not shown equivalent "
            f"within {points}, TOST p = {d.equivalence_pvalue:.2g})")


def uniform_sample(space: SearchSpace, n: int = 2000, seed: int = 0) -> list[Arch]:
    """Architectures drawn uniformly from the space: the base rate every finding is judged against."""
    rng = random.Random(seed)

    class _Uniform:
        def suggest_categorical(self, name: str, choices: list[Any]) -> Any:
            return rng.choice(choices)

    return [space.sample(_Uniform()) for _ in range(n)]


def best_by_trial(rows: Sequence[dict[str, Any]], objective: Objective | None) -> tuple[list[int], list[float | None]]:
    """After how many finished trials each complete trial came, and the best reward so far
    (re-scored on `objective`'s scale when given). Interrupted trials were run again, so they
    do not count; pruned and failed ones do, as they do toward the budget."""
    counts, rewards = [], []
    finished = 0
    for r in sorted(rows, key=lambda r: r["number"]):
        if interrupted(r):
            continue
        finished += 1
        if r["state"] != "COMPLETE" or r.get("accuracy") is None:
            continue
        value = objective.reward(r["accuracy"], r["step_ms"], r["params"], r["macs"]) if objective else r["reward"]
        counts.append(finished)
        rewards.append(value)
    return counts, running_best(rewards)


def best_after(counts: Sequence[int], best: Sequence[float | None], n: int) -> float | None:
    """Best reward among the first n finished trials."""
    value = None
    for count, b in zip(counts, best, strict=True):
        if count <= n:
            value = b
    return value


