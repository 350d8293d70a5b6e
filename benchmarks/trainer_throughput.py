"""Proxy trainer throughput vs a plain hand-written PyTorch loop, same model, batch and steps.

Prints images/s of each (median over interleaved repeats) and the ratio trainer/plain
(target >= 0.95). The trainer's figure counts only its training steps; its per-epoch
BatchNorm recalibration and validation are printed separately as the evaluation share.

    python benchmarks/trainer_throughput.py [--repeats 3] [--batch 64] [--train 2000]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from nas.measure.device import resolve_device
from nas.model import build
from nas.spec.resources import load_arch
from nas.training.data import load_dataset
from nas.training.proxy import ProxyRecipe, proxy_train


def plain_loop(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int, epochs: int) -> float:
    """The loop anyone would write by hand; returns images/s."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.005, weight_decay=0.01)
    model.train()
    steps = len(x) // batch
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for step in range(steps):
            idx = order[step * batch : (step + 1) * batch]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return epochs * steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    device = resolve_device("auto")
    data = load_dataset("mnist5k", resolution=28)
    arch = load_arch("efficientnetv2-s").with_(width=0.25, depth=0.34, stem_stride=1, resolution=28,
                                               dropout=0.0, drop_path=0.0)
    recipe = ProxyRecipe(epochs=args.epochs, batch=args.batch, lr=0.005, max_train=args.train)
    x, y = data.train_x[: args.train].to(device), data.train_y[: args.train].to(device)
    plain, trainer, eval_share = [], [], []
    for _ in range(args.repeats):  # interleaved, so drifts in machine load hit both alike
        torch.manual_seed(0)
        plain.append(plain_loop(build(arch, 10, 1).to(device), x, y, args.batch, args.epochs))
        torch.manual_seed(0)
        start = time.perf_counter()
        outcome = proxy_train(build(arch, 10, 1), data, recipe, device)
        total = time.perf_counter() - start
        trainer.append(outcome.images / outcome.step_seconds)
        eval_share.append(1 - outcome.step_seconds / total)
    p, t = statistics.median(plain), statistics.median(trainer)
    print(f"device {device}, threads {torch.get_num_threads()}, batch {args.batch}, {args.epochs} epochs of "
          f"{args.train} images, {args.repeats} interleaved repeats")
    print(f"plain loop      {p:8.1f} images/s")
    print(f"proxy trainer   {t:8.1f} images/s  (evaluation + BN recalibration: "
          f"{100 * statistics.median(eval_share):.1f}% of its wall time)")
    print(f"ratio trainer/plain = {t / p:.3f}  (target >= 0.95)")


if __name__ == "__main__":
    main()
