"""Growing one architecture into a family: compound (EfficientNet) and non-uniform (V2) scaling.

Compound scaling multiplies depth by α^φ, width by β^φ and resolution by γ^φ, with
α·β²·γ² ≈ 2 so each step of φ roughly doubles the multiply-adds. Width and depth stay
multipliers on the `Arch` (the builder rounds channels to multiples of 8 with the 10% rule and
layers up per stage), which is exactly how the published B1..B7 derive from B0.

Non-uniform scaling grows a searched "S" network into M and L the way EfficientNetV2 did: the
image size is capped, added layers go mostly to the later stages, a seventh stage is appended,
and each member carries its training recipe (`nas.training.progressive.TrainingRecipe`).

Step 1 of compound scaling, the small grid search over (α, β, γ), is `search_coefficients`.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import yaml

from nas.records.runs import RunDir, atomic_write
from nas.spec.arch import Arch, round_channels, round_layers
from nas.spec.errors import ConfigError, TrialError, describe
from nas.spec.paths import is_file, user_path
from nas.training.progressive import ProgressiveSchedule, TrainingRecipe

# -- compound (EfficientNet) --------------------------------------------------------------------


@dataclass(frozen=True)
class Coefficients:
    """Compound-scaling coefficients: depth α, width β, resolution γ (per unit of φ)."""

    alpha: float
    beta: float
    gamma: float

    @property
    def flops_factor(self) -> float:
        """Multiply-add growth per unit of φ: α·β²·γ² (2 by the paper's constraint)."""
        return self.alpha * self.beta**2 * self.gamma**2

    def satisfies(self, tolerance: float = 0.05) -> bool:
        return abs(self.flops_factor - 2.0) <= 2.0 * tolerance

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


# The paper's grid-search result on B0 (Tan & Le, 2019, section 4).
PAPER_COEFFICIENTS = Coefficients(alpha=1.2, beta=1.1, gamma=1.15)


@dataclass(frozen=True)
class Member:
    """One published (width, depth, resolution, dropout) setting relative to B0 at 224 px."""

    width: float
    depth: float
    resolution: int
    dropout: float


# The published B1..B7: rounded by hand from the compound formula (ARCHITECTURE.md section 8).
EFFICIENTNET_PRESETS: dict[str, Member] = {
    "b1": Member(1.0, 1.1, 240, 0.2),
    "b2": Member(1.1, 1.2, 260, 0.3),
    "b3": Member(1.2, 1.4, 300, 0.3),
    "b4": Member(1.4, 1.8, 380, 0.4),
    "b5": Member(1.6, 2.2, 456, 0.4),
    "b6": Member(1.8, 2.6, 528, 0.5),
    "b7": Member(2.0, 3.1, 600, 0.5),
}
PRESET_BASE_RESOLUTION = 224  # B0's, which the preset resolutions are relative to


def round_resolution(pixels: float, multiple: int = 4) -> int:
    """Nearest multiple of `multiple` (the published sizes are multiples of 4), at least one multiple."""
    return max(multiple, int(round(pixels / multiple)) * multiple)


def family_base_name(arch: Arch, fallback: str = "arch") -> str:
    """`efficientnet-b0` -> `efficientnet`, `exp1-best` -> `exp1`: the stem member names grow from."""
    name = arch.name or fallback
    for suffix in ("-b0", "-best", "-s"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def scale(
    arch: Arch,
    *,
    width: float = 1.0,
    depth: float = 1.0,
    resolution: int | None = None,
    dropout: float | None = None,
    name: str | None = None,
) -> Arch:
    """Explicit multipliers on top of the source's own; `resolution` is a pixel size."""
    for label, value in (("width", width), ("depth", depth)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ConfigError(f"{label} multiplier must be a number > 0, but got {describe(value)}")
    if resolution is not None and (isinstance(resolution, bool) or not isinstance(resolution, int)
                                   or resolution < 8):
        raise ConfigError(f"resolution must be an integer >= 8 (pixels), but got {describe(resolution)}")
    if dropout is not None and not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), but got {describe(dropout)}")
    return arch.with_(
        width=_tidy(arch.width * width),
        depth=_tidy(arch.depth * depth),
        resolution=arch.resolution if resolution is None else resolution,
        dropout=arch.dropout if dropout is None else dropout,
        name=name,
    )


def compound_dropout(base: float, phi: float) -> float:
    """Dropout of member φ: +0.1 every two steps of φ, as B0..B7 go 0.2 -> 0.5, capped at 0.5."""
    grown = base + 0.1 * max(0, math.ceil((phi - 1) / 2))
    return round(min(grown, max(base, 0.5)), 4)


def compound(arch: Arch, phi: float, coefficients: Coefficients = PAPER_COEFFICIENTS,
             name: str | None = None) -> Arch:
    """Member φ of the compound family: depth α^φ, width β^φ, resolution γ^φ times the source's."""
    if not (isinstance(phi, (int, float)) and math.isfinite(phi) and phi > 0):
        raise ConfigError(f"phi must be a number > 0, but got {describe(phi)}")
    c = coefficients
    return scale(
        arch,
        width=c.beta**phi,
        depth=c.alpha**phi,
        resolution=round_resolution(arch.resolution * c.gamma**phi),
        dropout=compound_dropout(arch.dropout, phi),
        name=name or f"{family_base_name(arch)}-b{phi:g}",
    )


def preset(arch: Arch, key: str) -> Arch:
    """A published B1..B7 setting applied to `arch` (exactly EfficientNet-Bn when `arch` is B0)."""
    key = key.lower().removeprefix("efficientnet-")
    if key not in EFFICIENTNET_PRESETS:
        raise ConfigError(f"--preset must be one of {sorted(EFFICIENTNET_PRESETS)}, but got {describe(key)}")
    m = EFFICIENTNET_PRESETS[key]
    # the published sizes are for a 224 px source; other sources keep the same ratio
    resolution = m.resolution if arch.resolution == PRESET_BASE_RESOLUTION else round_resolution(
        arch.resolution * m.resolution / PRESET_BASE_RESOLUTION)
    return scale(arch, width=m.width, depth=m.depth, resolution=resolution, dropout=m.dropout,
                 name=f"{family_base_name(arch)}-{key}")


def parse_phis(text: str) -> list[float]:
    """`1-7`, `1,3,5` or `2` (numbers > 0) -> the φ values in order."""
    text = text.strip()
    try:
        if "-" in text and "," not in text:
            low, high = (int(part) for part in text.split("-"))
            if low < 1 or high < low:
                raise ValueError
            return [float(p) for p in range(low, high + 1)]
        values = [float(part) for part in text.split(",")]
        if not values or any(not math.isfinite(v) or v <= 0 for v in values):
            raise ValueError
        return values
    except ValueError:
        raise ConfigError(
            f"--phi must be a range like 1-7 or a comma list of numbers > 0, but got {describe(text)}"
        ) from None


def parse_coefficients(text: str) -> Coefficients:
    """`1.2,1.1,1.15` or a coefficients.yaml written by the grid search."""
    path = user_path(text)
    if path is not None and is_file(path):
        try:
            data = yaml.safe_load(path.read_text()) or {}
            return Coefficients(*(float(data[k]) for k in ("alpha", "beta", "gamma")))
        except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError):
            raise ConfigError(f"{path} must hold numbers alpha, beta and gamma, but it does not") from None
    try:
        alpha, beta, gamma = (float(x) for x in text.split(","))
    except ValueError:
        raise ConfigError(
            f"--coefficients must be ALPHA,BETA,GAMMA or a coefficients.yaml file, but got {describe(text)}"
        ) from None
    if min(alpha, beta, gamma) < 1.0:
        raise ConfigError(f"--coefficients must all be >= 1, but got {describe(text)}")
    return Coefficients(alpha, beta, gamma)


# -- coefficient grid search (the paper's step 1) ------------------------------------------------


def coefficient_grid(step: float = 0.05, high: float = 1.5, tolerance: float = 0.05) -> list[Coefficients]:
    """Every (α, β, γ) on a grid over [1, high] with α·β²·γ² within `tolerance` of 2."""
    if not 0 < step <= high - 1.0:
        raise ConfigError(f"grid step must be in (0, {high - 1.0:g}], but got {describe(step)}")
    ticks = [round(1.0 + step * i, 6) for i in range(int(round((high - 1.0) / step)) + 1)]
    return [c for c in (Coefficients(*t) for t in itertools.product(ticks, repeat=3)) if c.satisfies(tolerance)]


def pick_candidates(grid: Sequence[Coefficients], budget: int,
                    first: Coefficients = PAPER_COEFFICIENTS) -> list[Coefficients]:
    """`budget` points spread over the grid: the paper's point first, then farthest-point picks."""
    if budget < 1:
        raise ConfigError(f"--budget must be a positive integer, but got {describe(budget)}")
    pool = list(grid)
    chosen = [first] if first in pool else [pool[0]]
    pool.remove(chosen[0])
    # nearest chosen point's distance, per pool point, updated as points are chosen
    gaps = {c: _distance(c, chosen[0]) for c in pool}
    while pool and len(chosen) < budget:
        best = max(pool, key=gaps.__getitem__)  # max keeps the first of equal gaps: deterministic
        chosen.append(best)
        pool.remove(best)
        for c in pool:
            gaps[c] = min(gaps[c], _distance(c, best))
    return chosen


def _distance(a: Coefficients, b: Coefficients) -> float:
    return math.dist((a.alpha, a.beta, a.gamma), (b.alpha, b.beta, b.gamma))


@dataclass
class CoefficientSearch:
    """Where and how candidates are trained: the proxy settings of a search space."""

    source: Arch
    settings: Any  # nas.spec.settings.SearchSettings (imported lazily: it pulls in the search stack)
    budget: int = 12
    tolerance: float = 0.05
    step: float = 0.05


def search_coefficients(
    job: CoefficientSearch, run: RunDir, log: Callable[[str], None] | None = None
) -> tuple[Coefficients, list[dict[str, Any]]]:
    """Train each candidate (the source scaled at φ = 1) with the proxy trainer; the most accurate wins.

    Every candidate has about twice the source's multiply-adds, so accuracy alone ranks them (as in
    the paper). The folder is laid out like a search run (config.yaml, trials/, results.csv,
    best.yaml) plus coefficients.yaml with the winner; `nas show` reads it.
    """
    from nas.measure.device import resolve_device
    from nas.measure.hardware import fingerprint
    from nas.measure.step_table import current_table
    from nas.search.failure import COMPLETE, INTERRUPTED
    from nas.search.lifecycle import attempt
    from nas.training.data import search_data

    log = log or logging.getLogger(__name__).info
    settings = job.settings
    candidates = pick_candidates(coefficient_grid(job.step, tolerance=job.tolerance), job.budget)
    device = resolve_device(settings.device)
    cache = current_table(fingerprint(device)).cache()  # this machine's table
    rows: list[dict[str, Any]] = []
    for number, c in enumerate(candidates):
        arch = scale(job.source, width=c.beta, depth=c.alpha,
                     resolution=round_resolution(job.source.resolution * c.gamma),
                     name=f"{family_base_name(job.source)}-a{c.alpha:g}-b{c.beta:g}-g{c.gamma:g}")
        # the proxy shrinks every candidate to one size; grow that size by γ as well
        proxy_resolution = round_resolution(settings.proxy.resolution * c.gamma, multiple=1)
        trial_settings = settings.with_overrides(resolution=proxy_resolution)
        data = search_data(trial_settings)
        # the same trial as a search's: measured, trained and classified by nas.search.failure
        outcome = attempt(arch, trial_settings, data, device, cache)
        if outcome.state == INTERRUPTED:
            raise outcome.error if outcome.error is not None else KeyboardInterrupt
        row: dict[str, Any] = {"number": number, **outcome.attrs, "arch": arch.to_string(), **c.to_dict(),
                               "flops_factor": round(c.flops_factor, 4), "proxy_resolution": proxy_resolution,
                               "state": outcome.state if outcome.state != "PRUNED" else COMPLETE}
        if row["state"] == COMPLETE:
            row["reward"] = row["accuracy"]  # every candidate has ~2x the MACs: accuracy ranks them
            log(f"candidate {number}: alpha={c.alpha:g} beta={c.beta:g} gamma={c.gamma:g} "
                f"(product {c.flops_factor:.3f}) accuracy {row['accuracy']:.4f}, {row['params']:,} params")
        else:
            log(f"candidate {number}: alpha={c.alpha:g} beta={c.beta:g} gamma={c.gamma:g} failed: {row['reason']}")
        run.write_trial(number, arch, dict(row, history=outcome.history))
        rows.append(row)
        run.write_results(rows)  # after every candidate, so an interrupted search keeps its rows
    done = [r for r in rows if r["state"] == "COMPLETE"]
    if not done:
        raise TrialError(f"all {len(rows)} coefficient candidates failed; see {run.path}/trials/")
    best = max(done, key=lambda r: (r["accuracy"], -r["step_ms"]))
    winner = Coefficients(best["alpha"], best["beta"], best["gamma"])
    summary = {**winner.to_dict(), "flops_factor": round(winner.flops_factor, 4), "accuracy": best["accuracy"],
               "trial": best["number"], "tolerance": job.tolerance, "source": job.source.to_string()}
    atomic_write(run.path / "coefficients.yaml",
                 "# best (alpha, beta, gamma) of the grid search at phi = 1; use with "
                 "nas scale SOURCE --coefficients THIS_FILE\n" + yaml.safe_dump(summary, sort_keys=False))
    return winner, rows


# -- non-uniform (EfficientNetV2) -----------------------------------------------------------------

V2_RESOLUTION_BASE = 384  # V2-S's eval size: the recipes below are in pixels relative to it
V2_MAX_RESOLUTION = 480  # the paper's cap on the largest (eval) image size


@dataclass(frozen=True)
class V2Size:
    """How one V2 family member grows from the searched (S) network."""

    width: float
    depth: float  # mean extra-depth factor; later stages get more (see `stage_depths`)
    extra_stage: bool
    recipe: TrainingRecipe


# Per-size recipes of the paper (train/eval size, dropout, RandAugment, mixup) and its progressive
# settings (Table 6: 128 px at the start, RandAugment 5, mixup 0, dropout 0.1). Width/depth are this
# tool's, chosen so that V2-S grows to about the published sizes: M 53.1M params / 25.1G MACs at
# 480 px (published 54.1M / 24.6G), L 118.5M / 50.9G (published 118.5M / 56.1G).
V2_SIZES: dict[str, V2Size] = {
    "s": V2Size(1.0, 1.0, False, TrainingRecipe(
        size="s", train_resolution=300, eval_resolution=384, dropout=0.2, randaugment=10, mixup=0.0,
        progressive=ProgressiveSchedule(resolution=(128, 300), randaugment=(5, 15), mixup=(0.0, 0.0),
                                        dropout=(0.1, 0.3)))),
    "m": V2Size(1.1, 1.25, True, TrainingRecipe(
        size="m", train_resolution=384, eval_resolution=480, dropout=0.3, randaugment=15, mixup=0.2,
        progressive=ProgressiveSchedule(resolution=(128, 380), randaugment=(5, 20), mixup=(0.0, 0.2),
                                        dropout=(0.1, 0.4)))),
    "l": V2Size(1.35, 1.7, True, TrainingRecipe(
        size="l", train_resolution=384, eval_resolution=480, dropout=0.4, randaugment=20, mixup=0.5,
        progressive=ProgressiveSchedule(resolution=(128, 380), randaugment=(5, 25), mixup=(0.0, 0.4),
                                        dropout=(0.1, 0.5)))),
}


def parse_sizes(text: str) -> list[str]:
    sizes = [s.strip().lower() for s in text.split(",") if s.strip()]
    bad = [s for s in sizes if s not in V2_SIZES]
    if not sizes or bad or len(set(sizes)) != len(sizes):
        raise ConfigError(f"--sizes must be a comma list of distinct {sorted(V2_SIZES)}, but got {describe(text)}")
    return sizes


def stage_depths(layers: Sequence[int], depth: float) -> list[int]:
    """Layers per stage after growing by `depth` on average, later stages more.

    Stage i of n gets the factor 1 + (depth - 1)·(0.5 + i/(n - 1)): half the mean growth for the
    first stage, one and a half times it for the last (the V2 paper adds layers mostly to stages 5
    and 6). Rounded up like every depth multiplier.
    """
    n = len(layers)
    out = []
    for i, count in enumerate(layers):
        ramp = 0.5 + (i / (n - 1) if n > 1 else 0.5)
        out.append(round_layers(count, 1.0 + (depth - 1.0) * ramp))
    return out


def v2_member(source: Arch, size: str, max_resolution: int | None = None,
              extra_stage: bool = True) -> tuple[Arch, TrainingRecipe]:
    """One V2 member and its recipe; resolutions scale with the source's size (384 px = V2-S's)."""
    spec = V2_SIZES[size]
    ratio = source.resolution / V2_RESOLUTION_BASE
    cap = max_resolution or round_resolution(V2_MAX_RESOLUTION * ratio, multiple=1)
    recipe = spec.recipe.rescaled(ratio, cap)
    if size == "s":
        arch = source.with_(resolution=recipe.eval_resolution, dropout=recipe.dropout,
                            name=f"{family_base_name(source)}-s")
        return arch, recipe
    # channels and layers are resolved here (width = depth = 1 on the member), so the YAML shows the
    # real sizes; the head keeps the source's width, as V2-M/L keep V2-S's 1280
    resolved = source.resolved_stages()
    depths = stage_depths([s.layers for s in resolved], spec.depth)
    stages = [replace(s, channels=round_channels(s.channels * spec.width), layers=n)
              for s, n in zip(resolved, depths, strict=True)]
    if spec.extra_stage and extra_stage:
        last = stages[-1]
        # V2-M/L's seventh stage: ~5/3 of the last stage's channels, ~0.3 of its layers, stride 1
        stages.append(replace(last, kernel=3, channels=round_channels(last.channels * 5 / 3),
                              layers=max(1, round(0.3 * last.layers)), stride=1))
    arch = Arch(
        stages=tuple(stages), stem_channels=round_channels(source.resolved_stem_channels * spec.width),
        stem_stride=source.stem_stride, head_channels=source.resolved_head_channels,
        resolution=recipe.eval_resolution, dropout=recipe.dropout, drop_path=source.drop_path,
        name=f"{family_base_name(source)}-{size}",
    )
    return arch, recipe


def _tidy(x: float) -> float:
    """Strip float noise from products of multipliers (1.1 * 1.2 = 1.3200000000000003)."""
    return round(float(x), 6)
