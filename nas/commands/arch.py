"""`nas arch`: params, MACs and stages of any architecture."""

from __future__ import annotations

import argparse
import json
from typing import Any

from nas.commands.args import positive_int


def add_parser(sub: Any) -> None:
    p = sub.add_parser("arch", help="params, MACs and stages of an architecture")
    p.add_argument("arch", help="reference name (efficientnet-b0, efficientnetv2-s/m/l), YAML file or arch string")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--classes", type=positive_int, default=1000, help="output classes (default 1000)")
    p.add_argument("--in-channels", type=positive_int, default=3, help="input channels (default 3)")
    p.add_argument("--resolution", type=positive_int, help="count MACs at this size (default: the arch's)")


def arch_summary(arch_spec: str, classes: int, in_channels: int, resolution: int | None) -> dict[str, Any]:
    from nas.measure.costs import count_costs
    from nas.spec.resources import load_arch

    arch = load_arch(arch_spec)
    if resolution is not None:
        arch = arch.with_(resolution=resolution, name=arch.name)
    params, macs = count_costs(arch, num_classes=classes, in_channels=in_channels)
    return {
        "name": arch.name,
        "string": arch.to_string(),
        "resolution": arch.resolution,
        "classes": classes,
        "in_channels": in_channels,
        "params": params,
        "macs": macs,
        "stem": {"channels": arch.resolved_stem_channels, "stride": arch.stem_stride},
        "stages": [
            {"op": s.op, "kernel": s.kernel, "expansion": s.expansion, "se": s.se, "channels": s.channels,
             "layers": s.layers, "stride": s.stride, "skip": s.skip}
            for s in arch.resolved_stages()
        ],
        "head": {"channels": arch.resolved_head_channels},
    }


def run(args: argparse.Namespace) -> None:
    info = arch_summary(args.arch, args.classes, args.in_channels, args.resolution)
    if args.json:
        print(json.dumps(info, indent=2))
        return
    print(f"{info['name'] or 'architecture'}: {info['params']:,} params, {info['macs'] / 1e9:.3f} G MACs "
          f"at {info['resolution']} px ({info['classes']} classes)")
    print(f"{'stage':>5} {'operator':<13} {'k':>2} {'s':>2} {'e':>4} {'se':>5} {'ch':>5} {'layers':>6}")
    stem = info["stem"]
    print(f"{'stem':>5} {'conv':<13} {3:>2} {stem['stride']:>2} {'':>4} {'':>5} {stem['channels']:>5} {1:>6}")
    for i, s in enumerate(info["stages"], 1):
        print(f"{i:>5} {s['op']:<13} {s['kernel']:>2} {s['stride']:>2} {s['expansion']:>4g} {s['se']:>5g} "
              f"{s['channels']:>5} {s['layers']:>6}")
    print(f"{'head':>5} {'conv1x1+pool':<13} {1:>2} {1:>2} {'':>4} {'':>5} {info['head']['channels']:>5} {1:>6}")
