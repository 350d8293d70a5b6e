"""Does the proxy keep a space's choices apart (and are they apart at full size)?

A choice that shrinks into another one (two channel counts rounded to the same multiple of 8,
two layer counts rounded up to the same depth, two expansions giving the same hidden width)
makes different architectures train as one network:
the sampler spends trials on a difference that is not there, and the winner's value for that
choice is noise. `collapsed_choices` finds every such case before a search starts.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from nas.spec.arch import Arch, Stage, expanded_channels, squeeze_channels
from nas.spec.errors import ConfigError
from nas.spec.space import STAGE_FIELDS, SearchSpace


def block_signature(arch: Arch) -> tuple[Any, ...]:
    """What the builder instantiates for `arch`, block by block (the same helpers size the
    layers), without building it: two architectures with equal signatures are one network."""
    blocks: list[tuple[Any, ...]] = []
    channels = arch.resolved_stem_channels
    for stage in arch.resolved_stages():
        for layer in range(stage.layers):
            stride = stage.stride if layer == 0 else 1
            residual = stage.skip and stride == 1 and channels == stage.channels
            se = squeeze_channels(channels, stage.se) if stage.se > 0 else 0
            blocks.append((stage.op, stage.kernel, channels, stage.channels, stride,
                           expanded_channels(channels, stage.expansion), se, residual))
            channels = stage.channels
    return (arch.resolved_stem_channels, arch.stem_stride, tuple(blocks), arch.resolved_head_channels)


def _bases(space: SearchSpace) -> list[Arch]:
    """Architectures whose single-field variations are compared: every stage at its first
    choices, at its last choices, and the reference when it lies in the space."""
    first = space._arch(tuple(_stage_at(space, i, 0) for i in range(len(space.stages))))
    last = space._arch(tuple(_stage_at(space, i, -1) for i in range(len(space.stages))))
    bases = [first, last]
    if space.params_for(space.reference) is not None:
        bases.append(space.reference)
    return bases


def _stage_at(space: SearchSpace, index: int, pick: int) -> Stage:
    st = space.stages[index]
    return Stage(stride=st.stride, **{name: st.choices(name)[pick] for name in STAGE_FIELDS})


def collapsed_choices(space: SearchSpace) -> list[str]:
    """One line per stage field whose choices are one network where they should be two: at the
    proxy though not at full size, or already at full size (the builder rounds channels to
    multiples of 8, so e.g. 12 and 16 channels are one network)."""
    at_proxy: dict[tuple[int, str], set[Any]] = {}
    at_full: dict[tuple[int, str], list[frozenset[Any]]] = {}
    bases = _bases(space)
    for base in bases:
        for i, st in enumerate(space.stages):
            for name in STAGE_FIELDS:
                options = st.choices(name)
                if len(options) < 2:
                    continue
                proxies: dict[tuple[Any, ...], list[tuple[Any, tuple[Any, ...]]]] = {}
                fulls: dict[tuple[Any, ...], set[Any]] = {}
                for value in options:
                    stages = list(base.stages)
                    stages[i] = replace(stages[i], **{name: value})
                    arch = base.with_(stages=tuple(stages))
                    full = block_signature(arch)
                    proxies.setdefault(block_signature(space.proxy_arch(arch)), []).append((value, full))
                    fulls.setdefault(full, set()).add(value)
                for group in proxies.values():
                    if len({full for _, full in group}) > 1:  # apart at full size, one at the proxy
                        at_proxy.setdefault((i, name), set()).update(v for v, _ in group)
                merged = frozenset().union(*(g for g in fulls.values() if len(g) > 1))
                at_full.setdefault((i, name), []).append(merged)
    p = space.proxy
    lines = [f"stages[{i}].{name}: choices {sorted(values)} become the same network under the proxy "
             f"(width x{p.width}, depth x{p.depth})" for (i, name), values in sorted(at_proxy.items())]
    # a full-size merge counts only when no base tells the choices apart (skip, say, matters
    # only in stages with a repeated block)
    for (i, name), merges in sorted(at_full.items()):
        always = frozenset.intersection(*merges) if len(merges) == len(bases) else frozenset()
        if always:
            lines.append(f"stages[{i}].{name}: choices {sorted(always)} are the same network at full size "
                         f"(channels round to multiples of 8)")
    return lines


def check_proxy_keeps_choices(space: SearchSpace) -> None:
    """Refuse a space whose proxy merges choices (ConfigError naming each stage and field)."""
    problems = collapsed_choices(space)
    if problems:
        more = f" ({len(problems) - 1} more such fields)" if len(problems) > 1 else ""
        raise ConfigError(f"{space.source}: {problems[0]}; raise proxy.width or proxy.depth, or drop one of the "
                          f"choices{more}")
