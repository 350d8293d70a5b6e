"""Exporting an architecture as files a user can take away (`nas export`).

    model.pt2     torch.export program (weights included); `torch.export.load` needs torch only
    model.onnx    only when the `onnx` package is importable
    arch.yaml     the architecture
    README.md     params, MACs, measured training-step time, how to load
    export.json   the same facts for programs

The program is exported in eval mode on the CPU with a dynamic batch dimension, so it runs on any
batch size and can be moved to a GPU after loading.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from nas.measure.costs import StepTime, count_macs, count_params, measure_step_time
from nas.model import build
from nas.records.runs import atomic_write, versions
from nas.spec.arch import Arch
from nas.spec.errors import ConfigError, RunError

PROGRAM = "model.pt2"
ONNX = "model.onnx"
MAX_BATCH = 4096  # upper bound of the exported dynamic batch dimension


@dataclass(frozen=True)
class Weights:
    """A state dict plus what rebuilding the network needs."""

    state: dict[str, torch.Tensor]
    num_classes: int
    in_channels: int
    source: str
    resolution: int | None = None


def load_weights(path: Path) -> Weights:
    """Weights from `nas train`'s model.pt or checkpoint.pt (EMA preferred), or a bare state dict."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as exc:
        raise RunError(f"cannot read checkpoint {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--checkpoint must hold a state dict or a nas checkpoint, but {path} holds "
                          f"{type(data).__name__}")
    # training checkpoints hold "ema" and "model" state dicts; model.pt holds "model" (and an ema flag)
    nested = [data[k] for k in ("ema", "model") if isinstance(data.get(k), dict)]
    state = nested[0] if nested else data
    try:
        num_classes = int(state["classifier.weight"].shape[0])
        in_channels = int(state["stem.0.weight"].shape[1])
    except (KeyError, AttributeError, IndexError, TypeError):
        raise ConfigError(f"--checkpoint must hold weights of a nas network (classifier.weight, stem.0.weight), "
                          f"but {path} does not") from None
    resolution = data.get("resolution") if isinstance(data.get("resolution"), int) else None
    return Weights(state=state, num_classes=num_classes, in_channels=in_channels, source=str(path),
                   resolution=resolution)


@dataclass(frozen=True)
class ExportResult:
    folder: str
    name: str | None
    params: int
    macs: int
    resolution: int
    num_classes: int
    in_channels: int
    trained: bool
    weights: str | None
    step_ms: float | None
    step_spread: float | None
    step_batch: int
    step_device: str
    onnx: bool
    onnx_note: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def export(arch: Arch, out: Path, *, weights: Weights | None = None, num_classes: int = 1000,
           in_channels: int = 3, resolution: int | None = None, device: torch.device | None = None,
           batch: int = 32, steps: int = 10) -> ExportResult:
    """Write the export folder; `weights` None exports a freshly initialised network."""
    if weights is not None:
        num_classes, in_channels = weights.num_classes, weights.in_channels
    resolution = resolution or (weights.resolution if weights is not None else None) or arch.resolution
    device = device or torch.device("cpu")
    torch.manual_seed(0)  # a fresh network is the same one every time
    model = build(arch, num_classes=num_classes, in_channels=in_channels)
    if weights is not None:
        try:
            model.load_state_dict(weights.state)
        except RuntimeError as exc:
            raise ConfigError(f"--checkpoint must match the architecture, but {weights.source} does not "
                              f"({str(exc).splitlines()[0]})") from None
    model.eval()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"cannot create {out}: {exc.strerror or exc}") from None

    example = torch.randn(2, in_channels, resolution, resolution)
    with torch.no_grad():
        program = torch.export.export(
            model, (example,), dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=MAX_BATCH)}})
    torch.export.save(program, out / PROGRAM)
    onnx_written, onnx_note = _export_onnx(model, example, out / ONNX)
    atomic_write(out / "arch.yaml", arch.to_yaml())

    step = measure_step_time(model, batch=batch, resolution=resolution, in_channels=in_channels,
                             num_classes=num_classes, device=device, warmup=2, steps=steps)
    from nas.measure.device import device_name

    result = ExportResult(
        folder=str(out), name=arch.name, params=count_params(model),
        macs=count_macs(model, resolution, in_channels), resolution=resolution, num_classes=num_classes,
        in_channels=in_channels, trained=weights is not None, weights=None if weights is None else weights.source,
        step_ms=step.median_ms, step_spread=step.spread, step_batch=batch, step_device=device_name(device),
        onnx=onnx_written, onnx_note=onnx_note,
    )
    atomic_write(out / "export.json", json.dumps(result.to_dict(), indent=2) + "\n")
    atomic_write(out / "README.md", readme(arch, result, step))
    return result


def _export_onnx(model: torch.nn.Module, example: torch.Tensor, path: Path) -> tuple[bool, str]:
    """ONNX as an extra, only where the onnx packages are installed; never fails the export."""
    if importlib.util.find_spec("onnx") is None:
        return False, "not written: the onnx package is not installed (pip install onnx onnxscript)"
    try:
        torch.onnx.export(model, (example,), str(path), input_names=["images"], output_names=["logits"],
                          dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}})
    except Exception as exc:  # any exporter failure: the torch.export program is the main product
        path.unlink(missing_ok=True)
        return False, f"not written: ONNX export failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
    return True, "written"


def readme(arch: Arch, r: ExportResult, step: StepTime) -> str:
    name = arch.name or "architecture"
    weights = f"trained (`{r.weights}`)" if r.trained else "freshly initialised (random weights, seed 0)"
    onnx = f"`{ONNX}` (ONNX, dynamic batch)" if r.onnx else f"ONNX {r.onnx_note}"
    shape = f"N x {r.in_channels} x {r.resolution} x {r.resolution}"
    return f"""# {name}

Exported by nas on {dt.date.today().isoformat()} with torch {versions().get('torch', torch.__version__)}.

| | |
|---|---|
| weights | {weights} |
| parameters | {r.params:,} |
| multiply-adds | {r.macs / 1e9:.4f} G per image at {r.resolution} x {r.resolution} |
| training step time | {step.median_ms:.2f} ms (forward + backward + SGD step, batch {r.step_batch}, \
{r.step_device}; median of {step.samples}, spread {100 * step.spread:.0f}%) |
| input | float32 {shape} (any batch size up to {MAX_BATCH}), normalised per channel |
| output | {r.num_classes} logits per image |

Files: `{PROGRAM}` (torch.export program with weights), `arch.yaml` (the architecture,
`nas arch arch.yaml` rebuilds its summary), `export.json` (these facts), {onnx}.

## Loading it (torch only; nas not needed)

```python
import torch

model = torch.export.load("{PROGRAM}").module()
logits = model(torch.randn(1, {r.in_channels}, {r.resolution}, {r.resolution}))
```

Architecture string: `{arch.to_string()}`
"""
