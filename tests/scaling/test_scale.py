"""Compound and non-uniform scaling: published structures, the coefficient constraint, V2 members."""

from __future__ import annotations

import pytest

from nas.measure.costs import count_costs
from nas.scaling.scale import (
    EFFICIENTNET_PRESETS,
    PAPER_COEFFICIENTS,
    V2_SIZES,
    Coefficients,
    coefficient_grid,
    compound,
    compound_dropout,
    parse_coefficients,
    parse_phis,
    pick_candidates,
    preset,
    scale,
    stage_depths,
    v2_member,
)
from nas.spec.errors import ConfigError
from nas.spec.resources import load_arch
from nas.training.progressive import TrainingRecipe, recipe_path

# torchvision's EfficientNet-B1..B7 at 1000 classes
PUBLISHED_PARAMS = {
    "b1": 7_794_184, "b2": 9_109_994, "b3": 12_233_232, "b4": 19_341_616,
    "b5": 30_389_784, "b6": 43_040_704, "b7": 66_347_960,
}


@pytest.mark.parametrize("key", sorted(PUBLISHED_PARAMS))
def test_presets_reproduce_published_b1_to_b7(key: str) -> None:
    b0 = load_arch("efficientnet-b0")
    member = preset(b0, key)
    published = EFFICIENTNET_PRESETS[key]
    assert (member.width, member.depth, member.resolution, member.dropout) == (
        published.width, published.depth, published.resolution, published.dropout)
    assert member.name == f"efficientnet-{key}"
    params, _ = count_costs(member, macs=False)
    assert params == PUBLISHED_PARAMS[key]


def test_explicit_multipliers_equal_the_preset() -> None:
    b0 = load_arch("efficientnet-b0")
    explicit = scale(b0, width=1.1, depth=1.2, resolution=260, dropout=0.3)
    assert explicit == preset(b0, "b2")  # names are not compared
    # multipliers compose with the source's own
    assert scale(explicit, width=1.1).width == pytest.approx(1.21)


def test_compound_member_follows_the_formula() -> None:
    b0 = load_arch("efficientnet-b0")
    b2 = compound(b0, 2)
    assert b2.depth == pytest.approx(1.2**2) and b2.width == pytest.approx(1.1**2)
    assert b2.resolution == 296  # 224 * 1.15^2 = 296.2, to a multiple of 4
    assert b2.name == "efficientnet-b2"
    sizes = [count_costs(compound(b0, phi)) for phi in (1, 2, 3)]
    # each step of phi roughly doubles the multiply-adds (alpha * beta^2 * gamma^2 = 1.92)
    ratios = [b[1] / a[1] for a, b in zip(sizes, sizes[1:], strict=False)]
    assert all(1.6 < r < 2.4 for r in ratios), ratios


def test_compound_dropout_follows_the_published_ladder() -> None:
    assert [compound_dropout(0.2, phi) for phi in range(1, 8)] == [
        EFFICIENTNET_PRESETS[f"b{i}"].dropout for i in range(1, 8)]
    assert compound_dropout(0.2, 12) == 0.5


def test_coefficient_grid_holds_the_constraint() -> None:
    grid = coefficient_grid(tolerance=0.05)
    assert PAPER_COEFFICIENTS in grid and len(grid) > 20
    assert all(abs(c.alpha * c.beta**2 * c.gamma**2 - 2) <= 0.1 for c in grid)
    picked = pick_candidates(grid, 12)
    assert picked[0] == PAPER_COEFFICIENTS and len(set(picked)) == 12
    assert pick_candidates(grid, 1000) == pick_candidates(grid, len(grid))  # the budget caps at the grid


@pytest.mark.parametrize(("text", "expected"), [("1-7", [1, 2, 3, 4, 5, 6, 7]), ("2", [2]), ("0.5,3", [0.5, 3])])
def test_parse_phis(text: str, expected: list[float]) -> None:
    assert parse_phis(text) == expected


@pytest.mark.parametrize("text", ["7-1", "a", "0", "1-", "-1"])
def test_parse_phis_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match="--phi must be"):
        parse_phis(text)


def test_parse_coefficients_reads_text_and_files(tmp_path) -> None:
    assert parse_coefficients("1.2,1.1,1.15") == PAPER_COEFFICIENTS
    path = tmp_path / "coefficients.yaml"
    path.write_text("alpha: 1.3\nbeta: 1.05\ngamma: 1.2\naccuracy: 0.9\n")
    assert parse_coefficients(str(path)) == Coefficients(1.3, 1.05, 1.2)
    with pytest.raises(ConfigError, match="--coefficients must be"):
        parse_coefficients("1.2,1.1")


def test_stage_depths_add_more_layers_to_later_stages() -> None:
    grown = stage_depths([2, 4, 4, 6, 9, 15], 1.5)
    added = [g / b for g, b in zip(grown, [2, 4, 4, 6, 9, 15], strict=True)]
    assert all(g >= b for g, b in zip(grown, [2, 4, 4, 6, 9, 15], strict=True))
    assert added[-1] > added[0] and added == sorted(added)


def test_v2_members_grow_s_m_l_with_capped_resolution() -> None:
    source = load_arch("efficientnetv2-s")
    members = {size: v2_member(source, size) for size in "sml"}
    costs = {size: count_costs(arch) for size, (arch, _) in members.items()}
    assert costs["s"][0] < costs["m"][0] < costs["l"][0]
    assert costs["s"][1] < costs["m"][1] < costs["l"][1]
    assert costs["s"][0] == 21_458_488  # S is the source itself
    for arch, recipe in members.values():
        assert arch.resolution == recipe.eval_resolution <= 480
        assert recipe.train_resolution <= recipe.eval_resolution
    assert members["l"][0].resolution == 480
    assert [len(members[s][0].stages) for s in "sml"] == [6, 7, 7]  # M and L get a seventh stage
    assert members["l"][0].resolved_head_channels == 1280  # the head stays, as in V2-M/L
    recipes = {s: (r.train_resolution, r.eval_resolution, r.dropout, r.randaugment, r.mixup)
               for s, (_, r) in members.items()}
    assert recipes == {"s": (300, 384, 0.2, 10, 0.0), "m": (384, 480, 0.3, 15, 0.2), "l": (384, 480, 0.4, 20, 0.5)}


def test_v2_member_of_a_small_source_scales_sizes_and_honours_the_cap() -> None:
    tiny = load_arch("efficientnet-b0").with_(resolution=96, name="small")
    arch, recipe = v2_member(tiny, "l", max_resolution=100)
    assert arch.resolution == recipe.eval_resolution == 100  # 480 * 96/384 = 120, capped at 100
    assert recipe.progressive.resolution[1] <= recipe.train_resolution
    no_extra, _ = v2_member(tiny, "m", extra_stage=False)
    assert len(no_extra.stages) == len(tiny.stages)


def test_recipe_sidecar_round_trips(tmp_path) -> None:
    recipe = V2_SIZES["m"].recipe
    path = recipe_path(tmp_path / "m.yaml")
    assert path.name == "m.recipe.yaml"
    recipe.save(path)
    assert TrainingRecipe.load(path) == recipe
