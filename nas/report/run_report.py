"""`report.md` and its plots for any run folder, built from the files alone.

Reads config.yaml, space.yaml, reference.json, results.csv and trials/*/metrics.json, so it
works whichever backend wrote the run and while (or after) a run was interrupted: a trial
still in flight simply has no row yet, and a run with no finished trial gets a report that
says so.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from nas.records.runs import RESULT_COLUMNS, RunDir, atomic_write, best_row
from nas.report import plots
from nas.report.stats import CHOICE_FIELDS, choice_frequencies, pareto_front, running_best
from nas.spec.arch import Arch, Stage
from nas.spec.errors import ConfigError, NASError
from nas.spec.objective import Objective, Reference
from nas.spec.settings import saved_space
from nas.spec.space import STAGE_FIELDS, SearchSpace

FIELD_LABELS = {"op": "operator", "kernel": "kernel", "expansion": "expansion", "se": "SE ratio"}
OP_NAMES = {"mbconv": "MBConv", "fused_mbconv": "Fused-MBConv"}
PLOTS = {
    "accuracy_vs_step_time": "accuracy_vs_step_time.png",  # COST_AXES["macs"].plot where no step was timed
    "accuracy_vs_params": "accuracy_vs_params.png",
    "progress": "progress.png",
    "choices": "choices.png",
}


# -- reading a run ---------------------------------------------------------------------------
@dataclass
class RunData:
    """Everything a report needs, read from one run folder."""

    run: RunDir
    config: dict[str, Any]
    rows: list[dict[str, Any]]
    reference: Arch | None
    space: SearchSpace | None = None
    normalisers: Reference | None = None
    histories: dict[int, list[dict[str, float]]] = field(default_factory=dict)

    @property
    def complete(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["state"] == "COMPLETE" and _num(r.get("reward"))]

    @property
    def best(self) -> dict[str, Any] | None:
        return best_row(self.complete)

    @property
    def reference_row(self) -> dict[str, Any] | None:
        """The first finished trial of the reference architecture (trial 0 in Optuna runs)."""
        if self.reference is None:
            return None
        text = self.reference.to_string()
        return next((r for r in self.complete if r["arch"] == text), None)

    def top(self, k: int) -> list[dict[str, Any]]:
        return sorted(self.complete, key=lambda r: -r["reward"])[:k]

    def finished(self) -> int:
        """Trials that count toward the budget (interrupted ones are re-run, so they don't)."""
        return sum(not interrupted(r) for r in self.rows)

    def objective(self) -> Objective | None:
        """The run's objective, to re-score trials of another run on this run's scale."""
        spec = self.space.objective if self.space is not None else None
        if spec is None or self.normalisers is None:
            return None
        kind = self.config.get("objective", {}).get("kind", spec.kind)
        return Objective(replace(spec, kind=kind), self.normalisers)


def load_run(run: RunDir) -> RunData:
    config = run.config()
    rows = {r["number"]: r for r in run.read_results() if r.get("number") is not None}
    histories: dict[int, list[dict[str, float]]] = {}
    for metrics_path in sorted((run.path / "trials").glob("*/metrics.json")):
        try:
            metrics = json.loads(metrics_path.read_text())
            number = int(metrics["number"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a half-written or foreign file: results.csv is the authority anyway
        histories[number] = metrics.get("history") or []
        # a trial whose metrics were written but whose row was not (killed in between)
        rows.setdefault(number, _row_from_metrics(metrics))
    reference = None
    if config.get("reference"):
        try:
            reference = Arch.from_string(str(config["reference"]))
        except ConfigError:
            reference = None
    return RunData(
        run=run, config=config, rows=[rows[n] for n in sorted(rows)], reference=reference,
        space=_load_space(run), normalisers=_load_normalisers(run), histories=histories,
    )


def _row_from_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    row = {key: metrics.get(key) for key in RESULT_COLUMNS}
    row["reason"] = row.get("reason") or ""
    row["arch"] = row.get("arch") or ""
    return row


def _load_space(run: RunDir) -> SearchSpace | None:
    try:
        return saved_space(run)[1]
    except NASError:
        return None  # e.g. a space whose reference file was relative to its old folder


def _load_normalisers(run: RunDir) -> Reference | None:
    try:
        return Reference.from_dict(json.loads(run.reference_path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def interrupted(row: dict[str, Any]) -> bool:
    return row["state"] == "FAIL" and str(row.get("reason") or "").startswith("interrupted")


def _num(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def top_k_size(complete: int) -> int:
    """How many top trials the choice frequencies use: the best fifth, at least 5 (or all)."""
    return min(complete, max(5, math.ceil(0.2 * complete)))


# -- markdown pieces -------------------------------------------------------------------------
def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub pipe table; `|` inside a cell is escaped."""
    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def fmt_count(value: Any) -> str:
    """12,345 -> 12.3k; 8.4e9 -> 8.40G (params and MACs in tables)."""
    if not _num(value):
        return "–"
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.3g}{suffix}" if value / limit < 100 else f"{value / limit:.0f}{suffix}"
    return str(int(value))


def operator_name(stage: Stage) -> str:
    return OP_NAMES.get(stage.op, stage.op)


def arch_table(arch: Arch, proxy_arch: Arch | None = None) -> str:
    """The architecture as the papers print it: one row per stage plus stem and head.

    Channels and layers are the full-size values; with `proxy_arch`, the shrunk values the
    proxy trained are added in two more columns.
    """
    headers = ["stage", "operator", "kernel", "stride", "expansion", "SE", "channels", "layers"]
    if proxy_arch is not None:
        headers += ["proxy channels", "proxy layers"]
    full = arch.resolved_stages()
    small = proxy_arch.resolved_stages() if proxy_arch is not None else None
    rows: list[list[Any]] = [["0", "Conv", "3×3", arch.stem_stride, "", "", arch.resolved_stem_channels, 1]]
    if small is not None:
        rows[0] += [proxy_arch.resolved_stem_channels, 1]
    for i, stage in enumerate(full):
        row: list[Any] = [
            i + 1, operator_name(stage) + ("" if stage.skip else " (no skip)"), f"{stage.kernel}×{stage.kernel}",
            stage.stride, f"{stage.expansion:g}", f"{stage.se:g}" if stage.se else "–", stage.channels, stage.layers,
        ]
        if small is not None:
            row += [small[i].channels, small[i].layers]
        rows.append(row)
    head = [len(full) + 1, "Conv1×1 & Pooling & FC", "1×1", 1, "", "", arch.resolved_head_channels, 1]
    if proxy_arch is not None:
        head += [proxy_arch.resolved_head_channels, 1]
    rows.append(head)
    return md_table(headers, rows)


# Counts a network's params and MACs at full size (`nas.measure.costs.paper_setting_counts`).
# Passed in by the caller: counting builds the network, and reports import no torch.
CountNetwork = Callable[[Arch], tuple[int, int]]


def full_size_counts(arch: Arch, count: CountNetwork) -> tuple[int, int] | None:
    """Params and MACs of the full-size network by `count`, None if it cannot be counted."""
    try:
        return count(arch)
    except Exception:  # counting is a courtesy; a report must not fail on it
        return None


# -- plots -----------------------------------------------------------------------------------
def stage_choices(space: SearchSpace | None, archs: Sequence[Arch]) -> dict[str, list[Any]]:
    """Heatmap columns per field: the space's choices (union over stages), else those seen."""
    out: dict[str, list[Any]] = {}
    for name in CHOICE_FIELDS:
        seen: set[Any] = set()
        if space is not None:
            for st in space.stages:
                seen.update(st.choices(name))
        for arch in archs:
            seen.update(getattr(s, name) for s in arch.stages)
        out[name] = sorted(seen, key=lambda v: (str(type(v)), v))
    return out


def stage_dicts(arch: Arch | None) -> list[dict[str, Any]] | None:
    return None if arch is None else [{name: getattr(s, name) for name in STAGE_FIELDS} for s in arch.stages]


@dataclass(frozen=True)
class CostAxis:
    """One cost accuracy is traded against, as every report names it."""

    key: str  # the result row's field
    noun: str
    column: str  # table header
    label: str  # plot axis
    plot: str  # a run's accuracy-vs-cost plot file


COST_AXES = {
    "step_ms": CostAxis("step_ms", "step time", "step ms", "training step of the full-size network (ms)",
                        PLOTS["accuracy_vs_step_time"]),
    "macs": CostAxis("macs", "MACs", "MACs", "multiply-adds of the full-size network", "accuracy_vs_macs.png"),
}


def cost_axis(data: RunData) -> CostAxis:
    """The cost a run's trials are plotted and fronted against: the step time, or MACs where the
    objective timed no step (a MACs search)."""
    objective = data.objective()
    return COST_AXES["macs" if objective is not None and not objective.spec.uses_step_time else "step_ms"]


def write_run_plots(data: RunData, folder: Path, k: int) -> dict[str, Path]:
    """The four plots of a run report, written into `folder`."""
    complete = data.complete
    cost = cost_axis(data)
    best, ref = data.best, data.reference_row
    title = f"run {data.run.name}: {len(complete)} complete trials"

    def point(row: dict[str, Any] | None, key: str, label: str) -> plots.Point | None:
        if row is None or not _num(row.get(key)):
            return None
        return plots.Point(float(row[key]), float(row["accuracy"]), label=label)

    others = [r for r in complete if r is not best and r is not ref]
    paths = {
        "accuracy_vs_step_time": plots.scatter_front(
            folder / cost.plot,
            [plots.Point(r[cost.key], r["accuracy"]) for r in others if _num(r.get(cost.key))],
            xlabel=cost.label, title=title, log_x=cost.key == "macs",
            reference=point(ref, cost.key, "reference"), best=point(best, cost.key, "best reward"),
        ),
        "accuracy_vs_params": plots.scatter_front(
            folder / PLOTS["accuracy_vs_params"],
            [plots.Point(r["params"], r["accuracy"]) for r in others if _num(r.get("params"))],
            xlabel="parameters at the proxy", title=title, log_x=True,
            reference=point(ref, "params", "reference"), best=point(best, "params", "best reward"),
        ),
    }
    numbers = [r["number"] for r in complete]
    rewards = [r["reward"] for r in complete]
    paths["progress"] = plots.progress(
        folder / PLOTS["progress"], {"best reward": (numbers, running_best(rewards))},
        title=f"search progress of {data.run.name}", scatter=(numbers, rewards),
        reference=ref["reward"] if ref else None,
    )
    top_archs = [Arch.from_string(r["arch"]) for r in data.top(k)]
    paths["choices"] = plots.choice_heatmap(
        folder / PLOTS["choices"], choice_frequencies(top_archs), stage_choices(data.space, top_archs),
        title=f"choices among the top {len(top_archs)} trials (red frame: reference)",
        marked=stage_dicts(data.reference), labels=FIELD_LABELS,
    )
    return paths


# -- the report ------------------------------------------------------------------------------
def write_report(run: RunDir, top_k: int | None = None, count_full: CountNetwork | None = None) -> Path:
    """Write run/report.md and its PNGs; returns the report's path."""
    data = load_run(run)
    k = top_k if top_k is not None else top_k_size(len(data.complete))
    write_run_plots(data, run.path, k)
    text = render(data, k, count_full)
    atomic_write(run.path / "report.md", text)
    return run.path / "report.md"


def render(data: RunData, k: int, count_full: CountNetwork | None = None) -> str:
    cfg = data.config
    counts: dict[str, int] = {}
    for r in data.rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    budget = cfg.get("budget")
    finished = data.finished()
    status = "finished" if budget is not None and finished >= int(budget) else "unfinished"
    out = [f"# Run `{data.run.name}`\n\n"]
    out.append(
        f"{cfg.get('space', '?')} space, dataset {cfg.get('dataset', '?')}, objective "
        f"{cfg.get('objective', {}).get('kind', '?')}, sampler {cfg.get('sampler', '?')}: "
        f"**{finished} of {budget} trials finished ({status})**; "
        + (", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())) or "no rows yet")
        + ".\n\n"
    )
    if cfg.get("command"):
        out.append(f"Made with `{cfg['command']}`.\n")
    if not data.complete:
        out.append("\n**No trials finished yet**: there is nothing to rank. The plots below are placeholders; "
                   "run `nas report` again once trials have finished.\n")
    out.append(_best_section(data, count_full))
    out.append(_top_section(data, k))
    out.append("\n## Accuracy against cost\n\n")
    out.append("Every complete trial at the proxy; the orange line is the Pareto front (faster or smaller "
               "and more accurate), the red star the reference architecture trained the same way, the green "
               "diamond the trial with the best reward.\n\n")
    cost = cost_axis(data)
    out.append(f"![accuracy vs {cost.noun}]({cost.plot})\n")
    out.append(f"![accuracy vs params]({PLOTS['accuracy_vs_params']})\n")
    out.append(_front_table(data))
    out.append("\n## Search progress\n\n")
    out.append(f"![best reward vs trial]({PLOTS['progress']})\n")
    out.append(_choices_section(data, k))
    out.append(_failures_section(data))
    out.append(_settings_section(data))
    return "".join(out)


def _best_section(data: RunData, count_full: CountNetwork | None) -> str:
    best = data.best
    if best is None:
        return ""
    arch = Arch.from_string(best["arch"])
    proxy_arch = data.space.proxy_arch(arch) if data.space is not None else None
    out = [f"\n## Best architecture: trial {best['number']}\n\n", arch_table(arch, proxy_arch)]
    out.append("\n")
    ref = data.reference_row
    rows = [_metric_row(f"best (trial {best['number']})", best, arch, count_full)]
    if ref is not None:
        rows.append(_metric_row(f"reference (trial {ref['number']})", ref, data.reference, count_full))
    elif data.reference is not None:
        rows.append(["reference (not evaluated in this run)", "–", "–", "–", "–", "–", "–", "–"])
    out.append(md_table(
        ["", "reward", "proxy accuracy", "S: step time (ms)", "params", "MACs",
         "params (1000 classes)", "MACs (1000 classes)"], rows,
    ))
    proxy = data.config.get("proxy", {})
    out.append(
        f"\nProxy: {proxy.get('resolution', '?')} px, width ×{proxy.get('width', '?')}, "
        f"depth ×{proxy.get('depth', '?')}, "
        f"{proxy.get('epochs', '?')} epochs, batch {proxy.get('batch', '?')} (accuracy only). S = forward + "
        f"backward + optimizer step of the full-size network at {_timing_words(data)}; params and MACs are the "
        f"full-size network's with the dataset's classes and channels, MACs at {arch.resolution} px. The last two "
        f"columns: 1000 classes, 3×{arch.resolution}×{arch.resolution} input, as the papers count."
        f"\n\nArchitecture string: `{best['arch']}`\n"
    )
    return "".join(out)


def _timing_words(data: RunData) -> str:
    """Where S was measured, from reference.json (older runs: the proxy shape)."""
    ref = data.normalisers
    shape, hardware = (ref.shape, ref.hardware) if ref is not None else ("", {})
    if not shape:
        return "the proxy size"
    where = hardware.get("device_model") if hardware.get("device") == "cuda" else hardware.get("cpu", "?")
    return f"{shape} on {where} ({hardware.get('threads', '?')} threads, {hardware.get('dtype', '?')})"


def _metric_row(label: str, row: dict[str, Any], arch: Arch | None, count_full: CountNetwork | None) -> list[Any]:
    counts = full_size_counts(arch, count_full) if (count_full and arch is not None) else None
    return [
        label, fmt(row.get("reward")), fmt(row.get("accuracy")), fmt(row.get("step_ms"), 1),
        fmt_count(row.get("params")), fmt_count(row.get("macs")),
        fmt_count(counts[0]) if counts else "–", fmt_count(counts[1]) if counts else "–",
    ]


def _top_section(data: RunData, k: int) -> str:
    top = data.top(k)
    if not top:
        return ""
    ref = data.reference_row
    rows = [
        [r["number"] if r is not ref else f"{r['number']} (reference)", fmt(r["reward"]), fmt(r["accuracy"]),
         fmt(r["step_ms"], 1), fmt_count(r["params"]), fmt_count(r["macs"]), _stage_summary(r["arch"])]
        for r in top
    ]
    return (f"\n## Top {len(top)} trials by reward\n\n"
            + md_table(["trial", "reward", "accuracy", "step ms", "params", "MACs", "stages"], rows))


def _stage_summary(arch_string: str) -> str:
    """Compact per-stage summary, e.g. `F1k3 F4k3 M4k3se M6k5se`."""
    parts = []
    for s in Arch.from_string(arch_string).stages:
        op = "F" if s.op == "fused_mbconv" else "M"
        parts.append(f"{op}{s.expansion:g}k{s.kernel}{'se' if s.se else ''}×{s.layers}")
    return " ".join(parts)


def _front_table(data: RunData) -> str:
    cost = cost_axis(data)
    complete = [r for r in data.complete if _num(r.get(cost.key))]
    if not complete:
        return ""
    front = [complete[i] for i in pareto_front([r[cost.key] for r in complete], [r["accuracy"] for r in complete])]
    ref = data.reference_row
    rows = [[r["number"] if r is not ref else f"{r['number']} (reference)", fmt(r["accuracy"]),
             fmt(r["step_ms"], 1) if cost.key == "step_ms" else fmt_count(r["macs"]), fmt_count(r["params"]),
             fmt(r["reward"])] for r in front]
    return (f"\nPareto front (accuracy vs {cost.noun}): {plural(len(front), 'trial')}\n\n"
            + md_table(["trial", "accuracy", cost.column, "params", "reward"], rows))


def _choices_section(data: RunData, k: int) -> str:
    top = data.top(k)
    out = ["\n## Choices per stage among the top trials\n\n"]
    out.append(f"How often each choice appears among the {len(top)} best trials by reward; the red frame marks "
               f"the reference architecture's choice.\n\n![choices per stage]({PLOTS['choices']})\n")
    if not top:
        return "".join(out)
    freqs = choice_frequencies([Arch.from_string(r["arch"]) for r in top])
    ref = data.reference
    rows = []
    for i, per_field in enumerate(freqs):
        row: list[Any] = [i + 1]
        for name in CHOICE_FIELDS:
            shares = per_field[name]
            text = ", ".join(f"{_choice_text(v)} {s:.0%}" for v, s in sorted(shares.items(), key=lambda x: -x[1]))
            if ref is not None and i < len(ref.stages):
                text += f" (ref {_choice_text(getattr(ref.stages[i], name))})"
            row.append(text)
        rows.append(row)
    out.append("\n" + md_table(["stage", *[FIELD_LABELS[n] for n in CHOICE_FIELDS]], rows))
    return "".join(out)


def _choice_text(value: Any) -> str:
    if isinstance(value, str):
        return OP_NAMES.get(value, value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _failures_section(data: RunData) -> str:
    bad = [r for r in data.rows if r["state"] != "COMPLETE"]
    out = ["\n## Failed and pruned trials\n\n"]
    if not bad:
        return out[0] + "None.\n"
    rows = []
    for r in bad:
        reason = r.get("reason") or ""
        if not reason and r["state"] == "PRUNED":
            reason = f"stopped by the pruner after epoch {r.get('epochs') or '?'} (accuracy below the median)"
        rows.append([r["number"], r["state"], r.get("epochs") if r.get("epochs") is not None else "–",
                     fmt(r.get("accuracy")), reason or "–"])
    out.append(md_table(["trial", "state", "epochs", "accuracy", "reason"], rows))
    return "".join(out)


def _settings_section(data: RunData) -> str:
    cfg = data.config
    keys = ["space", "dataset", "device", "seed", "val_fraction", "sampler", "pruner", "budget", "backend",
            "storage", "created", "resumed", "git_commit"]
    rows = [[key, _inline(cfg[key])] for key in keys if key in cfg]
    for group in ("proxy", "measure", "objective"):
        for key, value in (cfg.get(group) or {}).items():
            rows.append([f"{group}.{key}", _inline(value)])
    if data.normalisers is not None:
        for key, value in data.normalisers.to_dict().items():
            rows.append([f"reference.{key} (normaliser)", fmt(value, 2) if isinstance(value, float) else value])
    out = ["\n## Settings and versions\n\n", md_table(["setting", "value"], rows)]
    versions = cfg.get("versions") or {}
    if versions:
        out.append("\n" + md_table(["package", "version"], sorted(versions.items())))
    if cfg.get("reference"):
        out.append(f"\nReference architecture: `{cfg['reference']}`\n")
    return "".join(out)


def _inline(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return yaml.safe_dump(value, default_flow_style=True, width=1000).strip()
    return str(value)
