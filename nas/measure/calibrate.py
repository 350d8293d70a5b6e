"""Fill this machine's step-time table with every part a search space can produce (`nas calibrate`).

A search fills the table as it goes, so its first trials wait for parts to be timed. Calibrating
first times them all up front, once per machine: every later search on it times no part.

The parts of a space: a block's module depends on its own stage's choices (op, kernel, expansion,
SE, channels, skip), on the channels coming in (the previous stage's choice, or its own stage's
for a repeated block) and on its stride; the head depends on the last stage's channels. So one
architecture per (stage, choice combination, incoming channels), with that stage at two layers
(a first and a repeated block) and every other stage at one, covers every part of every
architecture in the space. Their shapes come from the meta device: nothing is built for real
until a part is timed.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import torch

from nas.measure.costs import Repeats, StepTimeCache
from nas.measure.hardware import fingerprint
from nas.measure.step_cost import Part, TimingShape, table_parts, time_missing_parts
from nas.spec.arch import Arch, Stage
from nas.spec.space import STAGE_FIELDS, SearchSpace

# the fields that make a block's module (layers do not: every block of a stage is one of two)
_BLOCK_FIELDS = tuple(f for f in STAGE_FIELDS if f != "layers")


def covering_archs(space: SearchSpace) -> Iterator[Arch]:
    """Architectures whose parts together are every part of every architecture in `space`."""
    base = [Stage(stride=st.stride, layers=1, **{f: st.choices(f)[0] for f in _BLOCK_FIELDS}) for st in space.stages]
    for i, st in enumerate(space.stages):
        incoming = space.stages[i - 1].channels if i > 0 else (None,)
        for combo in itertools.product(*(st.choices(f) for f in _BLOCK_FIELDS)):
            for channels_in in incoming:
                stages = list(base)
                stages[i] = Stage(stride=st.stride, layers=2, **dict(zip(_BLOCK_FIELDS, combo, strict=True)))
                if channels_in is not None:
                    stages[i - 1] = replace(stages[i - 1], channels=channels_in)
                yield space._arch(tuple(stages))


@dataclass(frozen=True)
class Calibration:
    parts: int  # distinct parts of the space
    timed: int  # of which timed now (the rest were in the table)


def space_parts(space: SearchSpace, shape: TimingShape, device: torch.device) -> dict[str, Part]:
    """{table key: part} of every part `space` can produce at `shape` on `device`."""
    hardware = fingerprint(device)
    parts: dict[str, Part] = {}
    for arch in covering_archs(space):
        parts.update(table_parts(arch, shape, hardware))
    parts.update(table_parts(space.reference, shape, hardware))
    return parts


def calibrate(space: SearchSpace, shape: TimingShape, device: torch.device, repeats: Repeats, cache: StepTimeCache,
              on_start: Callable[[int], None] | None = None, on_part: Callable[[], None] | None = None) -> Calibration:
    """Time every part of `space` the table lacks. `on_start(n)` gets the number of distinct
    parts, `on_part()` is called after each (a progress bar)."""
    parts = space_parts(space, shape, device)
    if on_start is not None:
        on_start(len(parts))
    return Calibration(parts=len(parts), timed=time_missing_parts(parts, shape, device, repeats, cache, on_part))
