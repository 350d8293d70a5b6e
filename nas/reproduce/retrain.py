"""Retraining the best architectures found and the reference, several seeds each."""

from __future__ import annotations

import csv
import io
import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from nas.records.runs import RunDir, atomic_write
from nas.report.run_report import (
    RunData,
    fmt,
    load_run,
)
from nas.reproduce.request import Request, SeedRuns, say
from nas.spec.arch import Arch
from nas.spec.settings import SearchSettings, settings_from_run

RETRAIN_FILE = "retrain.csv"
RETRAIN_COLUMNS = ["role", "trial", "seed", "epochs", "train_images", "state", "accuracy", "step_ms", "step_spread",
                   "params", "macs", "seconds", "reason", "arch", "split"]
# the split `accuracy` was measured on: the held-out test split, or val where none was held out
# (and in retrain.csv files written before there was one)


# -- retraining ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Candidate:
    role: str  # found, reference or rank (extra points for the rank correlation)
    trial: int | None
    arch: str
    proxy_accuracy: float | None
    proxy_reward: float | None
    seeds: tuple[int, ...]


def ranked(data: RunData) -> list[dict[str, Any]]:
    """A run's complete trials best reward first, one per architecture (retries of one keep
    the best), the reference left out: every run enqueues it as trial 0, so it is chosen, not found."""
    ref_string = data.reference.to_string() if data.reference is not None else None
    distinct: dict[str, dict[str, Any]] = {}
    for row in sorted(data.complete, key=lambda r: -r["reward"]):
        if row["arch"] != ref_string:
            distinct.setdefault(row["arch"], row)
    return list(distinct.values())


def pick_candidates(data: RunData, top: int, rank_extra: int, seeds: Sequence[int]) -> list[Candidate]:
    """The `top` best distinct architectures found (reference excluded), the reference, and
    `rank_extra` more spread evenly over the proxy-accuracy ranking (first seed only)."""
    ref_string = data.reference.to_string() if data.reference is not None else None
    rows = ranked(data)
    out = [Candidate("found", r["number"], r["arch"], r["accuracy"], r["reward"], tuple(seeds)) for r in rows[:top]]
    if ref_string is not None:
        ref = data.reference_row
        out.append(Candidate("reference", ref["number"] if ref else None, ref_string,
                             ref["accuracy"] if ref else None, ref["reward"] if ref else None, tuple(seeds)))
    taken = {c.arch for c in out}
    rest = sorted((r for r in rows if r["arch"] not in taken), key=lambda r: -r["accuracy"])
    if rank_extra > 0 and rest:
        count = min(rank_extra, len(rest))
        picks = sorted({round(i * (len(rest) - 1) / max(1, count - 1)) for i in range(count)})
        out += [Candidate("rank", rest[i]["number"], rest[i]["arch"], rest[i]["accuracy"], rest[i]["reward"],
                          tuple(seeds[:1])) for i in picks]
    return out


def best_of_each_search(folder: Path, runs: Sequence[SeedRuns],
                        seeds: Sequence[int]) -> dict[int, dict[str, Candidate]]:
    """Per search seed, the best architecture of the TPE search and of the random search with
    that seed, each retrained with the same `seeds` and recipe: TPE vs random after retraining."""
    out: dict[int, dict[str, Candidate]] = {}
    for pair in runs:
        for sub, side in ((pair.tpe, "tpe"), (pair.random, "random")):
            if not RunDir(folder / sub).exists():
                continue
            rows = ranked(load_run(RunDir(folder / sub)))
            if rows:
                r = rows[0]
                out.setdefault(pair.seed, {})[side] = Candidate(f"{side}-best", r["number"], r["arch"], r["accuracy"],
                                                                r["reward"], tuple(seeds))
    return out


def retrain_settings(settings: SearchSettings, epochs: int | None) -> SearchSettings:
    """The proxy network trained longer: more epochs, on the whole training split."""
    proxy = replace(settings.proxy, epochs=epochs or 2 * settings.proxy.epochs, max_train=None)
    return replace(settings, space=replace(settings.space, proxy=proxy))


def read_retrain(folder: Path) -> list[dict[str, Any]]:
    path = folder / RETRAIN_FILE
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["split"] = row.get("split") or "val"
        for key in ("trial", "seed", "epochs", "train_images", "params", "macs"):
            row[key] = int(row[key]) if row.get(key) else None
        for key in ("accuracy", "step_ms", "step_spread", "seconds"):
            row[key] = float(row[key]) if row.get(key) else None
    return rows


def _write_retrain(folder: Path, rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=RETRAIN_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in RETRAIN_COLUMNS})
    atomic_write(folder / RETRAIN_FILE, buffer.getvalue())


def retrain(folder: Path, request: Request, on_start: Callable[[], None] | None = None) -> list[dict[str, Any]]:
    """Retrain the candidates with several seeds; rows already in retrain.csv are kept
    (`on_start` is called when any retraining is left to do).

    With `request.workers` > 1 the retrainings run in that many processes (one thread each on
    a CPU, sharing the GPU on a GPU machine); step times stay exclusive through the device gate.
    """
    run = RunDir(folder / "search")
    settings = retrain_settings(settings_from_run(run), request.retrain_epochs)
    seeds = [settings.seed + i for i in range(request.seeds)]
    candidates = pick_candidates(load_run(run), request.top, request.rank_extra, seeds)
    if request.baseline > 0:
        per_seed = best_of_each_search(folder, request.search_runs(), seeds)
        candidates += [c for sides in per_seed.values() for c in sides.values()]
    rows = read_retrain(folder)
    done = {(r["arch"], r["seed"], r["epochs"]) for r in rows}
    epochs = settings.proxy.epochs
    # seed-major order: a drift in machine load touches every architecture alike; an architecture
    # two roles share (TPE's best is also "found") is retrained once per seed
    jobs = []
    for s in seeds:
        for c in candidates:
            if s in c.seeds and (c.arch, s, epochs) not in done:
                done.add((c.arch, s, epochs))
                jobs.append((c, s))
    if not jobs:
        return rows
    if on_start is not None:
        on_start()

    def finished(index: int, row: dict[str, Any]) -> None:
        rows.append(row)
        _write_retrain(folder, rows)
        label = f"trial {row['trial']}" if row["trial"] is not None else row["role"]
        say(f"[retrain {index}/{len(jobs)}] {row['role']:<9} {label:<10} seed {row['seed']}  "
                      f"acc {fmt(row.get('accuracy'))}  step {fmt(row.get('step_ms'), 1)} ms  {row['seconds']:.0f} s"
                      + (f"  ({row['reason']})" if row.get("reason") else ""))

    from nas.measure.device import set_threads

    workers = min(request.workers, len(jobs))
    if workers == 1:
        set_threads(1)
        for index, (cand, seed) in enumerate(jobs, 1):
            finished(index, retrain_one(cand, seed, settings))
        return rows
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=set_threads,
                             initargs=(workers,)) as pool:
        futures = [pool.submit(retrain_one, cand, seed, settings) for cand, seed in jobs]
        try:
            for index, future in enumerate(as_completed(futures), 1):
                finished(index, future.result())
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return rows


def retrain_one(cand: Candidate, seed: int, settings: SearchSettings) -> dict[str, Any]:
    """One retraining as a retrain.csv row. The candidate's own failure is a FAIL row (the others
    go on); one that is not its fault (a CUDA error that poisons the process, Ctrl-C) is raised,
    as a search's trial would be interrupted: nothing is recorded, and the next run retrains it.
    `nas.search.failure.classify_error` tells the two apart for both."""
    from nas.measure.costs import warm_up_process
    from nas.measure.device import resolve_device
    from nas.search.failure import INTERRUPTED, classify_error
    from nas.search.trial import evaluate
    from nas.training.data import search_data

    dataset = search_data(settings)
    device = resolve_device(settings.device)  # once per retraining, passed down
    warm_up_process(device)  # the first timing of a process runs slow (allocator, kernels): spend it here
    split = "test" if dataset.test_x is not None else "val"
    if split == "test":  # trained on train, tested on images no search or selection saw
        dataset = dataset.test_as_val()
    start = time.perf_counter()
    row: dict[str, Any] = {"role": cand.role, "trial": cand.trial, "seed": seed, "epochs": settings.proxy.epochs,
                           "train_images": len(dataset.train_x), "arch": cand.arch, "split": split}
    try:
        # no step-time cache: measured afresh, in a warm process, for every seed
        result = evaluate(Arch.from_string(cand.arch), replace(settings, seed=seed), dataset, device)
    except Exception as exc:
        outcome = classify_error(exc, Arch.from_string(cand.arch), time.perf_counter() - start)
        if outcome.state == INTERRUPTED:
            raise
        row.update(state="FAIL", reason=outcome.reason)
    else:
        row.update(state="COMPLETE", accuracy=result.accuracy, step_ms=result.step_ms,
                   step_spread=result.step_spread, params=result.params, macs=result.macs, reason="")
    row["seconds"] = round(time.perf_counter() - start, 2)
    return row


