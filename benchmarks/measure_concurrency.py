"""Does a concurrent trial corrupt step-time measurement? Times the same architecture alone and
while other trials train on the same machine, and prints the ratios (target: within 10%).

Each "trial" is what a search worker does: `proxy_train` of random candidates in its own
process, one torch thread each (as a 1-CPU Ray trial or an Optuna worker of --workers 2). The
measuring process calls `measure_step_time`, which holds the device exclusively
(`nas.measure.device_gate.exclusive_device`).

Three conditions, interleaved round by round:

- alone: no other trial running;
- concurrent, no gate: the other trials keep training straight through the measurement (what
  a measuring lock alone gives: it keeps two *measurements* apart, not a measurement and a
  training). The trainers' `shared_device` is switched off for this condition only;
- concurrent + gate: what nas ships. Every training step holds the device gate shared, the
  measurement takes it exclusive behind a turnstile, so trials pause for the ~1-2 s of timing.

    OMP_NUM_THREADS=1 python benchmarks/measure_concurrency.py [--space tiny] [--others 1] [--rounds 9]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import statistics
import time
from collections.abc import Iterator

import torch


def _space_and_data(space_name: str):
    from nas.spec.settings import SearchSettings
    from nas.spec.space import SearchSpace
    from nas.training.data import load_dataset

    settings = SearchSettings(space=SearchSpace.load(space_name))
    data = load_dataset(settings.dataset, resolution=settings.proxy.resolution, seed=0)
    return settings, data


IDLE, TRAIN, TRAIN_GATED, STOP = 0, 1, 2, 3


def _trainer(space_name: str, seed: int, mode, steps) -> None:
    """A concurrent trial: proxy-train random candidates while `mode` says so (gated or not)."""
    import optuna

    import nas.training.proxy
    from nas.measure.device import resolve_device
    from nas.measure.device_gate import shared_device
    from nas.model import build

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    @contextlib.contextmanager
    def switchable_gate(device: torch.device) -> Iterator[None]:
        # every step, BN recalibration and evaluation of the trainer passes through here
        while mode.value == IDLE:
            time.sleep(0.01)
        with shared_device(device) if mode.value == TRAIN_GATED else contextlib.nullcontext():
            yield
        with steps.get_lock():
            steps.value += 1

    nas.training.proxy.shared_device = switchable_gate
    settings, data = _space_and_data(space_name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    device = resolve_device("cpu")
    while mode.value != STOP:
        arch = settings.space.proxy_arch(settings.space.sample(study.ask()))
        model = build(arch, num_classes=data.num_classes, in_channels=data.in_channels)
        recipe = nas.training.proxy.ProxyRecipe.from_proxy(settings.proxy, settings.seed)
        nas.training.proxy.proxy_train(model, data, recipe, device, on_epoch=lambda e, a: mode.value != STOP)


def _measure_once(model, settings, data, arch) -> float:
    from nas.measure.costs import measure_step_time
    from nas.measure.device import resolve_device

    # measure_step_time takes the device exclusively itself
    st = measure_step_time(model, batch=settings.proxy.batch, resolution=arch.resolution,
                           in_channels=data.in_channels, num_classes=data.num_classes,
                           device=resolve_device("cpu"), warmup=settings.measure.warmup,
                           steps=settings.measure.steps)
    return st.median_ms


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--space", default="tiny")
    parser.add_argument("--others", type=int, default=1, help="concurrent training processes")
    parser.add_argument("--rounds", type=int, default=9, help="measurements per condition")
    args = parser.parse_args()
    from nas.model import build

    torch.set_num_threads(1)
    context = multiprocessing.get_context("spawn")
    mode, steps = context.Value("i", TRAIN), context.Value("l", 0)
    others = [context.Process(target=_trainer, args=(args.space, i, mode, steps), daemon=True)
              for i in range(args.others)]
    for p in others:
        p.start()
    settings, data = _space_and_data(args.space)
    arch = settings.space.proxy_arch(settings.space.reference)
    model = build(arch, num_classes=data.num_classes, in_channels=data.in_channels)
    while steps.value < 20:  # the others are up and training
        time.sleep(0.2)
    _measure_once(model, settings, data, arch)  # warm-up
    # Conditions interleaved round by round, so the machine's own drift (other users) hits all
    # three alike; each round's ratios compare measurements seconds apart.
    times: dict[str, list[float]] = {"alone": [], "concurrent, no gate": [], "concurrent + gate": []}
    for _ in range(args.rounds):
        for label, value in (("alone", IDLE), ("concurrent, no gate", TRAIN), ("concurrent + gate", TRAIN_GATED)):
            mode.value = value
            time.sleep(1.0)  # the trainers settle into the new mode
            times[label].append(_measure_once(model, settings, data, arch))
    mode.value = STOP
    for p in others:
        p.join(timeout=60)

    print(f"space {args.space}: its reference at proxy size, 1 thread, {args.others} concurrent trial(s), "
          f"{args.rounds} interleaved rounds")
    alone = times["alone"]
    for label, series in times.items():
        ratios = [t / a for t, a in zip(series, alone, strict=True)]
        r = statistics.median(ratios)
        verdict = "within" if abs(r - 1) <= 0.10 else "OUTSIDE"
        print(f"{label:<18} median {statistics.median(series):7.2f} ms   ratio to alone {r:5.2f} ({verdict} 10%)   "
              f"[{', '.join(f'{t:.1f}' for t in series)}]")


if __name__ == "__main__":
    main()
