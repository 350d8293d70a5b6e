"""`nas export`: an architecture or a trained model as torch.export / ONNX files plus a README."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from nas.commands.args import positive_int


def add_parser(sub: Any) -> None:
    p = sub.add_parser("export", help="save a (trained) model as torch.export program, arch YAML and README")
    p.add_argument("source", help="`nas train` output folder, search run (its best.yaml) or architecture")
    p.add_argument("-o", "--output", required=True, help="folder to write")
    p.add_argument("--checkpoint", help="weights to export (model.pt or checkpoint.pt of nas train, or a state "
                                        "dict); default: a train folder's model.pt, else fresh weights")
    p.add_argument("--runs-dir", default="runs", help="where runs live (default ./runs)")
    p.add_argument("--classes", type=positive_int, default=1000, help="classes of fresh weights (default 1000)")
    p.add_argument("--in-channels", type=positive_int, default=3, help="input channels of fresh weights (default 3)")
    p.add_argument("--resolution", type=positive_int, help="input size (default: the trained or the arch's)")
    p.add_argument("--batch", type=positive_int, default=32, help="batch of the step-time measurement (default 32)")
    p.add_argument("--steps", type=positive_int, default=10, help="timed steps (default 10)")
    p.add_argument("--device", default="auto", help="where to time the step: auto, cpu, cuda, cuda:N")


def resolve_source(spec: str, runs_dir: str) -> tuple[Any, Path | None]:
    """(architecture, weights file or None): a train folder, a search run or an architecture."""
    from nas.commands.scale import resolve_source as scale_source
    from nas.spec.arch import Arch
    from nas.spec.paths import is_file, user_path

    for folder in (user_path(spec), user_path(spec, Path(runs_dir))):
        if folder is not None and is_file(folder / "train.yaml") and is_file(folder / "arch.yaml"):
            weights = folder / "model.pt"
            return Arch.load(folder / "arch.yaml"), weights if weights.is_file() else None
    arch, _ = scale_source(spec, runs_dir)
    return arch, None


def run(args: argparse.Namespace) -> None:
    from nas.measure.device import resolve_device
    from nas.training.export import export, load_weights

    arch, weights_path = resolve_source(args.source, args.runs_dir)
    if args.checkpoint:
        weights_path = Path(args.checkpoint).expanduser()
    weights = load_weights(weights_path) if weights_path is not None else None
    result = export(arch, Path(args.output).expanduser(), weights=weights, num_classes=args.classes,
                    in_channels=args.in_channels, resolution=args.resolution, device=resolve_device(args.device),
                    batch=args.batch, steps=args.steps)
    kind = "trained" if result.trained else "freshly initialised"
    print(f"exported {kind} {result.name or 'architecture'} to {result.folder}: {result.params:,} params, "
          f"{result.macs / 1e9:.4f} G MACs at {result.resolution} px, train step {result.step_ms:.1f} ms "
          f"(batch {result.step_batch}, {result.step_device}); ONNX {result.onnx_note}")
