"""The search against a plain PyTorch loop that trains exactly the candidates the search trained.

Part 1 runs a real Optuna search in-process (`nas.search.optuna_backend.search`, no pruning) into a
temporary run folder and times the `search()` call alone (the dataset is loaded before, as
`nas search` does). Part 2 reads that run's results.csv and trains every candidate, in trial
order, with a hand-written loop: the same proxy network (`space.proxy_arch` + `nas.model.build`
after `torch.manual_seed(seed)`), the same images (the `nas.training.data.load_dataset` split and the
seeded `max_train` subset), AdamW, warm-up + cosine learning rate, seeded batch order, epochs,
and the per-epoch BatchNorm recalibration + validation that `nas.training.proxy.proxy_train` does. The
loop uses plain PyTorch only: no nas.training.proxy, no Optuna, no files written.

Step time: nas scores each candidate with S, its full-size training step, summed from this
machine's per-part table (nas/measure/step_table.py; here in a temporary cache folder). To compare
orchestration and training rather than table filling, one untimed search fills the table first;
every timed search then finds it warm, as a user's second search does (it still re-times the
reference against the table, which the plain loop does not), and the plain loop looks S up in the
same table with `nas.measure.step_cost.step_cost` (a lookup, as a user's loop with a lookup table would
do). Parts timed during a timed search (table misses) are counted and printed.

On CUDA the plain loop is what one would write for a GPU: data on the device, bf16 autocast
(as nas picks by `nas.measure.precision.precision`), channels_last, cuDNN's defaults.

Rounds interleave search, plain, search, plain, ...; per round the two wall times and their
ratio are printed, then the median ratio (target <= 1.05) and how closely the plain loop's
validation accuracies match the search's (they should agree; a large difference means the plain
loop does not train the same thing).

    python benchmarks/vs_plain_loop.py [--budget 20] [--rounds 3] [--space v2] [--threads N] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import nas.search.optuna_backend as backend
from nas.measure.costs import StepTimeCache
from nas.measure.device import resolve_device, set_threads
from nas.measure.step_cost import step_cost
from nas.model import build
from nas.records.runs import RunDir
from nas.search.backend import OptunaOptions
from nas.spec.arch import Arch
from nas.spec.settings import SearchSettings
from nas.spec.space import SearchSpace
from nas.training.data import Dataset, load_dataset
from nas.training.proxy import ProxyRecipe


def say(text: str) -> None:
    print(text, flush=True)


# -- part 2: the plain loop ------------------------------------------------------------------
def lr_factor(step: int, total: int, warmup_fraction: float) -> float:
    """Linear warm-up, then cosine decay to zero (what nas.training.proxy.warmup_cosine's LambdaLR applies)."""
    warmup = max(1, int(total * warmup_fraction))
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def recalibrate_bn(model: nn.Module, images: torch.Tensor, batch: int = 256) -> None:
    """Exact BatchNorm statistics at the current weights (a running average lags after a few
    high-lr steps and eval-mode accuracy would be near chance)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    with torch.no_grad(), autocast(images.device):
        for start in range(0, len(images), batch):
            model(images[start : start + batch])
    for m, momentum in zip(norms, saved, strict=True):
        m.momentum = momentum


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 512) -> float:
    model.eval()
    correct = 0
    with torch.no_grad(), autocast(x.device):
        for start in range(0, len(x), batch):
            correct += int((model(x[start : start + batch]).argmax(1) == y[start : start + batch]).sum())
    return correct / max(1, len(x))


def autocast(device: torch.device):
    """bf16/fp16 autocast on CUDA in the precision nas picks; nothing on the CPU."""
    from contextlib import nullcontext

    from nas.measure.precision import precision

    dtype = precision(device).autocast
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def plain_train(model: nn.Module, train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor,
                val_y: torch.Tensor, *, epochs: int, batch: int, lr: float, weight_decay: float,
                warmup_fraction: float, seed: int) -> float:
    """Train on tensors already on the model's device; returns the last epoch's val accuracy."""
    torch.manual_seed(seed)  # dropout and drop-path draw from the global generator
    steps = max(1, len(train_x) // batch)  # the ragged last batch is dropped
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    shuffle = torch.Generator().manual_seed(seed)
    acc = 0.0
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(train_x), generator=shuffle).to(train_x.device)
        for step in range(steps):
            for group in optimizer.param_groups:
                group["lr"] = lr * lr_factor(epoch * steps + step, epochs * steps, warmup_fraction)
            idx = order[step * batch : (step + 1) * batch]
            with autocast(train_x.device):
                loss = F.cross_entropy(model(train_x[idx]).float(), train_y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        recalibrate_bn(model, train_x[order[:512]])  # per epoch, as nas does: it reports every epoch
        acc = accuracy(model, val_x, val_y)
    return acc


def plain_run(archs: list[str], settings: SearchSettings, data: Dataset,
              table: Path) -> tuple[list[float], list[float]]:
    """Look S up and train every candidate; returns the accuracies and S (ms) in order."""
    device = resolve_device(settings.device)
    recipe = ProxyRecipe.from_proxy(settings.proxy, settings.seed)
    train_x, train_y = data.train_x, data.train_y
    if recipe.max_train is not None and recipe.max_train < len(train_x):
        keep = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(recipe.seed))[: recipe.max_train]
        train_x, train_y = train_x[keep], train_y[keep]
    cache = StepTimeCache(table)  # the user's lookup table, loaded once
    shape = settings.timing_shape(device, data.num_classes)
    repeats, method = settings.measure.repeats(), settings.measure.method
    step_cost(settings.space.reference, shape, device, repeats, method, cache)  # S_ref, once
    accuracies, steps = [], []
    memory = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    train_x, train_y = train_x.to(device).contiguous(memory_format=memory), train_y.to(device)
    val_x, val_y = data.val_x.to(device).contiguous(memory_format=memory), data.val_y.to(device)
    for text in archs:
        arch = Arch.from_string(text)
        steps.append(step_cost(arch, shape, device, repeats, method, cache).median_ms)  # a lookup in the table
        torch.manual_seed(settings.seed)  # same initial weights as the search's candidate
        model = build(settings.space.proxy_arch(arch), num_classes=data.num_classes, in_channels=data.in_channels)
        accuracies.append(plain_train(model.to(device, memory_format=memory), train_x, train_y, val_x, val_y,
                                      epochs=recipe.epochs, batch=recipe.batch, lr=recipe.lr,
                                      weight_decay=recipe.weight_decay, warmup_fraction=recipe.warmup_fraction,
                                      seed=recipe.seed))
    return accuracies, steps


# -- part 1: the search ----------------------------------------------------------------------
def table_size(path: Path) -> int:
    return len(json.loads(path.read_text())) if path.is_file() else 0


def pinned_table(run: RunDir) -> Path:
    """The machine table generation the run timed in (nas.measure.step_table)."""
    return Path(json.loads((run.path / "step_table.json").read_text())["path"])


def run_search(folder: Path, settings: SearchSettings, budget: int) -> tuple[RunDir, float]:
    """A fresh run on this machine's table; returns it and the search() wall time."""
    run = RunDir(folder)
    run.start({"budget": budget, **settings.to_dict()}, "", resume=False)
    start = time.perf_counter()
    backend.search(run, settings, budget, OptunaOptions())
    return run, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--space", default="v2")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: as nas search picks)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    args = parser.parse_args()
    if args.threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # nas's set_threads honours this cap
    threads = set_threads(1)  # what search() will pick; the plain loop runs with the same
    settings = SearchSettings(space=SearchSpace.load(args.space), pruner="none", device=args.device)
    data = load_dataset(settings.dataset, resolution=settings.proxy.resolution, val_fraction=settings.val_fraction,
                        seed=settings.seed)  # as `nas search` does, before the search
    recipe = ProxyRecipe.from_proxy(settings.proxy, settings.seed)
    used = min(len(data.train_y), recipe.max_train or len(data.train_y))
    say(f"torch {torch.__version__}")
    say(f"threads {threads}")
    say(f"device {resolve_device(settings.device)}")
    say(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    say(f"space {settings.space.name}, budget {args.budget}, rounds {args.rounds}, pruner none")
    say(f"data {data.describe()}; {used} train images per candidate, batch {recipe.batch}, {recipe.epochs} epochs, "
        f"AdamW lr {recipe.lr} wd {recipe.weight_decay}, warm-up + cosine")

    ratios: list[float] = []
    diffs: list[float] = []
    step_diffs: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["NAS_CACHE_DIR"] = str(Path(tmp) / "cache")  # a table of this benchmark's own
        start = time.perf_counter()
        warm, _ = run_search(Path(tmp) / "warm", settings, args.budget)
        table = pinned_table(warm)
        say(f"step-time table: filled by an untimed search in {time.perf_counter() - start:.1f} s "
            f"({table_size(table)} entries); every timed search finds it warm, the plain loop looks S up in it")
        for r in range(1, args.rounds + 1):
            before = table_size(table)
            run, search_s = run_search(Path(tmp) / f"round{r}", settings, args.budget)
            # a drifted reference moves the run to a fresh generation: then every part it used was timed
            misses = table_size(pinned_table(run)) - (before if pinned_table(run) == table else 0)
            rows = [row for row in run.read_results() if row["state"] != "FAIL"]
            start = time.perf_counter()
            archs = [row["arch"] for row in rows]
            plain_acc, plain_steps = plain_run(archs, settings, data, pinned_table(run))
            plain_s = time.perf_counter() - start
            ratios.append(search_s / plain_s)
            diffs += [abs(float(row["accuracy"]) - acc) for row, acc in zip(rows, plain_acc, strict=True)]
            step_diffs += [abs(s / float(row["step_ms"]) - 1) for row, s in zip(rows, plain_steps, strict=True)]
            failed = args.budget - len(rows)
            say(f"round {r}: search {search_s:.2f} s, plain loop {plain_s:.2f} s, ratio {search_s / plain_s:.3f} "
                f"({len(rows)} candidates, {failed} failed, {misses} parts timed in the timed search)")
    say(f"median ratio search/plain: {statistics.median(ratios):.3f} (target <= 1.05)")
    say(f"accuracy agreement: max |nas - plain| = {max(diffs, default=0.0):.4f} over {len(diffs)} candidates, "
        f"{sum(d > 0 for d in diffs)} differ")
    say(f"step-time agreement: max |S_plain / S_nas - 1| = {max(step_diffs, default=0.0):.2e}")
    say(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
