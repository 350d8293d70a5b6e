"""PNG plots of the reports (matplotlib's object API with the Agg canvas: no display needed).

Each function takes plain numbers and a path, draws one figure and writes it; an empty input
still writes a figure that says so, so a report's image links never break.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas.report.stats import pareto_front

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 110


def _figure(**kwargs: Any) -> Figure:
    # matplotlib is imported by the first plot, not with this module: only reports draw, and
    # a search on a bare GPU box must run without it
    from matplotlib.figure import Figure

    return Figure(**kwargs)


@dataclass(frozen=True)
class Point:
    """One architecture in a scatter: cost (x), accuracy (y), optional spreads and a label."""

    x: float
    y: float
    x_err: float = 0.0
    y_err: float = 0.0
    label: str = ""


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    return path


def _empty(ax: Any, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def scatter_front(
    path: Path, points: Sequence[Point], *, xlabel: str, title: str, reference: Point | None = None,
    best: Point | None = None, highlights: Sequence[Point] = (), log_x: bool = False,
) -> Path:
    """Accuracy against a cost for every point, the Pareto front (lower cost, higher accuracy)
    as a step line, the reference as a red star, the best as a green diamond and `highlights`
    (e.g. retrained architectures) with their error bars."""
    fig = _figure(figsize=(6.4, 4.6))
    ax = fig.add_subplot()
    every = [*points, *([reference] if reference else []), *([best] if best else []), *highlights]
    if not every:
        _empty(ax, "no finished trials yet")
        ax.set_title(title)
        return _save(fig, path)
    if points:
        ax.scatter([p.x for p in points], [p.y for p in points], s=16, color="tab:blue", alpha=0.55,
                   label=f"trials ({len(points)})", zorder=2)
    front = [every[i] for i in pareto_front([p.x for p in every], [p.y for p in every])]
    if front:
        ax.step([p.x for p in front], [p.y for p in front], where="post", color="tab:orange", lw=1.5,
                label=f"Pareto front ({len(front)})", zorder=3)
    for p in highlights:
        ax.errorbar(p.x, p.y, xerr=p.x_err or None, yerr=p.y_err or None, fmt="o", color="tab:purple",
                    ms=6, capsize=3, zorder=4)
        if p.label:
            ax.annotate(p.label, (p.x, p.y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    if best is not None:
        ax.errorbar(best.x, best.y, xerr=best.x_err or None, yerr=best.y_err or None, fmt="D", color="tab:green",
                    ms=8, capsize=3, label=best.label or "best", zorder=5)
    if reference is not None:
        ax.errorbar(reference.x, reference.y, xerr=reference.x_err or None, yerr=reference.y_err or None,
                    fmt="*", color="tab:red", ms=13, capsize=3, label=reference.label or "reference", zorder=6)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def rank_scatter(path: Path, points: Sequence[Point], *, xlabel: str, ylabel: str, title: str) -> Path:
    """One measure against another (e.g. proxy vs retrained accuracy): does one order predict the other?
    No diagonal: the two are measured after different training, only their order matters."""
    fig = _figure(figsize=(5.4, 4.6))
    ax = fig.add_subplot()
    if not points:
        _empty(ax, "nothing retrained yet")
        ax.set_title(title)
        return _save(fig, path)
    ax.scatter([p.x for p in points], [p.y for p in points], s=28, color="tab:purple", zorder=3)
    for p in points:
        if p.label:
            ax.annotate(p.label, (p.x, p.y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    return _save(fig, path)


def progress(
    path: Path, curves: dict[str, tuple[Sequence[int], Sequence[float | None]]], *, title: str,
    scatter: tuple[Sequence[int], Sequence[float]] | None = None, reference: float | None = None,
    ylabel: str = "best reward so far", xlabel: str = "trial number",
) -> Path:
    """Best-so-far curves against trial number (one per search), each trial's own value as
    faint dots, the reference's value as a dashed line."""
    fig = _figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    drawn = False
    if scatter is not None and scatter[0]:
        ax.scatter(scatter[0], scatter[1], s=10, color="0.6", alpha=0.6, label="each trial", zorder=1)
        drawn = True
    for (name, (xs, ys)), color in zip(curves.items(), ("tab:blue", "tab:orange", "tab:green", "tab:purple"),
                                       strict=False):
        pairs = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
        if pairs:
            ax.step([x for x, _ in pairs], [y for _, y in pairs], where="post", lw=1.8, color=color, label=name,
                    zorder=3)
            drawn = True
    if not drawn:
        _empty(ax, "no finished trials yet")
        ax.set_title(title)
        return _save(fig, path)
    if reference is not None and math.isfinite(reference):
        ax.axhline(reference, color="tab:red", ls="--", lw=1, label="reference")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def choice_heatmap(
    path: Path, frequencies: list[dict[str, dict[Any, float]]], choices: dict[str, list[Any]], *,
    title: str, marked: list[dict[str, Any]] | None = None, labels: dict[str, str] | None = None,
) -> Path:
    """One panel per field: stages (rows) by choices (columns), coloured by how often the
    choice was taken; `marked[stage][field]` (the reference's choice) gets a red frame."""
    fields = list(choices)
    fig = _figure(figsize=(2.2 * max(1, len(fields)) + 1.2, 0.45 * max(1, len(frequencies)) + 1.6))
    if not frequencies:
        _empty(fig.add_subplot(), "no finished trials yet")
        fig.suptitle(title, fontsize=10)
        return _save(fig, path)
    axes = fig.subplots(1, len(fields), squeeze=False)[0]
    image = None
    for index, (ax, name) in enumerate(zip(axes, fields, strict=True)):
        columns = choices[name]
        grid = [[row.get(name, {}).get(value, 0.0) for value in columns] for row in frequencies]
        image = ax.imshow(grid, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
        for r, row in enumerate(grid):
            for c, share in enumerate(row):
                ax.text(c, r, f"{share:.0%}", ha="center", va="center", fontsize=7,
                        color="white" if share > 0.6 else "black")
        if marked:
            for r, stage in enumerate(marked[: len(grid)]):
                if stage.get(name) in columns:
                    from matplotlib.patches import Rectangle

                    c = columns.index(stage[name])
                    ax.add_patch(Rectangle((c - 0.42, r - 0.42), 0.84, 0.84, fill=False, ec="tab:red", lw=2.5))
        ax.set_xticks(range(len(columns)), [_tick(v) for v in columns], fontsize=8)
        # stage names once, on the left: the panels sit close together
        ax.set_yticks(range(len(grid)), [f"stage {i + 1}" if index == 0 else "" for i in range(len(grid))],
                      fontsize=8)
        ax.set_title((labels or {}).get(name, name), fontsize=9)
    if image is not None:
        fig.colorbar(image, ax=list(axes), shrink=0.8, label="share of top trials")
    fig.suptitle(title, fontsize=10, y=1.0)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")  # colorbar + tight_layout do not mix
    return path


def _tick(value: Any) -> str:
    if value == "fused_mbconv":
        return "Fused"
    if value == "mbconv":
        return "MBConv"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
