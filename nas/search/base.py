"""What both backends share: how a finished trial is recorded, scored and failed."""

from __future__ import annotations

from typing import Any

from nas.records.runs import RunDir
from nas.report.stats import pareto_front
from nas.search.trial import TrialResult
from nas.spec.arch import Arch
from nas.spec.objective import Objective
from nas.training.tblog import write_trial_events

# Trial attributes stored with every trial (Optuna user attrs, Ray results); rows and
# reports are built from these alone, so either backend's runs read the same.
METRIC_KEYS = ("accuracy", "step_ms", "step_spread", "ref_step_ms", "params", "macs", "epochs", "seconds",
               "hardware")


def result_attrs(result: TrialResult) -> dict[str, Any]:
    return {
        "accuracy": result.accuracy,
        "step_ms": result.step_ms,
        "step_spread": result.step_spread,
        "ref_step_ms": result.ref_step_ms,
        "hardware": result.hardware,
        "params": result.params,
        "macs": result.macs,
        "epochs": result.epochs,
        "seconds": round(result.train_seconds + result.measure_seconds, 3),
    }


def make_row(number: int, state: str, attrs: dict[str, Any], objective: Objective) -> dict[str, Any]:
    row: dict[str, Any] = {"number": number, "state": state, "arch": attrs.get("arch", "")}
    row.update({k: attrs.get(k) for k in METRIC_KEYS})
    row["reason"] = attrs.get("reason", "")
    if row["accuracy"] is not None and row["step_ms"] is not None:
        row["reward"] = objective.reward(row["accuracy"], row["step_ms"], row["params"], row["macs"],
                                         row.get("ref_step_ms"))
    return row


def record_trial(run: RunDir, number: int, arch: Arch | None, state: str, attrs: dict[str, Any],
                 objective: Objective, history: list[dict[str, float]] | None = None,
                 traceback_text: str = "", extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write trials/<n>/ (arch.yaml, metrics.json, error.txt for a failure's traceback,
    TensorBoard events); returns the row.

    `extra` goes to metrics.json only (e.g. the Ray node a trial ran on), not to results.csv.
    """
    row = make_row(number, state, attrs, objective)
    metrics = dict(extra or {}, **row, history=history or [])
    folder = run.write_trial(number, arch, metrics)
    if traceback_text:
        (folder / "error.txt").write_text(traceback_text)
    if history:
        hparams = {"arch": row["arch"], "state": state}
        scores = {k: row.get(k) for k in ("reward", "accuracy", "step_ms", "params")}
        write_trial_events(folder, history, hparams, scores)
    return row


def pareto_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Complete rows that no other complete row beats on accuracy (up) and step time (down)."""
    done = [r for r in rows if r["state"] == "COMPLETE" and r.get("accuracy") is not None
            and r.get("step_ms") is not None]
    return [done[i] for i in pareto_front([r["step_ms"] for r in done], [r["accuracy"] for r in done])]


def best_reward(rows: list[dict[str, Any]]) -> float | None:
    return max((r["reward"] for r in rows if r["state"] == "COMPLETE" and r.get("reward") is not None),
               default=None)


def write_rows(run: RunDir, rows: list[dict[str, Any]], objective: Objective) -> None:
    """results.csv, best.yaml (and pareto.csv for a Pareto objective) from finished rows."""
    run.write_results(rows, pareto_rows(rows) if objective.spec.kind == "pareto" else None)
