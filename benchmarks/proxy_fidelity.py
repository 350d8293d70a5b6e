"""Proxy fidelity: does the brief proxy training rank architectures like longer training does?

Architectures spread over a space (its reference plus a seeded Latin-hypercube-like draw: every
option of every choice appears about equally often) are each trained twice through the trial
code path a search uses (`nas.search.trial.evaluate`): once with the space's proxy (optionally
overridden), once with the same proxy network trained `--epochs-factor` times the epochs (or
`--long-epochs`) on the whole training split. Printed: a line per training as it finishes, a
line per architecture, then Kendall's tau and
Spearman's rho between proxy and long accuracy (with p-values and a bootstrap interval of tau,
all from `scipy.stats`), the training time of the proxy against the long one, the time of a
whole proxy trial and what 200 of them would take.

    python benchmarks/proxy_fidelity.py [--archs 20] [--epochs-factor 4 | --long-epochs L] [--long-seeds S]
        [--proxy-epochs E] [--max-train N] [--resolution R] [--threads T] [--shard K/N] [--out FILE]

The ground truth is the mean long accuracy over `--long-seeds` training seeds (same split;
default 2), and the tau of one long seed against another is printed: the ground truth's own
repeatability. On v2 with mnist5k the 20 long accuracies span only ~1.5 points, and one long
run ranks them like another at tau 0.24, so a single long run is too noisy a reference.

Each training is appended to `--out` (JSON lines) as it finishes and skipped when run again
with the same settings and network, so a killed run resumes; a long training is shared by proxy
variants with the same long settings. Accuracies do not depend on machine load; times do, and
more than in proportion when another process trains on the same cores (the load average is
printed and stored with each result).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from nas.measure.costs import StepTimeCache
from nas.measure.device import resolve_device
from nas.report.stats import kendall_tau, kendall_tau_interval, spearman
from nas.search.trial import evaluate, prepare_candidate
from nas.spec.arch import Arch
from nas.spec.settings import SearchSettings
from nas.spec.space import SearchSpace
from nas.training.data import Dataset, load_dataset

TARGET_TAU, TARGET_P = 0.6, 0.01
SEARCH_TRIALS = 200  # the card's `nas search --budget 200`


class LatinChooser:
    """A trial-like object: architecture i of n takes, for each choice, entry i of a seeded shuffle
    in which every option appears n / len(options) times (rounded), so n draws cover the space evenly."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.index = n, 0
        self.rng = random.Random(seed)
        self.columns: dict[str, list[Any]] = {}

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any:
        if name not in self.columns:
            column = [choices[i * len(choices) // self.n] for i in range(self.n)]
            self.rng.shuffle(column)
            self.columns[name] = column
        return self.columns[name][self.index]


def spread_archs(space: SearchSpace, n: int, seed: int) -> list[Arch]:
    """The space's reference and n - 1 distinct architectures drawn evenly over its choices."""
    chooser = LatinChooser(n - 1, seed)
    archs = [space.reference]
    for i in range(n - 1):
        chooser.index = i
        arch = space.sample(chooser)
        if all(arch.to_string() != a.to_string() for a in archs):
            archs.append(arch)
    return archs


def training_key(arch: Arch, settings: SearchSettings, data: Dataset, cache: StepTimeCache) -> str:
    """What decides a training's accuracy: the architecture, the proxy's settings and the network
    trained for it (a digest of its parameter shapes, so that records made before a change to how
    proxy networks are derived are not reused)."""
    model = prepare_candidate(arch, settings, data, resolve_device(settings.device), cache).model
    shapes = repr([(name, tuple(p.shape)) for name, p in model.named_parameters()])
    return json.dumps({"arch": arch.to_string(), "proxy": asdict(settings.proxy), "dataset": settings.dataset,
                       "seed": settings.seed, "network": hashlib.sha1(shapes.encode()).hexdigest()[:12],
                       # the order of float sums moves a brief training's accuracy more than one
                       # would think (seen: 0.809 vs 0.828 for one network at 2 vs 1 threads)
                       "threads": torch.get_num_threads()},
                      sort_keys=True)


def load_done(path: Path) -> dict[str, dict[str, Any]]:
    done: dict[str, dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():  # a run killed mid-write leaves at most a partial last line
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                done[record["key"]] = record
    return done


def train(arch: Arch, settings: SearchSettings, data: Dataset, key: str, out: Path,
          cache: StepTimeCache) -> dict[str, Any]:
    """One `evaluate` of `arch` under `settings`, appended to `out` as it finishes."""
    start = time.perf_counter()
    result = evaluate(arch, settings, data, resolve_device(settings.device), cache=cache)
    # training and cost measurement apart: only the training depends on the proxy
    record = {"key": key, "accuracy": result.accuracy, "seconds": time.perf_counter() - start,
              "train_seconds": result.train_seconds, "measure_seconds": result.measure_seconds,
              "epochs": result.epochs, "load": os.getloadavg()[0]}
    with out.open("a") as handle:
        handle.write(json.dumps(record) + "\n")
    return record


def wait_for(keys: list[str], out: Path, poll_s: float = 30.0) -> dict[str, dict[str, Any]]:
    """The records of `keys`, once every shard has written its share."""
    while True:
        done = load_done(out)
        missing = sum(key not in done for key in keys)
        if not missing:
            return done
        print(f"waiting for {missing} trainings of other shards", flush=True)
        time.sleep(poll_s)


def shard(text: str) -> tuple[int, int]:
    index, _, count = text.partition("/")
    if not (index.isdigit() and count.isdigit() and int(index) < int(count)):
        raise argparse.ArgumentTypeError(f"--shard must be K/N with 0 <= K < N, but got {text!r}")
    return int(index), int(count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--space", default="v2")
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--archs", type=int, default=20, help="architectures, the reference included")
    parser.add_argument("--seed", type=int, default=0, help="seed of the architecture draw")
    parser.add_argument("--epochs-factor", type=int, default=4, help="long training: this many times the epochs")
    parser.add_argument("--long-epochs", type=int,
                        help="long training epochs (default: --epochs-factor x the proxy's); proxy variants with "
                             "the same long epochs and resolution share the long trainings")
    # one long run is a noisy truth: on v2/mnist5k two seeds of it agree at tau 0.24 only
    parser.add_argument("--long-seeds", type=int, default=2,
                        help="training seeds of the long training; their mean accuracy is the ground truth")
    parser.add_argument("--proxy-epochs", type=int, help="override the space's proxy epochs")
    parser.add_argument("--max-train", type=int, help="override the space's proxy training images")
    parser.add_argument("--resolution", type=int, help="override the space's proxy resolution (long training too)")
    parser.add_argument("--threads", type=int, help="torch threads (1 trains faster beside other work on the cores)")
    parser.add_argument("--shard", type=shard, default=(0, 1),
                        help="K/N: train every N-th job from the K-th (N processes with the same --out share the work)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/nas_proxy_fidelity.jsonl"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.archs < 3:
        parser.error(f"--archs must be at least 3, but got {args.archs}")
    if args.long_seeds < 1:
        parser.error(f"--long-seeds must be at least 1, but got {args.long_seeds}")

    base = SearchSettings(space=SearchSpace.load(args.space), dataset=args.dataset, device="cpu")
    proxy = base.with_overrides(epochs=args.proxy_epochs, max_train=args.max_train, resolution=args.resolution)
    p = proxy.proxy
    data = load_dataset(proxy.dataset, resolution=p.resolution, val_fraction=proxy.val_fraction, seed=proxy.seed)
    train_size = len(data.train_x)
    # max_train = the whole split trains on every image (with_overrides keeps the space's value for None)
    long = proxy.with_overrides(epochs=args.long_epochs or args.epochs_factor * p.epochs, max_train=train_size)
    archs = spread_archs(proxy.space, args.archs, args.seed)
    lp = long.proxy
    print(f"{args.space}: {len(archs)} architectures (seed {args.seed}) on {args.dataset}; "
          f"proxy {p.epochs} epochs x {min(p.max_train or train_size, train_size)} images at {p.resolution} px; "
          f"long {lp.epochs} epochs ({lp.epochs / p.epochs:g}x) x {train_size} images; "
          f"{torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores); "
          f"results in {args.out}", flush=True)
    # step times cached across trials and runs, as a search caches them in its run folder
    cache = StepTimeCache(args.out.with_name(args.out.stem + ".step_times.json"))
    # the long trainings' seeds vary weights and data order, not the split (data is loaded once)
    longs = [replace(long, seed=proxy.seed + n) for n in range(args.long_seeds)]
    stages = [("proxy", proxy)] + [(f"long{n}", settings) for n, settings in enumerate(longs)]
    # every proxy training first, so a run cut short still has the cheap half
    jobs = [(kind, settings, i) for kind, settings in stages for i in range(len(archs))]
    keys = {(kind, i): training_key(archs[i], settings, data, cache) for kind, settings, i in jobs}
    index, count = args.shard
    for kind, settings, i in jobs[index::count]:
        if keys[(kind, i)] in load_done(args.out):  # from an earlier run, or another shard
            continue
        record = train(archs[i], settings, data, keys[(kind, i)], args.out, cache)
        print(f"{kind:>5} {i:>3}: accuracy {record['accuracy']:.4f}, training {record['train_seconds']:.1f} s, "
              f"trial {record['seconds']:.1f} s, load {record['load']:.1f}", flush=True)

    done = wait_for(list(keys.values()), args.out)
    runs = {kind: [done[keys[(kind, i)]] for i in range(len(archs))] for kind, _ in stages}
    acc = {kind: [r["accuracy"] for r in records] for kind, records in runs.items()}
    long_kinds = [kind for kind, _ in stages[1:]]
    long_acc = [statistics.fmean(acc[kind][i] for kind in long_kinds) for i in range(len(archs))]
    print(f"{'#':>3} {'proxy acc':>9} {'long acc':>9} {'proxy s':>8} {'train s':>8}  long accs  arch")
    for i, arch in enumerate(archs):
        short = runs["proxy"][i]
        print(f"{i:>3} {short['accuracy']:>9.4f} {long_acc[i]:>9.4f} {short['seconds']:>8.1f} "
              f"{short['train_seconds']:>8.1f}  {' '.join(f'{acc[k][i]:.3f}' for k in long_kinds)}  "
              f"{arch.name or arch.to_string()}")

    tau, rho = kendall_tau(acc["proxy"], long_acc), spearman(acc["proxy"], long_acc)
    low, high = kendall_tau_interval(acc["proxy"], long_acc)
    met = "met" if tau.significant(TARGET_P, at_least=TARGET_TAU) else "NOT met"
    seeds = f"mean of {len(long_kinds)} training seeds" if len(long_kinds) > 1 else "one training seed"
    print(f"proxy vs long ({seeds}) over {len(archs)} architectures: Kendall tau {tau.statistic:.3f} "
          f"(p = {tau.pvalue:.2g}, bootstrap 95% CI {low:.2f}..{high:.2f}), Spearman {rho.statistic:.3f} "
          f"(p = {rho.pvalue:.2g}); target tau >= {TARGET_TAU} with p < {TARGET_P}: {met}")
    if len(long_kinds) > 1:
        # how far the ground truth itself moves with the seed: about the best any proxy can show
        again, again_rho = kendall_tau(acc["long0"], acc["long1"]), spearman(acc["long0"], acc["long1"])
        singles = ", ".join(f"{t.statistic:.3f} (p = {t.pvalue:.2g})"
                            for t in (kendall_tau(acc["proxy"], acc[kind]) for kind in long_kinds))
        print(f"long vs long with another training seed: Kendall tau {again.statistic:.3f} (p = {again.pvalue:.2g}), "
              f"Spearman {again_rho.statistic:.3f}; proxy vs each seed's long alone: tau {singles}")
    proxy_train = statistics.median(r["train_seconds"] for r in runs["proxy"])
    long_train = statistics.median(r["train_seconds"] for r in runs["long0"])
    proxy_s = statistics.median(r["seconds"] for r in runs["proxy"])  # median: the first pays the warm-ups
    proxy_load = statistics.median(r["load"] for r in runs["proxy"])
    print(f"training per architecture (median): proxy {proxy_train:.1f} s, long {long_train:.1f} s "
          f"({long_train / proxy_train:.1f}x); a whole proxy trial (with cost measurement) {proxy_s:.1f} s, "
          f"{SEARCH_TRIALS} of them ~ {SEARCH_TRIALS * proxy_s / 60:.0f} min (median load during the proxy "
          f"trainings {proxy_load:.1f}); long-accuracy range {min(long_acc):.4f}..{max(long_acc):.4f}")


if __name__ == "__main__":
    main()
