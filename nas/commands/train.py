"""`nas train`: full training of an architecture file, resumable, optionally progressive."""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from pathlib import Path
from typing import Any

from nas.commands.args import EXIT_INTERRUPTED, fraction, positive_int

# CLI option -> TrainConfig field, for options that map one to one (None = not given).
_DIRECT = ("dataset", "epochs", "batch", "optimizer", "lr", "weight_decay", "momentum", "schedule",
           "warmup_epochs", "step_epochs", "step_gamma", "label_smoothing", "ema", "resolution",
           "eval_resolution", "dropout", "randaugment", "mixup", "max_train", "val_fraction", "seed", "device")


def add_parser(sub: Any) -> None:
    p = sub.add_parser("train", help="train an architecture fully (checkpoints, --resume, --progressive)")
    p.add_argument("arch", help="architecture YAML file (a <name>.recipe.yaml beside it is used), name or string")
    p.add_argument("-o", "--output", help="output folder (default RUNS_DIR/train-<name>)")
    p.add_argument("--runs-dir", default="runs", help="where the default output folder goes (default ./runs)")
    p.add_argument("--resume", action="store_true", help="continue the run in the output folder")
    p.add_argument("--dataset", help="mnist5k (default), digits, synthetic, cifar10:DIR, cifar100:DIR, imagefolder:DIR")
    p.add_argument("--epochs", type=positive_int, help="default 10")
    p.add_argument("--batch", type=positive_int, help="default 128")
    p.add_argument("--optimizer", choices=["sgd", "rmsprop", "adamw"], help="default sgd (Nesterov momentum)")
    p.add_argument("--lr", type=float, help="peak learning rate (default sgd 0.05, rmsprop 0.016, adamw 0.003)")
    p.add_argument("--weight-decay", type=float, help="default sgd 5e-5, rmsprop 1e-5, adamw 0.05")
    p.add_argument("--momentum", type=float, help="sgd/rmsprop momentum (default 0.9)")
    p.add_argument("--schedule", choices=["cosine", "step"], help="after warm-up (default cosine)")
    p.add_argument("--warmup-epochs", type=float, help="linear warm-up (default 10%% of the epochs, at most 5)")
    p.add_argument("--step-epochs", type=float, help="step schedule: decay every this many epochs (2.4)")
    p.add_argument("--step-gamma", type=float, help="step schedule: decay factor (0.97)")
    p.add_argument("--label-smoothing", type=float, help="default 0.1")
    p.add_argument("--ema", type=float, help="decay of an exponential moving average of the weights (default off)")
    p.add_argument("--resolution", type=positive_int, help="train image size (default: recipe's, else the arch's)")
    p.add_argument("--eval-resolution", type=positive_int, help="eval image size (default: recipe's ratio)")
    p.add_argument("--dropout", type=float, help="final dropout (default: recipe's, else the arch's)")
    p.add_argument("--randaugment", type=float, help="final RandAugment magnitude, 0-29 (default: recipe's, else 0)")
    p.add_argument("--mixup", type=float, help="final mixup alpha (default: recipe's, else 0)")
    p.add_argument("--progressive", action="store_true", default=None,
                   help="progressive learning: image size, RandAugment, mixup, dropout rise over --stages")
    p.add_argument("--stages", type=positive_int, help="progressive stages (default 4)")
    p.add_argument("--max-train", type=positive_int, help="train on at most this many images")
    p.add_argument("--val-fraction", type=fraction, help="validation share (default 0.2)")
    p.add_argument("--seed", type=int, help="default 0")
    p.add_argument("--device", help="auto (default: CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")


def default_output(args: argparse.Namespace, arch: Any) -> Path:
    if args.output:
        return Path(args.output).expanduser()
    from nas.spec.paths import is_file

    if arch.name:
        name = arch.name
    elif is_file(args.arch):
        name = Path(args.arch).stem
    else:  # an architecture string: hundreds of characters, too long for a folder name
        name = "arch-" + hashlib.sha1(arch.to_string().encode()).hexdigest()[:10]
    return Path(args.runs_dir) / f"train-{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}"


def build_config(args: argparse.Namespace, arch: Any, recipe: Any, saved: Any) -> Any:
    """Defaults < the arch's recipe < (on --resume) the saved settings < options given."""
    from dataclasses import replace

    from nas.training.full import TrainConfig
    from nas.training.progressive import DEFAULT_SCHEDULE

    config = saved or TrainConfig()
    if saved is None and recipe is not None:
        config = replace(config, resolution=recipe.train_resolution, eval_resolution=recipe.eval_resolution,
                         dropout=recipe.dropout, randaugment=recipe.randaugment, mixup=recipe.mixup)
    given = {k: getattr(args, k) for k in _DIRECT if getattr(args, k) is not None}
    if "resolution" in given and "eval_resolution" not in given:
        # keep the recipe's train/eval ratio (S: 300/384); without a recipe evaluate at the train size
        ratio = recipe.eval_resolution / recipe.train_resolution if recipe is not None else 1.0
        given["eval_resolution"] = max(given["resolution"], int(round(given["resolution"] * ratio)))
    config = replace(config, **given)
    progressive = args.progressive if args.progressive is not None else (saved is not None and
                                                                        saved.progressive is not None)
    if not progressive:
        return replace(config, progressive=None)
    if saved is not None and saved.progressive is not None and args.progressive is None and args.stages is None:
        return config  # resumed with its saved schedule
    base = recipe.progressive if recipe is not None and recipe.progressive is not None else DEFAULT_SCHEDULE
    schedule = base.for_target(config.resolution or arch.resolution, stages=args.stages)
    # explicit final values end the schedule; its start never lies above its end
    for key in ("randaugment", "mixup", "dropout"):
        if key in given:
            start = getattr(schedule, key)[0]
            schedule = replace(schedule, **{key: (min(start, given[key]), given[key])})
    return replace(config, progressive=schedule)


def run(args: argparse.Namespace) -> None:
    import yaml

    from nas.spec.resources import load_arch
    from nas.training.full import TrainConfig, train
    from nas.training.progressive import find_recipe

    arch = load_arch(args.arch)
    recipe = find_recipe(args.arch)
    out = default_output(args, arch)
    saved = None
    if args.resume and (out / "train.yaml").is_file():
        data = yaml.safe_load((out / "train.yaml").read_text()) or {}
        saved = TrainConfig.from_dict(data.get("config", {}), str(out / "train.yaml"))
    config = build_config(args, arch, recipe, saved)
    log = (lambda line: None) if args.quiet else (lambda line: print(line, file=sys.stderr))
    try:
        metrics = train(arch, config, out, resume=args.resume, log=log)
    except KeyboardInterrupt:
        print(f"\nnas: interrupted; continue from the last checkpoint with: nas train {args.arch} -o {out} --resume",
              file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED) from None
    print(f"accuracy {metrics['accuracy']:.4f} after {metrics['epochs']} epochs "
          f"({metrics['train_images_per_s']:.0f} train images/s); {out / 'metrics.json'}")
