"""EfficientNetV2's Table 3 on this device: training throughput with no stage, the first half
(stages 1-3), stages 1-5 or every stage Fused-MBConv.

The paper (EfficientNet-B4 on a V100): 155 img/s with no stage fused, 216 with stages 1-3 fused
(1.39x), 223 with stages 1-5, 206 with every stage. The V2 design findings a step-time search
can be expected to reproduce depend on whether this device behaves alike; `nas reproduce v2s`
measures the same ablation first (nas.reproduce.precondition) and this script runs it alone.

Each variant is the whole full-size network, timed by `nas.measure.costs` at the timing shape the
search uses on this device (the space's `measure`; CPU default batch 8 at 128 px), in
interleaved rounds. Prints the table, the ratios with 95% intervals and what each finding can
be expected to show here.

    python benchmarks/fused_ablation.py [--layout v2s|b4] [--rounds 5] [--device auto] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys

from nas.measure.device import resolve_device, set_threads
from nas.measure.hardware import fingerprint
from nas.reproduce.claims import V2_CLAIMS
from nas.reproduce.precondition import (
    RATIO_COLUMNS,
    VARIANT_COLUMNS,
    expectation,
    fused_variants,
    measure_precondition,
    ratio_rows,
    variant_rows,
)
from nas.scaling.scale import preset
from nas.spec.resources import load_arch
from nas.spec.space import SearchSpace

LAYOUTS = ("v2s", "b4")


def reference_for(layout: str, space: SearchSpace):
    """V2-S (the v2 space's reference) or EfficientNet-B4 (B0 with the published B4 scaling, as in Table 3)."""
    return space.reference if layout == "v2s" else preset(load_arch("efficientnet-b0"), "b4")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layout", choices=LAYOUTS, default="v2s",
                        help="v2s: the v2 space's reference; b4: EfficientNet-B4 as in the paper (default v2s)")
    parser.add_argument("--space", default="v2", help="space whose timing shape and repeats are used (default v2)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (default 5)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=1,
                        help="search workers to match: torch threads = cores / workers (default 1)")
    parser.add_argument("--classes", type=int, default=10, help="classifier size of the timing shape (default 10)")
    parser.add_argument("--json", help="also write the measurements to this file")
    args = parser.parse_args()
    if args.rounds < 1:
        sys.exit(f"--rounds must be >= 1, but got {args.rounds}")
    device = resolve_device(args.device)
    set_threads(args.workers)
    space = SearchSpace.load(args.space)
    reference = reference_for(args.layout, space)
    shape = space.measure.timing_shape(device.type, space.resolution, args.classes)
    hardware = fingerprint(device)
    print(f"# fused ablation: {reference.name} on {hardware.key()}, whole network at {shape.describe()}, "
          f"{args.rounds} interleaved rounds", flush=True)
    for key, arch in fused_variants(reference).items():
        print(f"#   {key:<5} {arch.to_string()}")

    def progress(done: int, step_ms: dict[str, float]) -> None:
        print(f"# round {done}/{args.rounds}: " + "  ".join(f"{k} {v:.1f} ms" for k, v in step_ms.items()),
              flush=True)

    found = measure_precondition(reference, shape, device, space.measure.repeats(), reference.resolution,
                                 rounds=args.rounds, on_round=progress)
    print()
    for columns, rows in ((VARIANT_COLUMNS, variant_rows(found)), (RATIO_COLUMNS, ratio_rows(found))):
        widths = [max(len(str(x)) for x in column) for column in zip(columns, *rows, strict=True)]
        for row in (columns, *rows):
            print("  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)))
        print()
    for claim in V2_CLAIMS:
        print(f"{claim.text}: {expectation(found, claim.hardware).text}")
    print(f"\nmeasured in {found.seconds:.0f} s")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(found.to_dict(), handle, indent=1)


if __name__ == "__main__":
    main()
