"""The one-shot device check: one line per figure, on CUDA (the GPU box) or on the CPU (here).

    python benchmarks/gpu/check.py --device cuda [--only search,libraries,gate,memory] [--json out.json]

Figures (benchmarks/gpu/check.sh runs this after `pytest -m cuda`):
- search:    the card's search, `nas search --space v2 --budget B --device DEV` on the embedded
             mnist5k, cold (an empty step-time table) and warm (a second run on the filled table):
             wall time, s/trial and trials/min of each;
- workers:   the warm search with --workers 1, 2, 4 (and 8 on a GPU): trials/min, ratio to one
             worker, peak GPU memory per worker (nvidia-smi);
- plain:     benchmarks/vs_plain_loop.py on this device: the search vs a plain PyTorch loop
             training the same candidates (per trial ratio, target <= 1.2 on a GPU);
- batch:     the reference's training img/s at batch 32, 64, 128, 256 at the space's resolution,
             and the smallest batch within 10% of the best (the GPU timing batch to use);
- fidelity:  benchmarks/cost_fidelity.py on this device (Spearman of S vs whole steps, >= 30
             candidates; the reference's S against its whole step);
- libraries: our EfficientNetV2-S training step vs torchvision `efficientnet_v2_s` and timm
             `tf_efficientnetv2_s`: same step function (nas.measure.step.train_step: optimizer, precision,
             memory format), batch and resolution; img/s of each and ours / theirs (goal >= 1.0);
- gate:      one candidate's step time alone vs while another trial trains on the same device
             (with the gate: goal within 10%; without it, for comparison), and what the gate costs
             that training (its per-step synchronisation on CUDA);
- memory:    peak device memory of a proxy trial (training, and the full-size step timing).
A figure that fails prints one FAILED line and the others go on; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import multiprocessing as mp
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from torch import nn  # noqa: E402

FIGURES = ("search", "workers", "plain", "batch", "fidelity", "libraries", "gate", "memory")
QUICK = ("search", "workers", "plain", "batch", "gate")
figures: dict[str, Any] = {}


def say(figure: str, text: str, **values: Any) -> None:
    """Print one figure line and keep its values for --json."""
    print(f"{figure}: {text}", flush=True)
    figures[figure] = {"line": text, **values}


# -- search ----------------------------------------------------------------------------------
def _search(device: str, budget: int, runs: str, name: str, cache: str, workers: int = 1) -> tuple[float, dict]:
    """One `nas search` of the card on the embedded mnist5k; (wall seconds, summary)."""
    command = [sys.executable, "-m", "nas", "search", "--space", "v2", "--budget", str(budget), "--device", device,
               "--runs-dir", runs, "--name", name, "--cache-dir", cache, "--workers", str(workers), "--quiet"]
    sampler = _GpuMemorySampler() if device.startswith("cuda") else None
    start = time.perf_counter()
    with sampler or contextlib.nullcontext():
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"nas search exited {done.returncode}: {done.stderr.strip()[-1500:]}")
    with open(Path(runs) / name / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    states = {s: sum(r["state"] == s for r in rows) for s in sorted({r["state"] for r in rows})}
    rewards = [float(r["reward"]) for r in rows if r.get("reward") not in (None, "", "nan")]
    record = json.loads((Path(runs) / name / "step_table.json").read_text())
    return wall, {"trials": len(rows), "states": states, "best_reward": max(rewards) if rewards else math.nan,
                  "per_minute": len(rows) / wall * 60, "table_entries_at_start": record["entries_at_start"],
                  "gpu_mib_peak": sampler.peak_mib if sampler else None}


class _GpuMemorySampler:
    """Peak of the summed per-process GPU memory (nvidia-smi) while a search runs."""

    def __init__(self) -> None:
        self.peak_mib = 0.0
        self._stop = False

    def __enter__(self) -> _GpuMemorySampler:
        import threading

        def poll() -> None:
            while not self._stop:
                try:
                    out = subprocess.run(["nvidia-smi", "--query-compute-apps=used_memory",
                                          "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=10)
                    used = sum(float(x) for x in out.stdout.split() if x.strip())
                    self.peak_mib = max(self.peak_mib, used)
                except (OSError, ValueError, subprocess.TimeoutExpired):
                    return
                time.sleep(0.5)

        self._thread = threading.Thread(target=poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        self._thread.join(15)


def check_search(device: str, budget: int, cache: str) -> None:
    with tempfile.TemporaryDirectory(prefix="nas-check-") as runs:
        for kind in ("cold", "warm"):
            wall, info = _search(device, budget, runs, kind, cache)
            say(f"search v2 mnist5k budget {budget} {kind} ({device})",
                f"{wall:.1f} s wall, {wall / max(1, info['trials']):.2f} s/trial, {info['per_minute']:.1f} trials/min, "
                f"{', '.join(f'{n} {s}' for s, n in info['states'].items())}, best reward {info['best_reward']:.4f}, "
                f"table entries at start {info['table_entries_at_start']}", wall_s=wall, **info)


def check_workers(device: str, budget: int, cache: str, counts: tuple[int, ...]) -> None:
    """Trials per minute with N workers on one device, the table warm (check_search filled it)."""
    base = None
    with tempfile.TemporaryDirectory(prefix="nas-check-") as runs:
        _search(device, 2, runs, "fill", cache)  # the table and imports warm, whatever ran before
        for n in counts:
            wall, info = _search(device, budget, runs, f"workers{n}", cache, workers=n)
            base = base or info["per_minute"]
            memory = (f", GPU memory peak {info['gpu_mib_peak']:.0f} MiB ({info['gpu_mib_peak'] / n:.0f} per worker)"
                      if info["gpu_mib_peak"] else "")
            say(f"workers {n} ({device})", f"{info['per_minute']:.1f} trials/min ({info['per_minute'] / base:.2f}x one "
                f"worker), {info['trials']} trials in {wall:.1f} s{memory}", workers=n, wall_s=wall, **info)


def _script_lines(script: str, args: list[str], keep: tuple[str, ...]) -> list[str]:
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args], cwd=REPO, capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{script} exited {done.returncode}: {done.stderr.strip()[-1500:]}")
    return [line for line in done.stdout.splitlines() if line.startswith(keep)]


def check_plain(device: str, budget: int) -> None:
    lines = _script_lines("vs_plain_loop.py", ["--device", device, "--budget", str(budget), "--rounds", "1",
                                               "--space", "v2"], ("round", "median ratio", "accuracy agreement"))
    say(f"vs plain loop v2 budget {budget} ({device})", " | ".join(lines), lines=lines)


def check_batch(device: torch.device, resolution: int, batches: tuple[int, ...] = (32, 64, 128, 256)) -> None:
    """The reference's training throughput per batch; the timing batch: the smallest within 10% of the best."""
    from nas.measure.costs import Repeats, measure_step_time
    from nas.spec.space import SearchSpace

    reference = SearchSpace.load("v2").reference
    rates: dict[int, float] = {}
    for batch in batches:
        model = build_model(reference)
        try:
            step = measure_step_time(model, batch=batch, resolution=resolution, in_channels=3, num_classes=10,
                                     device=device, repeats=Repeats(warmup=2, steps=5, max_steps=5, target_spread=0.0))
            rates[batch] = batch / step.median_ms * 1000
        except torch.OutOfMemoryError:
            break
    best = max(rates.values())
    pick = min(b for b, r in rates.items() if r >= 0.9 * best)
    say(f"timing batch ({device}, {resolution} px)",
        ", ".join(f"batch {b}: {r:.0f} img/s" for b, r in rates.items()) + f"; smallest within 10% of the best: {pick}",
        rates=rates, pick=pick)


def build_model(arch: Any) -> nn.Module:
    from nas.model import build

    return build(arch, num_classes=10, in_channels=3)


def check_fidelity(device: str, archs: int) -> None:
    lines = _script_lines("cost_fidelity.py", ["--device", device, "--archs", str(archs), "--skip-before"],
                          ("S now, medians (table 1)", "reference:", "repeatability of medians", "cost:"))
    say(f"cost fidelity v2, {archs} candidates + reference ({device})", " | ".join(lines), lines=lines)


# -- libraries -------------------------------------------------------------------------------
def _step(model: nn.Module, device: torch.device, batch: int, resolution: int) -> float:
    """Median ms of one training step (nas's timer and step; 1000 classes, 3 channels)."""
    from nas.measure.costs import Repeats, measure_step_time

    return measure_step_time(model, batch=batch, resolution=resolution, in_channels=3, num_classes=1000,
                             device=device, repeats=Repeats()).median_ms


def _library_models() -> Iterator[tuple[str, Callable[[], nn.Module] | None, str]]:
    """(name, factory or None, why absent) for the two published implementations."""
    try:
        import torchvision.models as tvm

        yield "torchvision efficientnet_v2_s", lambda: tvm.efficientnet_v2_s(weights=None), ""
    except Exception as exc:  # absent, or a wheel built against another torch
        yield "torchvision efficientnet_v2_s", None, f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
    try:
        import timm

        # drop path 0.2 and dropout 0.2 as ours and torchvision's (timm's defaults are 0)
        yield ("timm tf_efficientnetv2_s",
               lambda: timm.create_model("tf_efficientnetv2_s", pretrained=False, drop_rate=0.2, drop_path_rate=0.2),
               "")
    except Exception as exc:
        yield "timm tf_efficientnetv2_s", None, f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"


def check_libraries(device: torch.device, batch: int, resolution: int) -> None:
    from nas.measure.costs import count_params
    from nas.measure.precision import precision
    from nas.model import build
    from nas.spec.resources import load_arch

    shape = f"batch {batch}, {resolution} px, {precision(device).name}, " + (
        "channels_last" if device.type == "cuda" else "channels-first")
    torch.manual_seed(0)
    ours = build(load_arch("efficientnetv2-s"), num_classes=1000, in_channels=3)
    ours_ms = _step(ours, device, batch, resolution)
    say("EfficientNetV2-S ours", f"{batch / ours_ms * 1000:.1f} img/s ({ours_ms:.1f} ms/step, "
        f"{count_params(ours) / 1e6:.2f} M params; {shape})", ms=ours_ms, params=count_params(ours))
    del ours
    for name, factory, why in _library_models():
        if factory is None:
            say(f"EfficientNetV2-S {name}", f"skipped: not importable here ({why})", absent=True)
            continue
        model = factory()
        theirs_ms = _step(model, device, batch, resolution)
        say(f"EfficientNetV2-S {name}",
            f"{batch / theirs_ms * 1000:.1f} img/s ({theirs_ms:.1f} ms/step, {count_params(model) / 1e6:.2f} M "
            f"params); ours / theirs throughput {theirs_ms / ours_ms:.3f} (goal >= 1.0)",
            ms=theirs_ms, ratio=theirs_ms / ours_ms, params=count_params(model))
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()


# -- gate ------------------------------------------------------------------------------------
def _trainer(device_spec: str, gated: bool, training: Any, stop: Any) -> None:
    """Another trial: proxy-trains the v2 reference's proxy on synthetic data until `stop`."""
    sys.path.insert(0, str(REPO))
    import nas.training.proxy
    from nas.measure.device import resolve_device
    from nas.model import build
    from nas.spec.space import SearchSpace
    from nas.training.data import load_dataset

    if not gated:
        nas.training.proxy.shared_device = lambda device: contextlib.nullcontext()
    device = resolve_device(device_spec)
    space = SearchSpace.load("v2")
    data = load_dataset("synthetic", resolution=space.proxy.resolution)
    model = build(space.proxy_arch(space.reference), num_classes=data.num_classes, in_channels=data.in_channels)

    def on_epoch(epoch: int, accuracy: float) -> bool:
        training.set()  # trains steadily from its second epoch on
        return not stop.is_set()

    # short epochs: `stop` is looked at between epochs
    recipe = nas.training.proxy.ProxyRecipe.from_proxy(
        replace(space.proxy, epochs=100_000, max_train=4 * space.proxy.batch))
    nas.training.proxy.proxy_train(model, data, recipe, device, on_epoch=on_epoch)


def _with_trainer(device: torch.device, gated: bool, measure: Callable[[], float]) -> float:
    ctx = mp.get_context("spawn")
    training, stop = ctx.Event(), ctx.Event()
    child = ctx.Process(target=_trainer, args=(str(device), gated, training, stop), daemon=True)
    child.start()
    try:
        if not training.wait(600):
            raise RuntimeError("the training trial did not start within 600 s")
        return measure()
    finally:
        stop.set()
        child.join(600)
        if child.is_alive():
            child.kill()


def _proxy_training_seconds(device: torch.device, gated: bool, epochs: int,
                            max_train: int | None = None) -> tuple[float, int]:
    """Seconds in training steps (and steps) of a proxy training here, with or without the gate."""
    import nas.training.proxy
    from nas.model import build
    from nas.spec.space import SearchSpace
    from nas.training.data import load_dataset

    space = SearchSpace.load("v2")
    data = load_dataset("synthetic", resolution=space.proxy.resolution)
    torch.manual_seed(0)
    model = build(space.proxy_arch(space.reference), num_classes=data.num_classes, in_channels=data.in_channels)
    real = nas.training.proxy.shared_device
    if not gated:
        nas.training.proxy.shared_device = lambda device: contextlib.nullcontext()
    try:
        recipe = nas.training.proxy.ProxyRecipe.from_proxy(replace(space.proxy, epochs=epochs, max_train=max_train))
        outcome = nas.training.proxy.proxy_train(model, data, recipe, device)
    finally:
        nas.training.proxy.shared_device = real
    return outcome.step_seconds, outcome.steps


def check_gate(device: torch.device) -> None:
    from nas.measure.costs import Repeats, measure_step_time
    from nas.model import build
    from nas.spec.settings import SearchSettings
    from nas.spec.space import SearchSpace

    space = SearchSpace.load("v2")
    shape = SearchSettings(space=space).timing_shape(device, num_classes=10)
    torch.manual_seed(0)
    candidate = build(space.reference, num_classes=shape.num_classes, in_channels=shape.in_channels)

    def measure() -> float:
        return measure_step_time(candidate, batch=shape.batch, resolution=shape.resolution,
                                 in_channels=shape.in_channels, num_classes=shape.num_classes, device=device,
                                 repeats=Repeats()).median_ms

    alone = measure()
    gated = _with_trainer(device, True, measure)
    ungated = _with_trainer(device, False, measure)
    alone_after = measure()
    base = (alone + alone_after) / 2  # before and after: drift of a shared machine cancels
    say("gate: candidate step alone vs beside a training trial",
        f"alone {base:.1f} ms ({alone:.1f} before, {alone_after:.1f} after), with the gate {gated:.1f} ms "
        f"(x{gated / base:.3f}, goal within 10%), without it {ungated:.1f} ms (x{ungated / base:.3f}); "
        f"v2 reference at {shape.describe()}",
        alone_ms=base, gated_ms=gated, ungated_ms=ungated, gated_ratio=gated / base, ungated_ratio=ungated / base)

    # shorter on a CPU, where the gate costs only its flock calls
    epochs, max_train = (2, None) if device.type == "cuda" else (1, 8 * space.proxy.batch)
    _proxy_training_seconds(device, True, 1, max_train)  # warm: allocator, autotuning, kernels
    rounds = [(_proxy_training_seconds(device, True, epochs, max_train),
               _proxy_training_seconds(device, False, epochs, max_train)) for _ in range(2)]
    gated_s = sum(g[0] for g, _ in rounds) / sum(g[1] for g, _ in rounds)
    ungated_s = sum(u[0] for _, u in rounds) / sum(u[1] for _, u in rounds)
    say("gate: its cost on a proxy training",
        f"{gated_s * 1000:.2f} ms/step gated vs {ungated_s * 1000:.2f} ms/step without the gate "
        f"(x{gated_s / ungated_s:.3f}; on CUDA the gate synchronises every step)",
        gated_ms=gated_s * 1000, ungated_ms=ungated_s * 1000, ratio=gated_s / ungated_s)


# -- memory ----------------------------------------------------------------------------------
def check_memory(device: torch.device) -> None:
    from nas.measure.costs import Repeats, measure_step_time
    from nas.model import build
    from nas.spec.settings import SearchSettings
    from nas.spec.space import SearchSpace
    from nas.training.data import load_dataset
    from nas.training.proxy import ProxyRecipe, proxy_train

    space = SearchSpace.load("v2")
    settings = SearchSettings(space=space, dataset="synthetic")
    data = load_dataset("synthetic", resolution=space.proxy.resolution)
    torch.manual_seed(0)
    model = build(space.proxy_arch(space.reference), num_classes=data.num_classes, in_channels=data.in_channels)
    if device.type != "cuda":
        proxy_train(model, data, ProxyRecipe.from_proxy(settings.proxy, settings.seed), device)
        rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        say("peak memory of a proxy trial", f"n/a (cpu); this process's max RSS {rss_mib:.0f} MiB", rss_mib=rss_mib)
        return
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    proxy_train(model, data, ProxyRecipe.from_proxy(settings.proxy, settings.seed), device)
    training_mib = torch.cuda.max_memory_allocated(device) / 2**20
    del model
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    shape = settings.timing_shape(device, data.num_classes)
    full = build(space.reference, num_classes=shape.num_classes, in_channels=shape.in_channels)
    measure_step_time(full, batch=shape.batch, resolution=shape.resolution, in_channels=shape.in_channels,
                      num_classes=shape.num_classes, device=device, repeats=Repeats(warmup=1, steps=2, max_steps=2))
    timing_mib = torch.cuda.max_memory_allocated(device) / 2**20
    say("peak memory of a proxy trial",
        f"{training_mib:.0f} MiB proxy training (v2 reference's proxy, batch {space.proxy.batch}, "
        f"{space.proxy.resolution} px), {timing_mib:.0f} MiB timing its full-size step ({shape.describe()}); "
        f"torch.cuda.max_memory_allocated",
        training_mib=training_mib, timing_mib=timing_mib)


# -- main ------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--only", default=",".join(FIGURES), help=f"comma-separated subset of {','.join(FIGURES)}")
    parser.add_argument("--budget", type=int, help="trials of each search figure (default 200 on CUDA, 40 with "
                        "--quick; 4 on CPU: there the cold table takes minutes)")
    parser.add_argument("--batch", type=int, help="batch of the library comparison (default 64 on CUDA, 4 on CPU)")
    parser.add_argument("--resolution", type=int, help="its image size (default 300 on CUDA, 32 on CPU)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--quick", action="store_true",
                        help=f"a short check: {','.join(QUICK)} only, smaller budgets")
    args = parser.parse_args(argv)
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    if args.quick and args.only == ",".join(FIGURES):
        only = list(QUICK)
    unknown = sorted(set(only) - set(FIGURES))
    if unknown:
        parser.error(f"--only must name figures of {list(FIGURES)}, but got {unknown}")

    # Gate files of the check's own (its children inherit TMPDIR): other nas processes on this
    # machine, e.g. a test that freezes a trainer mid-step, must not hold its measurements up.
    private = tempfile.mkdtemp(prefix="nas-check-gate-")
    os.environ["TMPDIR"] = private
    tempfile.tempdir = None
    try:
        return _check(args, only)
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _check(args: argparse.Namespace, only: list[str]) -> int:

    from nas.measure.device import device_name, resolve_device, set_threads
    from nas.measure.precision import precision

    device = resolve_device(args.device)
    if device.type == "cpu":
        set_threads()
    cuda = device.type == "cuda"
    budget = args.budget or ((40 if args.quick else 200) if cuda else 4)
    cache = tempfile.mkdtemp(prefix="nas-check-cache-")  # an empty table: the cold search fills it
    batch = args.batch or (64 if cuda else 4)
    resolution = args.resolution or (300 if cuda else 32)
    say("device", f"{device_name(device)} ({device}), torch {torch.__version__}, precision {precision(device).name}"
        + (f", CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}" if cuda else ""),
        model=device_name(device))
    worker_counts = (1, 2, 4, 8) if cuda else (1, 2)
    worker_budget = (16 if args.quick else 32) if cuda else 4
    runs = {"search": lambda: check_search(str(device), budget, cache),
            "workers": lambda: check_workers(str(device), worker_budget, cache, worker_counts),
            "plain": lambda: check_plain(str(device), 12 if cuda else 4),
            "batch": lambda: check_batch(device, 384 if cuda else 64, (32, 64, 128, 256) if cuda else (8, 16)),
            "fidelity": lambda: check_fidelity(str(device), 30 if cuda else 4),
            "libraries": lambda: check_libraries(device, batch, resolution),
            "gate": lambda: check_gate(device),
            "memory": lambda: check_memory(device)}
    failed = 0
    for name in only:
        start = time.perf_counter()
        try:
            runs[name]()
        except Exception as exc:
            failed += 1
            say(f"{name}", f"FAILED: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                failed=True)
            traceback.print_exc(file=sys.stderr)
        print(f"  ({name}: {time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    shutil.rmtree(cache, ignore_errors=True)
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.exit(main())
