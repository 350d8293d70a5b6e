"""The proxy keeps every choice of every stage distinct, for each shipped space; a user's space
whose proxy merges choices is refused before any trial, naming the stage, field and values."""

from __future__ import annotations

from dataclasses import replace

import pytest

from nas.spec.errors import ConfigError
from nas.spec.proxy_check import block_signature, check_proxy_keeps_choices, collapsed_choices
from nas.spec.settings import SearchSettings
from nas.spec.space import STAGE_FIELDS, SearchSpace


def _variants(space: SearchSpace, stage: int, name: str):
    base = space.reference if space.params_for(space.reference) is not None else space.sample(_First())
    for value in space.stages[stage].choices(name):
        stages = list(base.stages)
        stages[stage] = replace(stages[stage], **{name: value})
        yield value, base.with_(stages=tuple(stages))


class _First:
    def suggest_categorical(self, name, choices):
        return choices[0]


@pytest.mark.parametrize("space_name", ["v1", "v2", "tiny"])
def test_every_choice_of_every_stage_stays_distinct_at_the_proxy(space_name: str) -> None:
    space = SearchSpace.load(space_name)
    checked = 0
    for i, st in enumerate(space.stages):
        for name in STAGE_FIELDS:
            if len(st.choices(name)) < 2:
                continue
            proxies = {}
            for value, arch in _variants(space, i, name):
                proxies.setdefault(block_signature(space.proxy_arch(arch)), []).append(value)
            fulls = {block_signature(arch) for _, arch in _variants(space, i, name)}
            # as many distinct proxy networks as distinct full-size ones
            assert len(proxies) == len(fulls), f"{space_name} stages[{i}].{name}: {list(proxies.values())}"
            checked += 1
    assert checked >= len(space.stages)
    assert collapsed_choices(space) == []


def test_plain_rounding_would_merge_v2_choices() -> None:
    """The check can fail: shrinking by plain rounding (what the proxy did before) merges
    stage 0's layers 1 and 2 and stage 3's layers 6 and 8."""
    space = SearchSpace.load("v2")
    merged = {block_signature(space.proxy.apply(arch)) for _, arch in _variants(space, 0, "layers")}
    assert len(merged) < 3


def test_proxy_order_follows_the_full_size_order() -> None:
    space = SearchSpace.load("v1")
    widths = [space.proxy_arch(arch).stages[0].channels for _, arch in _variants(space, 0, "channels")]
    assert widths == sorted(widths) and len(set(widths)) == 3


SPACE = """
name: merging
reference: {name: r, resolution: 32, stem: {channels: 16, stride: 1}, head: {channels: 64},
            stages: [{op: mbconv, kernel: 3, expansion: 1, se: 0, channels: 16, layers: 1, stride: 1}]}
proxy: {resolution: 16, width: 0.25, depth: 1.0}
resolution: 32
stem: {channels: 16, stride: 1}
head: {channels: 64}
stages:
  - {op: mbconv, kernel: 3, expansion: [4, 4.25], se: [0, 0.25], channels: 16, layers: 1, stride: 1}
"""


def test_a_space_whose_proxy_merges_choices_is_refused_with_the_stage_field_and_values(tmp_path) -> None:
    # at width 0.25 the 16 channels become 8: expansions 4 and 4.25 both give 32 (4.25*8=34 -> 32)
    path = tmp_path / "merging.yaml"
    path.write_text(SPACE)
    space = SearchSpace.load(str(path))
    problems = collapsed_choices(space)
    assert problems == ["stages[0].expansion: choices [4.0, 4.25] become the same network under the proxy "
                        "(width x0.25, depth x1.0)"]
    with pytest.raises(ConfigError, match=r"merging.yaml: stages\[0\].expansion: choices \[4.0, 4.25\]"):
        check_proxy_keeps_choices(space)
    with pytest.raises(ConfigError, match="expansion"):
        SearchSettings(space=space).check()
    # at full width the same space is fine
    SearchSettings(space=replace(space, proxy=replace(space.proxy, width=1.0))).check()


def test_choices_that_round_to_one_width_at_full_size_are_reported() -> None:
    # MnasNet's 0.75x of 16 channels is 12, which the builder rounds to 16: one network
    space = SearchSpace.load("v1")
    stages = list(space.stages)
    stages[0] = replace(stages[0], channels=(12, 16, 20))
    problems = collapsed_choices(replace(space, stages=tuple(stages)))
    assert problems == ["stages[0].channels: choices [12, 16] are the same network at full size "
                        "(channels round to multiples of 8)"]
