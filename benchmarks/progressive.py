"""Progressive learning vs fixed-size training: the same tiny architecture, data and step count.

EfficientNetV2's claim: training small images with weak regularisation first and the target
size with the full regularisation last is faster at equal or better accuracy. Both runs here
train the tiny space's reference architecture on MNIST-5k for the same optimizer steps, with the
same final regularisation (RandAugment, dropout); the progressive run starts at 128/300 of the
size and rises over 4 stages (the V2-S schedule scaled to the target). A third row without any
augmentation shows what the regularisation itself costs on so short a run.

    OMP_NUM_THREADS=1 python benchmarks/progressive.py [--epochs 8] [--resolution 28]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from nas.spec.space import SearchSpace
from nas.training.full import TrainConfig, train
from nas.training.progressive import DEFAULT_SCHEDULE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--resolution", type=int, default=28, help="target (MNIST's own) size")
    parser.add_argument("--randaugment", type=float, default=10.0, help="final RandAugment magnitude")
    parser.add_argument("--dropout", type=float, default=0.3, help="final dropout")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    arch = SearchSpace.load("tiny").reference.with_(name="tiny")
    base = TrainConfig(dataset="mnist5k", epochs=args.epochs, batch=args.batch, optimizer="adamw", lr=0.003,
                       resolution=args.resolution, randaugment=args.randaugment, dropout=args.dropout,
                       seed=args.seed, device="cpu")
    schedule = replace(DEFAULT_SCHEDULE, randaugment=(min(5.0, args.randaugment), args.randaugment),
                       dropout=(min(0.1, args.dropout), args.dropout)).for_target(args.resolution)
    runs = {
        "fixed": base,
        "progressive": replace(base, progressive=schedule),
        "fixed, no augmentation": replace(base, randaugment=0.0, dropout=0.0),
    }
    print(f"{arch.name} on mnist5k, {args.epochs} epochs of batch {args.batch}, {torch.get_num_threads()} thread(s); "
          f"progressive: {schedule.resolution[0]}->{schedule.resolution[1]} px, RandAugment "
          f"{schedule.randaugment[0]:g}->{schedule.randaugment[1]:g}, dropout {schedule.dropout[0]:g}->"
          f"{schedule.dropout[1]:g} over {schedule.stages} stages")
    print(f"{'run':<24} {'steps':>6} {'val acc':>8} {'train s':>8} {'wall s':>7} {'img/s':>7}")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, config in runs.items():
            start = time.perf_counter()
            metrics = train(arch, config, Path(tmp) / label.replace(" ", "-").replace(",", ""), log=lambda _: None)
            wall = time.perf_counter() - start
            results[label] = (metrics, wall)
            print(f"{label:<24} {metrics['steps']:>6} {metrics['accuracy']:>8.4f} {metrics['train_seconds']:>8.1f} "
                  f"{wall:>7.1f} {metrics['train_images_per_s']:>7.0f}")
    fixed, progressive = results["fixed"][0], results["progressive"][0]
    print(f"progressive / fixed: train time x{progressive['train_seconds'] / fixed['train_seconds']:.2f}, "
          f"accuracy {progressive['accuracy'] - fixed['accuracy']:+.4f}")


if __name__ == "__main__":
    main()
