"""S, the training-step cost of a candidate: its own full-width, full-depth network, timed at a
declared timing shape on the device the search runs on.

Timing each candidate's whole network at that shape costs seconds per trial on a CPU (an
EfficientNetV2-S step at 128 px, batch 8 takes ~0.43 s on 2 cores). A network is a chain of
parts (stem, blocks, head) and a training step's cost is, to first order, the sum of its parts'
forward + backward + optimizer costs, so the default `table` method times each distinct part once
per hardware and sums them (the lookup-table approach of ProxylessNAS, FBNet and Once-for-All).
A search space repeats the same parts across candidates (v2 has under 300), so after the first
trials almost every part is a cache hit. `network` times the whole candidate instead: exact but
slow. benchmarks/cost_fidelity.py validates the table against whole-network timings.

Parts are identified by what they compute: the module's structure (its repr) and its input
shape, at zero drop rates, so the key does not depend on how the builder names things.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn

from nas.measure.costs import (
    Repeats,
    StepTime,
    StepTimeCache,
    measure_step_time,
    rng_devices,
    time_steps,
    warm_up_process,
)
from nas.measure.device_gate import exclusive_device
from nas.measure.hardware import Hardware, fingerprint
from nas.measure.precision import autocast
from nas.measure.step import prepare, to_device
from nas.measure.step_table import DRIFT_TOLERANCE, Drift
from nas.model import build
from nas.model.network import EfficientNet
from nas.spec.arch import Arch
from nas.spec.timing import TimingShape


class _HeadSection(nn.Module):
    """The network after its last block: 1x1 conv, pool, dropout, classifier (the loss follows)."""

    def __init__(self, net: EfficientNet) -> None:
        super().__init__()
        self.head, self.pool, self.dropout, self.classifier = net.head, net.pool, net.dropout, net.classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(torch.flatten(self.pool(self.head(x)), 1)))


@dataclass(frozen=True)
class Part:
    """One timed piece of a network: `kind` is stem, block or head."""

    kind: str
    module: nn.Module
    input_shape: tuple[int, ...]

    def key(self) -> str:
        digest = hashlib.sha1(f"{self.module!r}|{self.input_shape}".encode()).hexdigest()[:20]
        return f"{self.kind}|{'x'.join(map(str, self.input_shape))}|{digest}"


def timing_arch(arch: Arch) -> Arch:
    """The architecture as timed: drop rates zeroed, so equal parts get equal keys (a dropped
    path costs one mask multiply, measured as noise in benchmarks/cost_fidelity.py)."""
    return arch.with_(dropout=0.0, drop_path=0.0, name=arch.name)


def network_parts(net: EfficientNet, shape: TimingShape) -> list[Part]:
    """The stem, every block and the head section of `net`, each with the input shape it sees
    at `shape` (found by one forward pass; on the meta device it costs no compute)."""
    modules: list[tuple[str, nn.Module]] = [("stem", net.stem)]
    modules += [("block", block) for stage in net.stages for block in stage]
    inputs: dict[int, tuple[int, ...]] = {}

    def recorder(index: int):
        def hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:  # None: the input is kept
            inputs[index] = tuple(args[0].shape)
        return hook

    hooks = [m.register_forward_pre_hook(recorder(i)) for i, (_, m) in enumerate(modules)]
    device = next(net.parameters()).device
    try:
        with torch.no_grad():
            x = net.stages(net.stem(torch.zeros(shape.batch, shape.in_channels, shape.resolution,
                                                shape.resolution, device=device)))
    finally:
        for hook in hooks:
            hook.remove()
    parts = [Part(kind, module, inputs[i]) for i, (kind, module) in enumerate(modules)]
    parts.append(Part("head", _HeadSection(net), tuple(x.shape)))
    return parts


@lru_cache(maxsize=4096)
def meta_parts(arch: Arch, shape: TimingShape) -> tuple[Part, ...]:
    """`arch`'s parts at `shape` on the meta device (shapes without memory or compute), memoised
    per process: every trial looks up the reference's S again, and building even a meta network
    costs ~0.2 s for V2-S. A part to be timed is materialised on its own (`_materialise`): the
    full-size network is never built for real just to learn its shapes."""
    with torch.device("meta"):
        meta_net = build(arch, num_classes=shape.num_classes, in_channels=shape.in_channels)
    return tuple(network_parts(meta_net, shape))


def part_keys(arch: Arch, shape: TimingShape) -> tuple[str, ...]:
    """The keys of `arch`'s parts at `shape`."""
    return tuple(part.key() for part in meta_parts(arch, shape))


def _materialise(part: Part, device: torch.device) -> nn.Module:
    """A real copy of a part on `device`, freshly initialised (seeded by the caller): weights from
    the layers' own initialisers, never uninitialised memory (denormals step slower on a CPU)."""
    module = copy.deepcopy(part.module)
    if any(t.is_meta for t in (*module.parameters(), *module.buffers())):
        module = module.to_empty(device=device)
        for layer in module.modules():
            reset = getattr(layer, "reset_parameters", None)
            if callable(reset):
                reset()  # convolutions, linear layers; BatchNorm resets its running statistics too
    return module


def _time_part(part: Part, shape: TimingShape, device: torch.device, repeats: Repeats) -> StepTime:
    """Forward + backward (into the part's input too, as inside the network) + SGD step of one part."""
    with torch.random.fork_rng(devices=rng_devices(device)):
        torch.manual_seed(0)
        net = prepare(_materialise(part, device), device)
        net.train()
        optimizer = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
        x = to_device(torch.randn(part.input_shape, device=device), device)  # made on the device
        x.requires_grad_(part.kind != "stem")  # the images need no gradient; every later input does
        labels = torch.randint(0, shape.num_classes, (shape.batch,), device=device)

        def step() -> None:
            with autocast(device):
                out = net(x)
                head = part.kind == "head"
                loss = nn.functional.cross_entropy(out.float(), labels) if head else out.float().mean()
            optimizer.zero_grad(set_to_none=True)
            x.grad = None
            loss.backward()
            optimizer.step()

        with exclusive_device(device):
            return time_steps(step, device, repeats)


def _combine(times: list[StepTime]) -> StepTime:
    """The sum of the parts' medians; spread is that of the sum for independent parts."""
    total = sum(t.median_ms for t in times)
    spread = sum((t.spread * t.median_ms) ** 2 for t in times) ** 0.5 / total if total > 0 else 0.0
    return StepTime(median_ms=total, spread=spread, samples=min(t.samples for t in times),
                    min_ms=sum(t.min_ms for t in times))


def table_step_time(arch: Arch, shape: TimingShape, device: torch.device, repeats: Repeats,
                    cache: StepTimeCache | None = None, hardware: Hardware | None = None) -> StepTime:
    """S by the table: the sum of the cached (or now timed) step times of `arch`'s parts."""
    hardware = hardware or fingerprint(device)
    parts = meta_parts(timing_arch(arch), shape)
    keys = [_table_key(part, hardware) for part in parts]
    found = {k: cache.get(k) if cache is not None else None for k in keys}
    for key, part in zip(keys, parts, strict=True):
        if found[key] is None:
            warm_up_process(device)
            found[key] = _time_part(part, shape, device, repeats)
            if cache is not None:
                cache.put(key, found[key])
    return _combine([found[k] for k in keys])  # type: ignore[misc]


def _table_key(part: Part, hardware: Hardware) -> str:
    """A part's entry in the step-time table: the hardware it was timed on, then the part."""
    return f"{hardware.key()}|{part.key()}"


def table_parts(arch: Arch, shape: TimingShape, hardware: Hardware) -> dict[str, Part]:
    """{table key: part} of `arch` at `shape`, each distinct part once."""
    return {_table_key(part, hardware): part for part in meta_parts(timing_arch(arch), shape)}


def time_missing_parts(parts: dict[str, Part], shape: TimingShape, device: torch.device, repeats: Repeats,
                       cache: StepTimeCache, on_part=None) -> int:
    """Time every part the table lacks (`nas calibrate`); `on_part()` after each. Returns how many."""
    timed = 0
    for key, part in parts.items():
        if cache.get(key) is None:
            warm_up_process(device)
            cache.put(key, _time_part(part, shape, device, repeats))
            timed += 1
        if on_part is not None:
            on_part()
    return timed


def _network_key(arch: Arch, shape: TimingShape, hardware: Hardware) -> str:
    return f"{hardware.key()}|network|{shape.token()}|{arch.to_string()}"


def retime_reference(reference: Arch, shape: TimingShape, device: torch.device, repeats: Repeats, method: str,
                     table: StepTimeCache, hardware: Hardware,
                     tolerance: float = DRIFT_TOLERANCE) -> tuple[dict[str, StepTime], Drift | None]:
    """Time the reference afresh (its parts, or its whole network), not from the table: the
    fresh entries by key, and their drift from the table's entries for the same keys (None
    when the table has none of them yet). Each occurrence of a part counts, as in S."""
    if method == "table":
        keys = [_table_key(part, hardware) for part in meta_parts(timing_arch(reference), shape)]
        warm_up_process(device)
        fresh = {key: _time_part(part, shape, device, repeats)
                 for key, part in table_parts(reference, shape, hardware).items()}
    else:
        keys = [_network_key(reference, shape, hardware)]
        fresh = {keys[0]: _time_network(reference, shape, device, repeats)}
    known = [k for k in keys if table.get(k) is not None]
    if not known:
        return fresh, None
    then = sum(table.get(k).median_ms for k in known)  # type: ignore[union-attr]
    return fresh, Drift(table_ms=then, now_ms=sum(fresh[k].median_ms for k in known), tolerance=tolerance)


def network_step_time(arch: Arch, shape: TimingShape, device: torch.device, repeats: Repeats,
                      cache: StepTimeCache | None = None, hardware: Hardware | None = None) -> StepTime:
    """S by timing the candidate's whole full-size network at `shape` (exact, seconds per trial)."""
    hardware = hardware or fingerprint(device)
    key = _network_key(arch, shape, hardware)
    step = cache.get(key) if cache is not None else None
    if step is None:
        step = _time_network(arch, shape, device, repeats)
        if cache is not None:
            cache.put(key, step)
    return step


def _time_network(arch: Arch, shape: TimingShape, device: torch.device, repeats: Repeats) -> StepTime:
    model = build(arch, num_classes=shape.num_classes, in_channels=shape.in_channels)
    return measure_step_time(model, batch=shape.batch, resolution=shape.resolution, in_channels=shape.in_channels,
                             num_classes=shape.num_classes, device=device, repeats=repeats)


def step_cost(arch: Arch, shape: TimingShape, device: torch.device, repeats: Repeats, method: str = "table",
              cache: StepTimeCache | None = None) -> StepTime:
    """S of `arch` (a full-size architecture) by `method` (table or network)."""
    timer = table_step_time if method == "table" else network_step_time
    return timer(arch, shape, device, repeats, cache)

