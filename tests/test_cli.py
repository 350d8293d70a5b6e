"""The command line: listing, arch summaries, and bad input ending in one line with exit 2."""

from __future__ import annotations

import json

import pytest

from nas.cli import main
from tests.conftest import run_nas


def test_spaces_lists_each_space_on_one_line(capsys) -> None:
    assert main(["spaces"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["tiny", "v1", "v2"]


def test_arch_json_reports_params_and_macs(capsys) -> None:
    assert main(["arch", "efficientnetv2-s", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["params"] == 21_458_488
    assert 8.0e9 < info["macs"] < 8.9e9  # ~8.4 G multiply-adds at 384 px
    assert len(info["stages"]) == 6 and info["stages"][5]["layers"] == 15


def test_arch_table_for_b0(capsys) -> None:
    assert main(["arch", "efficientnet-b0"]) == 0
    out = capsys.readouterr().out
    assert "5,288,548 params" in out and "0.386 G MACs" in out


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["search", "--budget", "0"], "--budget: must be a positive integer, but got '0'"),
        (["search", "--budget", "-3"], "--budget: must be a positive integer"),
        (["search", "--space", "v9"], "unknown search space 'v9'"),
        (["search", "--space", "tiny", "--dataset", "imagenet"], "unknown dataset 'imagenet'"),
        (["search", "--space", "tiny", "--dataset", ""], "unknown dataset ''"),
        (["search", "--space", "tiny", "--dataset", "cifar10:/nonexistent/dir"], "/nonexistent/dir"),
        (["search", "--resume"], "--resume needs --name"),
        (["search", "--space", "/no/such/space.yaml"], "does not exist"),
        (["search", "--space", "tiny", "--device", "tpu"], "--device must be auto, cpu, cuda"),
        (["search", "--sampler", "cma"], "invalid choice: 'cma'"),
        (["arch", "resnet50"], "unknown architecture 'resnet50'"),
        (["show", "nothing-here"], "no run named 'nothing-here'"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args, fragment, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        code = main(args)
        raise SystemExit(code)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("nas: error:") and fragment in err


@pytest.mark.slow
def test_bad_space_file_from_a_real_process_has_no_traceback(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nstem: {channels: 8}\nreference: efficientnet-b0\nstages:\n"
                   "  - {op: mbconv, kernel: [3, 4], expansion: 1, channels: 8, layers: 1}\n")
    done = run_nas("search", "--space", str(bad), "--budget", "2", cwd=tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.strip() == (
        f"nas: error: {bad}: stages[0].kernel[1] must be one of [1, 3, 5, 7, 9], but got 4"
    )
