"""`nas reproduce v2s|b0`: the paper's search at small scale, a random baseline, retraining, a report.

    runs/<name>/reproduce.yaml   what was asked (target, budgets, seeds, ...)
    runs/<name>/search/          the search (a normal run folder: nas show / nas report work on it)
    runs/<name>/random/          random search at the baseline budget (same reference, same step times)
    runs/<name>/retrain.csv      one row per retraining (architecture x seed), appended as they finish
    runs/<name>/report.md, *.png the answers

Every stage reuses what is already on disk, so running the same command again resumes an
interrupted reproduction and re-renders the report of a finished one without training.
"""

from __future__ import annotations

import csv
import io
import math
import multiprocessing
import os
import random
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import yaml

from nas import plots
from nas.arch import Arch
from nas.errors import ConfigError, RunError
from nas.objective import Objective, Reference
from nas.report import (
    OP_NAMES,
    RunData,
    arch_table,
    fmt,
    fmt_count,
    interrupted,
    load_run,
    md_table,
    plural,
    top_k_size,
    write_report,
)
from nas.runs import RunDir, atomic_write
from nas.settings import SearchSettings
from nas.space import Proxy, SearchSpace
from nas.stats import (
    CHOICE_FIELDS,
    choice_frequencies,
    dominates,
    kendall_tau,
    majority,
    mean_std,
    running_best,
    stage_mean,
    stage_share,
)

REQUEST_FILE = "reproduce.yaml"
RETRAIN_FILE = "retrain.csv"
RETRAIN_COLUMNS = ["role", "trial", "seed", "epochs", "train_images", "state", "accuracy", "step_ms", "step_spread",
                   "params", "macs", "seconds", "reason", "arch"]


# -- what the papers found -------------------------------------------------------------------
@dataclass(frozen=True)
class Claim:
    """One design finding of a paper, measured on a set of architectures."""

    text: str
    value: Callable[[Sequence[Arch]], float]
    holds: Callable[[Sequence[Arch], float], bool]
    show: Callable[[Sequence[Arch], float], str]


def _early(n: int) -> range:
    return range(n // 2)


def _late(n: int) -> range:
    return range(n // 2, n)


def _middle(n: int) -> range:
    return range(1, n - 1) if n > 2 else range(n)


def _stages(archs: Sequence[Arch]) -> int:
    return min((len(a.stages) for a in archs), default=0)


def _share_text(_: Sequence[Arch], value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.0%}"


def _expansion_gap(archs: Sequence[Arch]) -> float:
    n = _stages(archs)
    return stage_mean(archs, _late(n), "expansion") - stage_mean(archs, _early(n), "expansion")


def _expansion_text(archs: Sequence[Arch], value: float) -> str:
    n = _stages(archs)
    if not archs:
        return "–"
    early, late = stage_mean(archs, _early(n), "expansion"), stage_mean(archs, _late(n), "expansion")
    return f"{early:.1f} early vs {late:.1f} later"


def _kernel_majorities(archs: Sequence[Arch]) -> list[Any]:
    return [majority(stage["kernel"])[0] for stage in choice_frequencies(archs, ("kernel",))]


def _kernel_mix_text(archs: Sequence[Arch], value: float) -> str:
    if not archs:
        return "–"
    fives = [i + 1 for i, k in enumerate(_kernel_majorities(archs)) if k == 5]
    return f"5×5 {value:.0%} of picks; mostly 5×5 in stages {fives or 'none'}"


V2_CLAIMS = (
    Claim("Fused-MBConv preferred in the early stages (first half)",
          lambda a: stage_share(a, _early(_stages(a)), lambda s: s.op == "fused_mbconv"),
          lambda a, v: v > 0.5, _share_text),
    Claim("MBConv with SE preferred in the later stages (second half)",
          lambda a: stage_share(a, _late(_stages(a)), lambda s: s.op == "mbconv" and s.se > 0),
          lambda a, v: v > 0.5, _share_text),
    Claim("smaller expansion ratios in the early stages", _expansion_gap, lambda a, v: v > 0, _expansion_text),
    Claim("3×3 kernels favoured (share of all stages)",
          lambda a: stage_share(a, range(_stages(a)), lambda s: s.kernel == 3), lambda a, v: v > 0.5, _share_text),
)
B0_CLAIMS = (
    Claim("a mix of 3×3 and 5×5 kernels across stages",
          lambda a: stage_share(a, range(_stages(a)), lambda s: s.kernel == 5),
          lambda a, v: {3, 5} <= set(_kernel_majorities(a)), _kernel_mix_text),
    Claim("expansion 6 in the middle stages (all but first and last)",
          lambda a: stage_share(a, _middle(_stages(a)), lambda s: s.expansion == 6),
          lambda a, v: v > 0.5, _share_text),
)


@dataclass(frozen=True)
class Target:
    name: str
    space: str
    objective: str
    paper: str
    claims: tuple[Claim, ...]
    cost: str  # the cost axis the paper traded accuracy against: step_ms or macs


TARGETS = {
    "v2s": Target("v2s", "v2", "reward", "EfficientNetV2-S (Tan & Le, 2021)", V2_CLAIMS, "step_ms"),
    "b0": Target("b0", "v1", "macs", "EfficientNet-B0 (Tan & Le, 2019; MnasNet search)", B0_CLAIMS, "macs"),
}


# -- the request -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Request:
    target: str
    budget: int = 200
    baseline_budget: int | None = None  # None: a quarter of the budget (fits the hour on a CPU)
    top: int = 3
    seeds: int = 3
    retrain_epochs: int | None = None  # None: twice the proxy's epochs
    rank_extra: int = 3
    dataset: str = "mnist5k"
    device: str = "auto"
    workers: int = 1
    seed: int = 0
    space: str | None = None  # tests: a smaller space with the same claims
    epochs: int | None = None
    max_train: int | None = None
    search_args: tuple[str, ...] = ()  # more `nas search` options for both searches (e.g. --backend ray)
    quiet: bool = False

    @property
    def space_name(self) -> str:
        return self.space or TARGETS[self.target].space

    @property
    def baseline(self) -> int:
        return max(1, self.budget // 4) if self.baseline_budget is None else self.baseline_budget

    def command(self, name: str, runs_dir: str | Path = "runs") -> str:
        """The `nas reproduce` command line that asks for this (options left at defaults omitted)."""
        parts = ["nas", "reproduce", self.target]
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name in ("target", "quiet") or value == item.default:
                continue
            flag = "--" + item.name.replace("_", "-")
            parts += [flag, shlex.join(value) if item.name == "search_args" else str(value)]
        parts += ["--name", name] + (["--runs-dir", str(runs_dir)] if str(runs_dir) != "runs" else [])
        return shlex.join(parts)

    def fingerprint(self) -> dict[str, Any]:
        """What must not change when the same --name is run again."""
        return {"target": self.target, "space": self.space_name, "dataset": self.dataset, "seed": self.seed}


def is_reproduction(path: Path) -> bool:
    return (Path(path) / REQUEST_FILE).is_file()


def _record_request(folder: Path, request: Request, runs_dir: str | Path) -> None:
    path = folder / REQUEST_FILE
    if path.is_file():
        saved = yaml.safe_load(path.read_text()) or {}
        for key, value in request.fingerprint().items():
            if saved.get(key) != value:
                raise ConfigError(
                    f"reproduction {folder.name!r} was made with {key} = {saved.get(key)!r}, but this command gives "
                    f"{value!r}; use the same settings or another --name"
                )
    folder.mkdir(parents=True, exist_ok=True)
    record = {k: v for k, v in vars(request).items() if k != "quiet"}
    record["search_args"] = list(request.search_args)
    record["baseline_budget"] = request.baseline
    record.update(request.fingerprint())
    record["command"] = request.command(folder.name, runs_dir)
    atomic_write(path, yaml.safe_dump(record, sort_keys=False))


# -- running it ------------------------------------------------------------------------------
def run_reproduction(request: Request, runs_dir: str | Path, name: str) -> Path:
    """Search, baseline, retraining and report; each part resumes from what is on disk."""
    if request.target not in TARGETS:
        raise ConfigError(f"target must be one of {sorted(TARGETS)}, but got {request.target!r}")
    folder = Path(runs_dir) / name
    _record_request(folder, request, runs_dir)
    _say(request, f"nas: reproduction {name} in {folder}: {request.target} ({request.space_name} space), "
                  f"search budget {request.budget}, random baseline {request.baseline}")
    run_search(folder, "search", request, request.budget)
    if request.baseline > 0:
        _share_reference(folder / "search", folder / "random")
        run_search(folder, "random", request, request.baseline, sampler="random")
    retrain(folder, request)
    return write_reproduction_report(folder)


def run_search(folder: Path, sub: str, request: Request, budget: int, sampler: str | None = None) -> None:
    """`nas search` into folder/sub, resuming it if it exists (the search command builds the settings)."""
    from nas.cli import build_parser
    from nas.commands import command_module

    target = TARGETS[request.target]
    argv = ["search", "--space", request.space_name, "--budget", str(budget), "--runs-dir", str(folder),
            "--name", sub, "--dataset", request.dataset, "--objective", target.objective, "--seed", str(request.seed),
            "--device", request.device, "--workers", str(request.workers)]
    if sampler:
        argv += ["--sampler", sampler]
    if request.epochs:
        argv += ["--epochs", str(request.epochs)]
    if request.max_train:
        argv += ["--max-train", str(request.max_train)]
    argv += list(request.search_args)
    if (folder / sub / "config.yaml").is_file():
        argv.append("--resume")
    if request.quiet:
        argv.append("--quiet")
    _say(request, f"nas: {sub}: nas {' '.join(argv)}")
    command_module("search").run(build_parser().parse_args(argv))


def _share_reference(source: Path, dest: Path) -> None:
    """The baseline starts from the search's reference measurement and step-time cache, so both
    runs score on one scale (rewards are otherwise comparable only within a run)."""
    if (dest / "config.yaml").is_file():
        return
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("reference.json", "step_times.json"):
        if (source / name).is_file() and not (dest / name).is_file():
            shutil.copyfile(source / name, dest / name)


def settings_from_run(run: RunDir) -> SearchSettings:
    """The settings a run was made with, from its config.yaml and space.yaml."""
    config = run.config()
    path = run.path / "space.yaml"
    try:
        space = SearchSpace.from_yaml(path.read_text(), source=str(path), base_dir=run.path)
    except OSError as exc:
        raise RunError(f"cannot read {path}: {exc.strerror or exc}") from None
    proxy = Proxy(**config["proxy"]) if config.get("proxy") else space.proxy
    settings = SearchSettings(
        space=replace(space, proxy=proxy), dataset=config.get("dataset", "mnist5k"),
        device=config.get("device", "auto"), seed=int(config.get("seed", 0)),
        val_fraction=float(config.get("val_fraction", 0.2)), sampler=config.get("sampler", "tpe"),
        pruner=config.get("pruner", "median"),
    )
    return settings.with_objective(config.get("objective", {}).get("kind"))


# -- retraining ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Candidate:
    role: str  # found, reference or rank (extra points for the rank correlation)
    trial: int | None
    arch: str
    proxy_accuracy: float | None
    proxy_reward: float | None
    seeds: tuple[int, ...]


def pick_candidates(data: RunData, top: int, rank_extra: int, seeds: Sequence[int]) -> list[Candidate]:
    """The `top` best distinct architectures found (reference excluded), the reference, and
    `rank_extra` more spread evenly over the proxy-accuracy ranking (first seed only)."""
    ref_string = data.reference.to_string() if data.reference is not None else None
    distinct: dict[str, dict[str, Any]] = {}
    for row in sorted(data.complete, key=lambda r: -r["reward"]):
        distinct.setdefault(row["arch"], row)  # retries of one architecture: keep the best
    found = [r for a, r in distinct.items() if a != ref_string][:top]
    out = [Candidate("found", r["number"], r["arch"], r["accuracy"], r["reward"], tuple(seeds)) for r in found]
    if ref_string is not None:
        ref = data.reference_row
        out.append(Candidate("reference", ref["number"] if ref else None, ref_string,
                             ref["accuracy"] if ref else None, ref["reward"] if ref else None, tuple(seeds)))
    taken = {c.arch for c in out}
    rest = sorted((r for a, r in distinct.items() if a not in taken), key=lambda r: -r["accuracy"])
    if rank_extra > 0 and rest:
        count = min(rank_extra, len(rest))
        picks = sorted({round(i * (len(rest) - 1) / max(1, count - 1)) for i in range(count)})
        out += [Candidate("rank", rest[i]["number"], rest[i]["arch"], rest[i]["accuracy"], rest[i]["reward"],
                          tuple(seeds[:1])) for i in picks]
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


def retrain(folder: Path, request: Request) -> list[dict[str, Any]]:
    """Retrain the candidates with several seeds; rows already in retrain.csv are kept.

    With `request.workers` > 1 the retrainings run in that many processes (one thread each on
    a CPU, sharing the GPU on a GPU machine); step times stay exclusive through the device lock.
    """
    run = RunDir(folder / "search")
    settings = retrain_settings(settings_from_run(run), request.retrain_epochs)
    seeds = [settings.seed + i for i in range(request.seeds)]
    candidates = pick_candidates(load_run(run), request.top, request.rank_extra, seeds)
    rows = read_retrain(folder)
    done = {(r["arch"], r["seed"], r["epochs"]) for r in rows}
    epochs = settings.proxy.epochs
    # seed-major order: a drift in machine load touches every architecture alike
    jobs = [(c, s) for s in seeds for c in candidates if s in c.seeds and (c.arch, s, epochs) not in done]
    if not jobs:
        return rows

    def finished(index: int, row: dict[str, Any]) -> None:
        rows.append(row)
        _write_retrain(folder, rows)
        label = f"trial {row['trial']}" if row["trial"] is not None else row["role"]
        _say(request, f"[retrain {index}/{len(jobs)}] {row['role']:<9} {label:<10} seed {row['seed']}  "
                      f"acc {fmt(row.get('accuracy'))}  step {fmt(row.get('step_ms'), 1)} ms  {row['seconds']:.0f} s"
                      + (f"  ({row['reason']})" if row.get("reason") else ""))

    workers = min(request.workers, len(jobs))
    if workers == 1:
        _retrain_threads(1)
        for index, (cand, seed) in enumerate(jobs, 1):
            finished(index, retrain_one(cand, seed, settings))
        return rows
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_retrain_threads,
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
    """One retraining as a retrain.csv row; a failure is a row too (the others go on)."""
    from nas.data import load_dataset
    from nas.search.base import failure_reason
    from nas.search.trial import evaluate

    dataset = load_dataset(settings.dataset, resolution=settings.proxy.resolution,
                           val_fraction=settings.val_fraction, seed=settings.seed)
    _warm_up(settings, dataset)
    start = time.perf_counter()
    row: dict[str, Any] = {"role": cand.role, "trial": cand.trial, "seed": seed, "epochs": settings.proxy.epochs,
                           "train_images": len(dataset.train_x), "arch": cand.arch}
    try:
        # no step-time cache: measured afresh, in a warm process, for every seed
        result = evaluate(Arch.from_string(cand.arch), replace(settings, seed=seed), dataset)
    except Exception as exc:  # any failure of one retraining is recorded
        row.update(state="FAIL", reason=failure_reason(exc))
    else:
        row.update(state="COMPLETE", accuracy=result.accuracy, step_ms=result.step_ms,
                   step_spread=result.step_spread, params=result.params, macs=result.macs, reason="")
    row["seconds"] = round(time.perf_counter() - start, 2)
    return row


def _retrain_threads(workers: int) -> None:
    """`nas search` gave torch all cores / workers threads; an explicit OMP_NUM_THREADS wins for the
    retraining, since on a busy machine one thread ran a retraining in 8 s where two took 55 s."""
    import torch

    from nas.device import set_threads

    given = os.environ.get("OMP_NUM_THREADS", "")
    if given.isdigit() and int(given) > 0:
        torch.set_num_threads(int(given))
    else:
        set_threads(workers)


_WARM: set[str] = set()


def _warm_up(settings: SearchSettings, dataset: Any) -> None:
    """The first step-time measurement of a process runs slow (allocator, kernels); spend it here,
    once per process."""
    from nas.device import resolve_device
    from nas.measure import measure_step_time
    from nas.model import build

    device = resolve_device(settings.device)
    if str(device) in _WARM:
        return
    model = build(settings.proxy.apply(settings.space.reference), num_classes=dataset.num_classes,
                  in_channels=dataset.in_channels)
    measure_step_time(model, batch=settings.measure_batch, resolution=settings.proxy.resolution,
                      in_channels=dataset.in_channels, num_classes=dataset.num_classes, device=device,
                      warmup=settings.measure.warmup, steps=2)
    _WARM.add(str(device))


def _say(request: Request, line: str) -> None:
    if not request.quiet:
        print(line, file=sys.stderr, flush=True)


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


def summarise_retrain(rows: Sequence[dict[str, Any]], candidates: Sequence[Candidate], objective: Objective | None,
                      reference_arch: str | None, epochs: int | None = None) -> list[Retrained]:
    """Mean ± std per candidate; rewards use the reference's re-measured step time as normaliser."""
    def mine(arch: str) -> list[dict[str, Any]]:
        return [r for r in rows if r["arch"] == arch and (epochs is None or r["epochs"] == epochs)]

    scale = objective
    ref_rows = [r for r in mine(reference_arch or "") if r["state"] == "COMPLETE"]
    if objective is not None and ref_rows:
        base = objective.reference
        scale = Objective(objective.spec, Reference(
            step_ms=mean_std([r["step_ms"] for r in ref_rows])[0], params=ref_rows[0]["params"],
            macs=ref_rows[0]["macs"], full_macs=base.full_macs))
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
            failed=len(all_rows) - len(good),
        ))
    return out


COSTS = {"step_ms": "step time", "macs": "MACs"}
REWARD_WORDS = {"beats": "better reward", "matches": "same reward within the spread", "loses to": "worse reward"}


def cost_of(r: Retrained, cost: str) -> tuple[float, float]:
    """Mean and std of a retrained architecture's cost (MACs do not vary between seeds)."""
    return r.step_ms if cost == "step_ms" else (float(r.macs or 0), 0.0)


def compare(found: Retrained, ref: Retrained, cost: str = "step_ms") -> tuple[str, str]:
    """Verdicts on reward (beyond the combined spread?) and on the accuracy / cost front."""
    diff = found.reward[0] - ref.reward[0]
    spread = math.hypot(found.reward[1], ref.reward[1])
    if diff > spread:
        on_reward = "beats"
    elif diff >= -spread:
        on_reward = "matches"
    else:
        on_reward = "loses to"
    noun = COSTS[cost]
    fa, fs, ra, rs = found.accuracy[0], cost_of(found, cost)[0], ref.accuracy[0], cost_of(ref, cost)[0]
    ratio = f"{fa - ra:+.4f} accuracy at {fs / rs:.2f}× the {noun}" if rs else f"{fa - ra:+.4f} accuracy"
    axes = (("accuracy", found.accuracy, ref.accuracy), (noun, cost_of(found, cost), cost_of(ref, cost)))
    within = [name for name, a, b in axes if not _beyond_spread(a, b)]
    if within:
        ratio += f"; the {' and '.join(within)} gap is within the spread over seeds"
    if dominates(fs, fa, rs, ra):
        front = f"dominates the reference ({ratio})"
    elif dominates(rs, ra, fs, fa):
        front = f"is dominated by the reference ({ratio})"
    elif fs < rs:
        front = f"trades accuracy for less {noun} ({ratio})"
    else:
        front = f"buys accuracy with more {noun} ({ratio})"
    return on_reward, front


def _beyond_spread(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether two means differ by more than their combined standard deviations."""
    return abs(a[0] - b[0]) > math.hypot(a[1], b[1])


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


# -- the report ------------------------------------------------------------------------------
def write_reproduction_report(folder: Path, top_k: int | None = None) -> Path:
    """Render report.md and plots of a reproduction from its files (no training)."""
    folder = Path(folder)
    if not is_reproduction(folder):
        raise RunError(f"{folder} is not a reproduction folder (no {REQUEST_FILE})")
    asked = yaml.safe_load((folder / REQUEST_FILE).read_text()) or {}
    target = TARGETS[asked["target"]]
    search_run = RunDir(folder / "search")
    if not search_run.exists():
        raise RunError(f"reproduction {folder.name} has no search yet; run the same `nas reproduce` command again")
    write_report(search_run, top_k=top_k)
    search = load_run(search_run)
    random_run = RunDir(folder / "random")
    baseline = None
    if random_run.exists():
        write_report(random_run, top_k=top_k, full_counts=False)
        baseline = load_run(random_run)
    settings = retrain_settings(settings_from_run(search_run), asked.get("retrain_epochs"))
    seeds = [settings.seed + i for i in range(int(asked.get("seeds", 1)))]
    candidates = pick_candidates(search, int(asked.get("top", 3)), int(asked.get("rank_extra", 0)), seeds)
    ref_string = search.reference.to_string() if search.reference else None
    retrained = summarise_retrain(read_retrain(folder), candidates, search.objective(), ref_string,
                                  settings.proxy.epochs)
    k = top_k or top_k_size(len(search.complete))
    text = _render(folder, asked, target, search, baseline, retrained, settings, k)
    atomic_write(folder / "report.md", text)
    return folder / "report.md"


def _render(folder: Path, asked: dict[str, Any], target: Target, search: RunData, baseline: RunData | None,
            retrained: list[Retrained], settings: SearchSettings, k: int) -> str:
    objective = search.objective()
    out = [f"# Reproducing {target.paper} at small scale: `{folder.name}`\n\n"]
    out.append(f"Made with `{asked.get('command', 'nas reproduce ' + target.name)}`.\n\n")
    finished = search.finished()
    out.append(
        f"Search: {asked.get('space')} space, dataset {asked.get('dataset')}, objective {target.objective}, "
        f"**{finished} of {asked.get('budget')} trials** (TPE); "
        + (f"random-search baseline {baseline.finished()} of {asked.get('baseline_budget')} trials; " if baseline
           else "no random-search baseline; ")
        + f"retraining: {plural(settings.proxy.epochs, 'epoch')} on the whole training split, "
        f"{plural(int(asked.get('seeds', 1)), 'seed')} for the {asked.get('top')} best found and the reference. "
        f"The paper sampled up to 1000 models trained ~10 "
        f"epochs at reduced size on ImageNet; this is a proxy of a proxy, so read the numbers as such.\n"
    )
    found = [r for r in retrained if r.role == "found"]
    ref = next((r for r in retrained if r.role == "reference"), None)
    findings = _findings(target, search, baseline, k)
    tau, tau_n = _tau(retrained)
    curves = _curves(search, baseline, objective)
    out.append("\n## Answers\n\n")
    out.append(_answers(target, found, ref, findings, curves, tau, tau_n, k))
    out.append(_retrain_section(folder, found, ref, retrained, search, target))
    out.append(_findings_section(target, findings, search, k))
    out.append(_random_section(folder, curves, search, baseline))
    out.append(_tau_section(folder, retrained, tau, tau_n))
    out.append(_search_section(search))
    return "".join(out)


def _answers(target: Target, found: list[Retrained], ref: Retrained | None,
             findings: list[tuple[Claim, dict[str, Any]]], curves: dict[str, Any], tau: float, tau_n: int,
             k: int) -> str:
    lines = []
    if found and ref is not None:
        best = found[0]
        on_reward, front = compare(best, ref, target.cost)
        lines.append(
            f"- **Found vs reference (retrained)**: the best found (trial {best.trial}) {on_reward} the reference on "
            f"reward ({_pm(best.reward, 4, best.seeds)} vs {_pm(ref.reward, 4, ref.seeds)}) and {front}: accuracy "
            f"{_pm(best.accuracy, 4, best.seeds)} vs {_pm(ref.accuracy, 4, ref.seeds)}, step time "
            f"{_pm(best.step_ms, 1, best.seeds)} vs {_pm(ref.step_ms, 1, ref.seeds)} ms, MACs "
            f"{fmt_count(best.macs)} vs {fmt_count(ref.macs)} (mean ± std over {plural(best.seeds, 'seed')} "
            f"and {plural(ref.seeds, 'seed')})."
        )
    else:
        lines.append("- **Found vs reference**: not retrained yet.")
    held = [c.text for c, m in findings if m["holds"] and m["luck"] < 0.05]
    weak = [c.text for c, m in findings if m["holds"] and not m["luck"] < 0.05]
    lines.append(f"- **Paper's design findings** (top {k} trials): {len(held)} of {len(findings)} reappear beyond "
                 f"chance" + (f" ({'; '.join(held)})" if held else "")
                 + (f"; {len(weak)} more only as often as random architectures show it ({'; '.join(weak)})"
                    if weak else "") + ".")
    if curves.get("random") and curves["common"] > 0:
        n = curves["common"]
        lines.append(f"- **TPE vs random search** after {n} trials: best reward {fmt(curves['tpe_at'])} vs "
                     f"{fmt(curves['random_at'])} (both scored against the same reference measurement).")
    elif "random" in curves:
        lines.append("- **TPE vs random search**: the random baseline has no finished trials yet.")
    else:
        lines.append("- **TPE vs random search**: no baseline run.")
    lines.append(f"- **Proxy vs longer training**: Kendall tau {fmt(tau, 2)} between proxy accuracy and retrained "
                 f"accuracy over {tau_n} architectures" + (" (too few to say much)." if tau_n < 5 else "."))
    return "\n".join(lines) + "\n"


def _pm(pair: tuple[float, float], digits: int = 4, seeds: int = 2) -> str:
    """mean ± std; one seed has no spread to show."""
    return fmt(pair[0], digits) if seeds < 2 else f"{fmt(pair[0], digits)} ± {fmt(pair[1], digits)}"


def _retrain_section(folder: Path, found: list[Retrained], ref: Retrained | None, retrained: list[Retrained],
                     search: RunData, target: Target) -> str:
    out = ["\n## Found vs reference after longer training\n\n"]
    if not retrained:
        return out[0] + "No retraining finished yet.\n"
    out.append("Reward re-scored with the reference's step time measured in the same (warm) process as the others; "
               "the search normalised by its first measurement of the process"
               + (f" ({fmt(search.normalisers.step_ms, 1)} ms vs {fmt(ref.step_ms[0], 1)} ms now)"
                  if ref is not None and search.normalisers is not None else "") + ".\n\n")
    rows = []
    for r in retrained:
        verdict = ""
        if r.role == "found" and ref is not None:
            on_reward, front = compare(r, ref, target.cost)
            verdict = f"{REWARD_WORDS[on_reward]}; {front}"
        rows.append([
            r.role, r.trial if r.trial is not None else "–", fmt(r.proxy_accuracy), _pm(r.accuracy, 4, r.seeds),
            _pm(r.step_ms, 1, r.seeds), _pm(r.reward, 4, r.seeds), fmt_count(r.params), fmt_count(r.macs), r.seeds,
            verdict,
        ])
    out.append(md_table(["role", "trial", "proxy acc", "retrained acc", "step ms", "reward", "params", "MACs",
                         "seeds", "vs reference"], rows))
    def point(r: Retrained, label: str) -> plots.Point:
        x, x_err = cost_of(r, target.cost)
        return plots.Point(x, r.accuracy[0], x_err, r.accuracy[1], label)

    xlabel = "training step time at the proxy (ms)" if target.cost == "step_ms" else "MACs at the proxy"
    plots.scatter_front(folder / "retrained.png", [], xlabel=xlabel, title="retrained: mean ± std over seeds",
                        reference=point(ref, "reference") if ref is not None else None,
                        highlights=[point(r, f"trial {r.trial}") for r in found])
    out.append(f"\n![retrained accuracy vs {COSTS[target.cost]}](retrained.png)\n")
    if found:
        out.append(f"\nBest found (trial {found[0].trial}), full-size layout:\n\n")
        out.append(arch_table(Arch.from_string(found[0].arch)))
    if search.reference is not None:
        out.append(f"\nReference ({target.paper.split(' (')[0]}), full-size layout:\n\n")
        out.append(arch_table(search.reference))
    return "".join(out)


def _findings(target: Target, search: RunData, baseline: RunData | None, k: int) -> list[tuple[Claim, dict[str, Any]]]:
    top = [Arch.from_string(r["arch"]) for r in search.top(k)]
    rand = [Arch.from_string(r["arch"]) for r in baseline.top(k)] if baseline is not None else []
    uniform = uniform_sample(search.space) if search.space is not None else []
    ref = [search.reference] if search.reference is not None else []
    out = []
    for claim in target.claims:
        def measure(archs: list[Arch], claim: Claim = claim) -> tuple[str, bool | None]:
            if not archs:
                return "–", None
            value = claim.value(archs)
            return claim.show(archs, value), (None if math.isnan(value) else claim.holds(archs, value))

        (top_text, holds), (rand_text, _), (uni_text, _), (ref_text, _) = (
            measure(top), measure(rand), measure(uniform), measure(ref))
        out.append((claim, {"top": top_text, "holds": bool(holds), "random": rand_text, "uniform": uni_text,
                            "luck": luck(claim, uniform, len(top)), "paper": ref_text}))
    return out


def luck(claim: Claim, uniform: Sequence[Arch], k: int, draws: int = 500, seed: int = 1) -> float:
    """How often `k` architectures drawn at random show the finding: a small top-k can show a
    pattern by chance, and this says how likely that is."""
    if not uniform or k < 1:
        return math.nan
    rng = random.Random(seed)
    hits = 0
    for _ in range(draws):
        subset = rng.sample(list(uniform), min(k, len(uniform)))
        value = claim.value(subset)
        hits += (not math.isnan(value)) and bool(claim.holds(subset, value))
    return hits / draws


def _findings_section(target: Target, findings: list[tuple[Claim, dict[str, Any]]], search: RunData, k: int) -> str:
    out = [f"\n## Do the paper's design findings reappear? (top {k} of {len(search.complete)} complete trials)\n\n"]
    out.append("Measured on the top trials by reward of the TPE search; \"random top\" is the same measure on the "
               "random baseline's top trials, \"uniform\" on 2,000 architectures drawn uniformly from the space "
               f"(what chance gives), \"paper\" on the published architecture. \"by luck\" is how often {k} "
               f"architectures drawn at random show the finding too: a finding counts as reappearing only when "
               f"that is below 5%.\n\n")
    rows = []
    for claim, m in findings:
        if not m["holds"]:
            verdict = "no"
        elif m["luck"] < 0.05:
            verdict = "yes"
        else:
            verdict = "only as often as by luck"
        rows.append([claim.text, m["paper"], m["top"], m["random"], m["uniform"], f"{m['luck']:.0%}", verdict])
    out.append(md_table(["finding", "paper", f"TPE top {k}", "random top", "uniform", "by luck", "reappears?"],
                        rows))
    out.append(_stage_agreement(search, k))
    out.append("\n![choices per stage](search/choices.png)\n")
    return "".join(out)


def _stage_agreement(search: RunData, k: int) -> str:
    top = [Arch.from_string(r["arch"]) for r in search.top(k)]
    if not top or search.reference is None:
        return ""
    rows = []
    matches = 0
    for i, per_field in enumerate(choice_frequencies(top)):
        row: list[Any] = [i + 1]
        paper = search.reference.stages[i] if i < len(search.reference.stages) else None
        for name in CHOICE_FIELDS:
            value, share = majority(per_field[name])
            want = getattr(paper, name) if paper is not None else None
            same = value == want
            matches += same
            row.append(f"{_choice(value, name)} {share:.0%} / {_choice(want, name)}" + (" ✓" if same else ""))
        rows.append(row)
    total = len(rows) * len(CHOICE_FIELDS)
    return (f"\nPer stage, the most frequent choice among the top {len(top)} (share) / the paper's choice; "
            f"{matches} of {total} agree:\n\n"
            + md_table(["stage", "operator", "kernel", "expansion", "SE"], rows))


def _choice(value: Any, name: str) -> str:
    if value is None:
        return "–"
    if name == "op":
        return OP_NAMES.get(value, value)
    if name == "kernel":
        return f"{value}×{value}"
    return f"{value:g}"


def _curves(search: RunData, baseline: RunData | None, objective: Objective | None) -> dict[str, Any]:
    tpe = best_by_trial(search.rows, objective)
    out: dict[str, Any] = {"tpe": tpe}
    if baseline is not None:
        rnd = best_by_trial(baseline.rows, objective)
        out["random"] = rnd
        common = min(search.finished(), baseline.finished())
        out["common"] = common
        out["tpe_at"] = best_after(*tpe, common)
        out["random_at"] = best_after(*rnd, common)
    return out


def _random_section(folder: Path, curves: dict[str, Any], search: RunData, baseline: RunData | None) -> str:
    out = ["\n## TPE vs random search\n\n"]
    named = {"TPE": curves["tpe"]}
    if "random" in curves:
        named["random"] = curves["random"]
    ref = search.reference_row
    plots.progress(folder / "search_vs_random.png", named, title="best reward so far (same reward scale)",
                   reference=ref["reward"] if ref else None, xlabel="trials finished")
    out.append("![search vs random](search_vs_random.png)\n")
    if "random" not in curves:
        return "".join(out) + "\nNo random baseline in this reproduction.\n"
    last = max(search.finished(), baseline.finished() if baseline else 0)
    marks = sorted(n for n in {10, 20, 50, 100, 200, 500, 1000, curves["common"], last} if 0 < n <= last)
    rows = []
    for n in marks:
        # a run that has not reached n trials has no "best after n"
        t = best_after(*curves["tpe"], n) if n <= search.finished() else None
        r = best_after(*curves["random"], n) if baseline is not None and n <= baseline.finished() else None
        rows.append([n, fmt(t), fmt(r), fmt(t - r) if t is not None and r is not None else "–"])
    out.append("\nBest reward among the first N trials. Each run's trial 0 is the reference, and TPE's first 10 "
               "trials are random draws from the same seeds as the baseline's, so the two start alike:\n\n")
    out.append(md_table(["N", "TPE", "random", "TPE − random"], rows))
    return "".join(out)


def _tau(retrained: list[Retrained]) -> tuple[float, int]:
    pairs = [(r.proxy_accuracy, r.first_seed_accuracy) for r in retrained
             if r.proxy_accuracy is not None and r.first_seed_accuracy is not None]
    if len(pairs) < 2:
        return math.nan, len(pairs)
    return kendall_tau([p for p, _ in pairs], [q for _, q in pairs]), len(pairs)


def _tau_section(folder: Path, retrained: list[Retrained], tau: float, n: int) -> str:
    out = ["\n## How well did the proxy rank architectures?\n\n"]
    points = [plots.Point(r.proxy_accuracy, r.first_seed_accuracy, label=f"{r.role} {r.trial}")
              for r in retrained if r.proxy_accuracy is not None and r.first_seed_accuracy is not None]
    plots.rank_scatter(folder / "proxy_vs_retrained.png", points, xlabel="proxy accuracy",
                       ylabel="retrained accuracy (first seed)", title=f"proxy vs retrained, Kendall tau {fmt(tau, 2)}")
    out.append(f"Kendall tau between proxy accuracy and retrained accuracy (first seed) over {n} architectures: "
               f"**{fmt(tau, 2)}** (1 = same order, 0 = unrelated). The architectures are the best found, the "
               f"reference and a few more spread over the proxy ranking.\n\n![proxy vs retrained]"
               f"(proxy_vs_retrained.png)\n")
    return "".join(out)


def _search_section(search: RunData) -> str:
    return ("\n## The search itself\n\n"
            "Full report of the search run: [search/report.md](search/report.md) (best architecture, Pareto front, "
            "failures, settings and versions); the baseline's: [random/report.md](random/report.md).\n\n"
            "![accuracy vs step time](search/accuracy_vs_step_time.png)\n")


__all__ = ["TARGETS", "Request", "run_reproduction", "write_reproduction_report", "is_reproduction"]
