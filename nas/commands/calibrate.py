"""`nas calibrate`: time every part of a search space into this machine's step-time table."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from nas.commands.args import positive_int


def add_parser(sub: Any) -> None:
    p = sub.add_parser("calibrate", help="fill this machine's step-time table for a space before searching")
    p.add_argument("--space", default="v2", help="v1, v2, tiny or a YAML file (default v2)")
    p.add_argument("--dataset", default="mnist5k", help="the searches' dataset (its classes; default mnist5k)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("--workers", type=positive_int, default=1,
                   help="time with the threads of one of this many search workers (default 1)")
    add_cache_dir_argument(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_cache_dir_argument(p: Any) -> None:
    p.add_argument("--cache-dir", help="where this machine's step-time table lives (default: $NAS_CACHE_DIR, "
                                       "else ~/.cache/nas)")


def apply_cache_dir(args: argparse.Namespace) -> None:
    """--cache-dir for this process and every worker it starts."""
    from nas.measure.step_table import use_cache_dir

    if args.cache_dir:
        use_cache_dir(args.cache_dir)


def run(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from nas.measure.calibrate import calibrate
    from nas.measure.device import device_name, resolve_device, set_threads
    from nas.measure.hardware import fingerprint
    from nas.measure.step_table import current_table
    from nas.spec.space import SearchSpace
    from nas.training.data import load_dataset

    apply_cache_dir(args)
    space = SearchSpace.load(args.space)
    device = resolve_device(args.device)
    set_threads(args.workers)  # the threads are part of the fingerprint: as a search worker has them
    classes = load_dataset(args.dataset, resolution=space.proxy.resolution).num_classes
    shape = space.measure.timing_shape(device.type, space.resolution, classes)
    table = current_table(fingerprint(device))
    bar: Any = None

    def start(total: int) -> None:
        nonlocal bar
        bar = tqdm(total=total, desc="parts", unit="part", file=sys.stderr, disable=args.quiet, dynamic_ncols=True)

    try:
        done = calibrate(space, shape, device, space.measure.repeats(), table.cache(), on_start=start,
                         on_part=lambda: bar.update(1))
    finally:
        if bar is not None:
            bar.close()
    print(f"{space.name}: {done.parts} parts at {shape.describe()} on {device_name(device)}; "
          f"timed {done.timed} now, {done.parts - done.timed} were in the table; table: {table.path}")
