"""Search spaces: shipped files load, sampling is define-by-run, bad files name key paths."""

import random

import optuna
import pytest
import yaml

from nas.spec.errors import ConfigError
from nas.spec.resources import space_names, space_path
from nas.spec.space import SearchSpace, param_name


class RandomChooser:
    """A trial-like object that picks uniformly (what the Optuna random sampler does)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.asked: dict[str, list] = {}

    def suggest_categorical(self, name: str, choices: list):
        self.asked[name] = choices
        return self.rng.choice(choices)


def test_shipped_spaces() -> None:
    assert space_names() == ["tiny", "v1", "v2"]
    v2 = SearchSpace.load("v2")
    assert len(v2.stages) == 6
    for st in v2.stages:
        assert set(st.op) == {"mbconv", "fused_mbconv"}
        assert set(st.kernel) == {3, 5} and set(st.expansion) == {1, 4, 6} and set(st.se) == {0, 0.25}
    assert v2.reference.name == "efficientnetv2-s"
    assert SearchSpace.load("v1").reference.name == "efficientnet-b0"
    assert SearchSpace.load("v1").objective.kind == "macs"


@pytest.mark.parametrize("name", ["v1", "v2", "tiny"])
def test_reference_is_inside_its_space(name: str) -> None:
    space = SearchSpace.load(name)
    params = space.params_for(space.reference)
    assert params is not None

    class Fixed:
        def suggest_categorical(self, key, choices):
            assert params[key] in choices
            return params[key]

    assert space.sample(Fixed()) == space.reference


def test_sampling_asks_only_real_choices_and_stays_in_space() -> None:
    space = SearchSpace.load("tiny")
    for seed in range(20):
        chooser = RandomChooser(seed)
        arch = space.sample(chooser)
        assert param_name(0, "layers") not in chooser.asked  # a fixed value is not a choice
        assert space.params_for(arch) is not None
        assert arch.resolution == space.resolution


def test_sampling_works_with_a_real_optuna_trial() -> None:
    space = SearchSpace.load("v2")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    trial = study.ask()
    arch = space.sample(trial)
    assert set(trial.params) == set(space.params_for(arch))


def test_user_space_file_loads_with_relative_reference(tmp_path) -> None:
    data = yaml.safe_load(space_path("tiny").read_text())
    ref = data.pop("reference")
    (tmp_path / "ref.yaml").write_text(yaml.safe_dump(ref))
    data["reference"] = "ref.yaml"
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(data))
    space = SearchSpace.load(str(tmp_path / "mine.yaml"))
    assert space.reference.name == "tiny-reference"


def _tiny() -> dict:
    return yaml.safe_load(space_path("tiny").read_text())


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda d: d["stages"][0].update(op=["mbconv", "conv"]), "stages[0].op[1] must be one of"),
        (lambda d: d["stages"][1].update(kernel=[]), "stages[1].kernel must be a value or a non-empty list"),
        (lambda d: d["stages"][1].update(layers=[1, -2]), "stages[1].layers[1] must be an integer >= 1"),
        (lambda d: d["stages"][1].update(layers=0), "stages[1].layers must be an integer >= 1"),
        (lambda d: d["stages"][2].update(stride=3), "stages[2].stride must be one of [1, 2]"),
        (lambda d: d["stages"][2].update(kernel=[3, 3]), "without repeated choices"),
        (lambda d: d["stages"][2].pop("op"), "stages[2].op must be given"),
        (lambda d: d.update(colour="red"), "colour must be a known key"),
        (lambda d: d["proxy"].update(resolution=2), "proxy.resolution must be an integer >= 8"),
        (
            lambda d: (d["proxy"].update(resolution=8, stem_stride=2), d["stages"][0].update(stride=2)),
            "total stride 16",
        ),
        (lambda d: d["objective"].update(kind="speed"), "objective.kind must be one of"),
        (lambda d: d.update(reference="no-such-net"), "reference: unknown architecture 'no-such-net'"),
        (lambda d: d.update(stages="all"), "stages must be a non-empty list"),
        (lambda d: d.update(name=3), "name must be a non-empty string"),
    ],
)
def test_bad_space_files_raise_config_error_with_key_path(mutate, fragment: str, tmp_path) -> None:
    data = _tiny()
    mutate(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        SearchSpace.load(str(path))
    assert fragment in str(info.value)
    assert str(path) in str(info.value)


def test_missing_and_unknown_spaces() -> None:
    with pytest.raises(ConfigError, match="unknown search space 'v3'; allowed: tiny, v1, v2"):
        SearchSpace.load("v3")
    with pytest.raises(ConfigError, match="does not exist"):
        SearchSpace.load("/nonexistent/space.yaml")


def test_space_size_counts_choices() -> None:
    assert SearchSpace.load("tiny").size() == (2 * 2 * 2 * 2) ** 3 * 2 * 2
