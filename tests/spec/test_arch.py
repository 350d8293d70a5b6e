"""Architectures: string and YAML round trips, rounding rules, validation messages."""

import pytest

from nas.spec.arch import Arch, Stage, round_channels, round_layers
from nas.spec.errors import ConfigError
from nas.spec.resources import load_arch, reference_names

REFERENCES = ["efficientnet-b0", "efficientnetv2-s", "efficientnetv2-m", "efficientnetv2-l"]


def test_all_references_ship() -> None:
    assert reference_names() == sorted(REFERENCES)


@pytest.mark.parametrize("name", REFERENCES)
def test_string_and_yaml_round_trip(name: str, tmp_path) -> None:
    arch = load_arch(name)
    assert Arch.from_string(arch.to_string()) == arch
    assert Arch.from_yaml(arch.to_yaml()) == arch
    arch.save(tmp_path / "a.yaml")
    assert Arch.load(tmp_path / "a.yaml") == arch
    assert load_arch(str(tmp_path / "a.yaml")) == arch
    assert load_arch(arch.to_string()) == arch


def test_round_trip_keeps_multipliers_noskip_and_float_expansion() -> None:
    arch = Arch(
        stages=(Stage("mbconv", 5, 2.5, 0.125, 20, 3, 2, skip=False), Stage("fused_mbconv", 3, 1, 0, 16, 1, 1)),
        stem_channels=12, stem_stride=1, head_channels=96, width=1.1, depth=1.2, resolution=260,
        dropout=0.3, drop_path=0.1,
    )
    text = arch.to_string()
    assert "noskip" in text and "w1.1" in text and "r260" in text
    assert Arch.from_string(text) == arch
    assert Arch.from_yaml(arch.to_yaml()) == arch


def test_b0_string_is_compact_and_readable() -> None:
    text = load_arch("efficientnet-b0").to_string()
    assert text.startswith("w1_d1_r224_do0.2_dp0.2,stem32_s2,mb_k3_e1_se0.25_c16_l1_s1,")
    assert text.endswith(",head1280")


def test_round_channels_follows_the_ten_percent_rule() -> None:
    assert round_channels(32 * 1.1) == 32  # 35.2 -> 32 (>= 90% of 35.2)
    assert round_channels(16 * 0.25) == 8  # never below the divisor
    assert round_channels(40 * 1.4) == 56
    assert round_channels(27) == 32  # 24 would be < 90% of 27
    assert round_layers(3, 1.1) == 4 and round_layers(1, 0.34) == 1 and round_layers(15, 0.34) == 6


def test_resolved_stages_apply_width_and_depth() -> None:
    arch = load_arch("efficientnetv2-s").with_(width=0.25, depth=0.34)
    stages = arch.resolved_stages()
    assert [s.channels for s in stages] == [8, 16, 16, 32, 40, 64]
    assert [s.layers for s in stages] == [1, 2, 2, 3, 4, 6]
    assert arch.resolved_stem_channels == 8 and arch.resolved_head_channels == 320


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("nonsense", "needs globals"),
        ("w1_d1_r224_do0.2_dp0.2,stem32_s2,xx_k3_e1_se0_c16_l1_s1,head1280", "must start with one of"),
        ("w1_d1_r224_do0.2_dp0.2,stem32_s2,mb_k4_e1_se0_c16_l1_s1,head1280", "stages[0].kernel"),
        ("w1_d1_r224_do0.2_dp0.2,stem32_s2,mb_k3_e1_se0_c16_s1,head1280", "lacks ['l']"),
        ("w1_d1_r224_do0.2,stem32_s2,mb_k3_e1_se0_c16_l1_s1,head1280", "lacks ['dp']"),
        ("w1_d1_r224_do0.2_dp0.2,stem32_s2,mb_k3_e1_se0_c16_l1_s1_zz9,head1280", "unknown part"),
    ],
)
def test_bad_strings_raise_config_error(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        Arch.from_string(text)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda d: d["stages"][1].update(kernel=4), "stages[1].kernel must be one of [1, 3, 5, 7, 9], but got 4"),
        (lambda d: d["stages"][0].update(op="conv"), "stages[0].op must be one of"),
        (lambda d: d["stages"][2].update(layers=0), "stages[2].layers must be an integer >= 1, but got 0"),
        (lambda d: d["stages"][2].update(colour="red"), "stages[2].colour must be a known key"),
        (lambda d: d.update(stages=[]), "stages must be a non-empty list"),
        (lambda d: d["stem"].update(stride=3), "stem.stride must be one of [1, 2]"),
        (lambda d: d.update(dropout=1.5), "dropout must be a number in [0, 1)"),
        (lambda d: d["stages"][0].update(se="yes"), "stages[0].se must be a finite number"),
    ],
)
def test_bad_arch_files_name_the_key_path(mutate, fragment: str, tmp_path) -> None:
    data = load_arch("efficientnet-b0").to_dict()
    data.pop("string")
    mutate(data)
    import yaml

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        Arch.load(path)
    assert fragment in str(info.value)
    assert str(path) in str(info.value)


def test_unknown_reference_lists_the_allowed_ones() -> None:
    with pytest.raises(ConfigError, match="efficientnet-b0"):
        load_arch("resnet50")


def test_broken_yaml_is_a_config_error(tmp_path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("stages: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        Arch.load(path)
