"""`nas scale`: family files, explicit multipliers, V2 recipes, and the coefficient grid search."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from nas.cli import main
from nas.commands.scale import resolve_source
from nas.spec.arch import Arch
from nas.spec.resources import load_arch
from nas.spec.space import SearchSpace
from nas.training.progressive import TrainingRecipe


def test_presets_write_published_members(tmp_path: Path, capsys) -> None:
    # (all seven counts are checked in tests/test_scale.py; `--preset all` writes the same files)
    assert main(["scale", "efficientnet-b0", "--preset", "b1,b3", "-o", str(tmp_path / "fam")]) == 0
    files = sorted(p.name for p in (tmp_path / "fam").glob("*.yaml"))
    assert files == ["b1.yaml", "b3.yaml"]
    b3 = Arch.load(tmp_path / "fam" / "b3.yaml")
    assert (b3.width, b3.depth, b3.resolution, b3.dropout, b3.name) == (1.2, 1.4, 300, 0.3, "efficientnet-b3")
    assert "12,233,232" in capsys.readouterr().out


def test_explicit_multipliers_write_one_file(tmp_path: Path) -> None:
    out = tmp_path / "b2.yaml"
    assert main(["scale", "efficientnet-b0", "--width", "1.1", "--depth", "1.2", "--resolution", "260",
                 "-o", str(out)]) == 0
    arch = Arch.load(out)
    assert (arch.width, arch.depth, arch.resolution) == (1.1, 1.2, 260)
    assert arch == load_arch("efficientnet-b0").with_(width=1.1, depth=1.2, resolution=260)


def test_compound_phi_range_with_coefficients(tmp_path: Path) -> None:
    assert main(["scale", "efficientnet-b0", "--phi", "1-2", "--coefficients", "1.3,1.05,1.2",
                 "-o", str(tmp_path / "fam")]) == 0
    b2 = Arch.load(tmp_path / "fam" / "b2.yaml")
    assert b2.depth == pytest.approx(1.69) and b2.width == pytest.approx(1.1025)
    assert b2.resolution == 324  # 224 * 1.2^2 = 322.6 -> multiple of 4


def test_v2_sizes_write_members_and_recipes(tmp_path: Path) -> None:
    fam = tmp_path / "fam"
    assert main(["scale", "efficientnetv2-s", "--method", "v2", "--sizes", "s,m", "-o", str(fam)]) == 0
    assert sorted(p.name for p in fam.iterdir()) == ["m.recipe.yaml", "m.yaml", "s.recipe.yaml", "s.yaml"]
    recipe = TrainingRecipe.load(fam / "m.recipe.yaml")
    assert (recipe.train_resolution, recipe.eval_resolution, recipe.dropout, recipe.randaugment, recipe.mixup) == (
        384, 480, 0.3, 15, 0.2)
    assert Arch.load(fam / "m.yaml").resolution == 480  # an ordinary architecture file: nas arch reads it
    assert main(["arch", str(fam / "m.yaml"), "--json"]) == 0


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--phi", "7-1"], "--phi must be a range like 1-7"),
        (["--preset", "b9"], "--preset must be one of"),
        (["--preset", "b1", "--width", "1.1"], "must be used without --phi or --preset"),
        (["--phi", "1-3", "-o", "x.yaml"], "-o must be a folder when writing several members"),
        (["--method", "v2", "--sizes", "s,xl"], "--sizes must be a comma list"),
        (["--width", "-1"], "width multiplier must be a number > 0"),
    ],
)
def test_bad_scale_arguments_exit_2(args: list[str], fragment: str, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["scale", "efficientnet-b0", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and fragment in err, err


def test_unknown_source_is_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["scale", "no-such-thing"]) == 2
    assert "SOURCE must be a run (name or folder) or an architecture" in capsys.readouterr().err


def test_a_run_source_uses_its_best_architecture(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "exp1"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("space: tiny\n")
    best = SearchSpace.load("tiny").reference.with_(name="exp1-best")
    (run / "best.yaml").write_text("# best of run exp1\n" + best.to_yaml())
    arch, found = resolve_source("exp1", str(tmp_path / "runs"))
    assert arch == best and found.path == run
    assert main(["scale", "exp1", "--runs-dir", str(tmp_path / "runs"), "--phi", "1"]) == 0
    assert Arch.load(run / "family" / "b1.yaml").name == "exp1-b1"


@pytest.mark.slow
def test_grid_search_stores_a_run_and_the_constrained_best(tmp_path: Path, capsys) -> None:
    source = tmp_path / "tiny.yaml"
    SearchSpace.load("tiny").reference.save(source)
    out = tmp_path / "coefficients"
    assert main(["scale", str(source), "--grid-search", "--budget", "3", "--space", "tiny", "--dataset", "synthetic",
                 "--epochs", "1", "--max-train", "128", "--device", "cpu", "-o", str(out)]) == 0
    with (out / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 and all(r["state"] == "COMPLETE" for r in rows)
    for name in ("config.yaml", "space.yaml", "best.yaml", "coefficients.yaml", "trials/0000/arch.yaml"):
        assert (out / name).is_file(), name
    best = yaml.safe_load((out / "coefficients.yaml").read_text())
    assert abs(best["alpha"] * best["beta"] ** 2 * best["gamma"] ** 2 - 2) <= 0.1  # within 5% of 2
    assert best["accuracy"] == max(float(r["accuracy"]) for r in rows)
    # the first candidate is the paper's point, and candidate images grow with gamma
    first = Arch.load(out / "trials" / "0000" / "arch.yaml")
    assert (first.depth, first.width) == (1.2, 1.1)
    assert "--coefficients" in capsys.readouterr().out
    assert main(["show", str(out)]) == 0  # readable like any search run
    assert main(["scale", str(source), "--coefficients", str(out / "coefficients.yaml"), "--phi", "1",
                 "-o", str(tmp_path / "fam")]) == 0
