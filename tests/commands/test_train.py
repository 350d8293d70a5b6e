"""`nas train` options: recipes beside the architecture, resume settings, one-line errors."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from nas.cli import build_parser, main
from nas.commands.train import build_config
from nas.spec.space import SearchSpace
from nas.training.full import TrainConfig
from nas.training.progressive import DEFAULT_SCHEDULE, ProgressiveSchedule, TrainingRecipe

TINY = SearchSpace.load("tiny").reference
RECIPE = TrainingRecipe(train_resolution=24, eval_resolution=32, dropout=0.3, randaugment=15, mixup=0.2,
                        progressive=ProgressiveSchedule(resolution=(10, 24), randaugment=(5, 20), mixup=(0, 0.2),
                                                        dropout=(0.1, 0.4)))


def parse(*args: str) -> argparse.Namespace:
    return build_parser().parse_args(["train", "arch.yaml", *args])


def test_recipe_sets_sizes_and_regularisation() -> None:
    config = build_config(parse(), TINY, RECIPE, None)
    assert (config.resolution, config.eval_resolution, config.dropout, config.randaugment, config.mixup) == (
        24, 32, 0.3, 15, 0.2)
    assert config.progressive is None


def test_progressive_uses_the_recipe_schedule_scaled_to_the_train_size() -> None:
    config = build_config(parse("--progressive", "--resolution", "12"), TINY, RECIPE, None)
    assert config.resolution == 12 and config.eval_resolution == 16  # the recipe's 24:32 ratio
    assert config.progressive.resolution == (5, 12) and config.progressive.dropout == (0.1, 0.4)
    # explicit values end the schedule
    config = build_config(parse("--progressive", "--randaugment", "3", "--stages", "2"), TINY, RECIPE, None)
    assert config.progressive.randaugment == (3, 3) and config.progressive.stages == 2


def test_without_a_recipe_the_v2_s_schedule_is_scaled_to_the_arch() -> None:
    config = build_config(parse("--progressive"), TINY, None, None)
    assert config.progressive == DEFAULT_SCHEDULE.for_target(TINY.resolution)


def test_resume_keeps_saved_settings_unless_given() -> None:
    saved = TrainConfig(epochs=7, batch=16, progressive=DEFAULT_SCHEDULE.for_target(16, stages=3))
    assert build_config(parse("--resume"), TINY, None, saved) == saved
    assert build_config(parse("--resume", "--device", "cpu"), TINY, None, saved).device == "cpu"


def test_existing_output_and_changed_settings_exit_2(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    TINY.save(tmp_path / "tiny.yaml")
    quick = ["train", "tiny.yaml", "--dataset", "synthetic", "--epochs", "1", "--batch", "16", "--max-train", "32",
             "--val-fraction", "0.05", "--device", "cpu", "--quiet"]
    assert main(quick) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "runs/train-tiny-reference/metrics.json" in out
    assert main(quick) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert main([*quick, "--resume", "--batch", "32"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--batch must be 16 as when" in err
    assert main(["train", "tiny.yaml", "--resume", "--quiet"]) == 0  # nothing left to do: finished


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--optimizer", "lamb"], "invalid choice: 'lamb'"),
        (["--epochs", "0"], "--epochs: must be a positive integer"),
        (["--ema", "1.5"], "--ema must be a decay in [0, 1)"),
        (["--dataset", "imagenet"], "unknown dataset 'imagenet'"),
    ],
)
def test_bad_train_arguments_exit_2(args: list[str], fragment: str, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    TINY.save(tmp_path / "tiny.yaml")
    with pytest.raises(SystemExit) as info:
        raise SystemExit(main(["train", "tiny.yaml", *args]))
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and fragment in err, err
