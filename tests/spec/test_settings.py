"""Settings from a saved run: the one reader that resume, scale and reproduce share."""

from __future__ import annotations

from pathlib import Path

import pytest

from nas.records.runs import RunDir
from nas.spec.errors import RunError
from nas.spec.resources import space_path
from nas.spec.settings import SearchSettings, default_sampler, saved_space, settings_from_run
from nas.spec.space import SearchSpace


def saved_run(tmp_path: Path, settings: SearchSettings) -> RunDir:
    """A run folder started the way `nas search` starts one (config.yaml + space.yaml)."""
    run = RunDir(tmp_path / "runs" / "saved")
    run.start(dict(settings.to_dict(), budget=3), space_path("tiny").read_text(), resume=False)
    return run


@pytest.fixture
def made(tmp_path: Path) -> tuple[RunDir, SearchSettings]:
    settings = SearchSettings(space=SearchSpace.load("tiny"), dataset="digits", device="cpu", seed=7,
                              val_fraction=0.3, sampler="random", pruner="none")
    settings = settings.with_objective("macs").with_overrides(epochs=3, max_train=128)
    return saved_run(tmp_path, settings), settings


def test_a_saved_run_gives_back_the_settings_it_was_made_with(made: tuple[RunDir, SearchSettings]) -> None:
    run, settings = made
    again = settings_from_run(run)
    assert again.to_dict() == settings.to_dict()
    assert again.proxy.epochs == 3 and again.proxy.max_train == 128  # the run's proxy, not the space file's
    assert again.space.objective.kind == "macs"


def test_given_values_replace_saved_ones(made: tuple[RunDir, SearchSettings]) -> None:
    run, _ = made
    again = settings_from_run(run, dataset="synthetic", device="auto", seed=1, val_fraction=0.2, sampler="tpe",
                              pruner="median", objective="pareto")
    assert (again.dataset, again.device, again.seed, again.val_fraction) == ("synthetic", "auto", 1, 0.2)
    assert (again.sampler, again.pruner, again.space.objective.kind) == ("tpe", "median", "pareto")


def test_another_space_keeps_the_runs_proxy(made: tuple[RunDir, SearchSettings]) -> None:
    run, _ = made
    other = SearchSpace.load("v2")
    again = settings_from_run(run, space=other)
    assert again.space.name == "v2" and again.proxy.epochs == 3 and again.proxy.max_train == 128


def test_saved_space_is_the_runs_copy(made: tuple[RunDir, SearchSettings]) -> None:
    run, _ = made
    text, space = saved_space(run)
    assert text == space_path("tiny").read_text() and space.name == "tiny"
    (run.path / "space.yaml").unlink()
    with pytest.raises(RunError, match="space.yaml"):
        saved_space(run)


def test_a_proxy_key_this_version_does_not_know_is_a_run_error(made: tuple[RunDir, SearchSettings]) -> None:
    run, _ = made
    run.config_path.write_text(run.config_path.read_text().replace("proxy:\n", "proxy:\n  warp: 9\n", 1))
    with pytest.raises(RunError, match="proxy"):
        settings_from_run(run)


def test_default_sampler_follows_the_objective() -> None:
    assert default_sampler("pareto") == "nsga2" and default_sampler("reward") == "tpe"
