"""`nas arch` (and every command that takes an architecture): a file, a name or a string of any
length; anything else is one line naming what is wrong and exit 2, never a file-system error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nas.cli import main
from nas.spec.arch import Arch
from nas.spec.errors import ConfigError
from nas.spec.resources import load_arch
from nas.spec.space import SearchSpace
from tests.conftest import REPO, nas_env

OPS = ("fmb", "mb")


def long_arch_string(blocks: int = 16) -> str:
    """A valid architecture string of `blocks` one-layer stages: longer than a file name may be."""
    stages = [
        f"{OPS[i % 2]}_k{3 + 2 * (i % 2)}_e4_se{0.25 if i % 2 else 0}_c{16 + 8 * (i % 3)}_l1_s1" for i in range(blocks)
    ]
    return ",".join(["w1_d1_r32_do0.2_dp0.2", "stem16_s1", *stages, "head256"])


LONG = long_arch_string()
JUNK = "q" * 300


def cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_long_arch_string_round_trips_like_its_yaml_file(tmp_path: Path, capsys) -> None:
    assert len(LONG) >= 300
    (tmp_path / "long.yaml").write_text(yaml.safe_dump(Arch.from_string(LONG).to_dict()))
    code, out, err = cli(capsys, "arch", LONG, "--json")
    assert code == 0, err
    from_string = json.loads(out)
    code, out, err = cli(capsys, "arch", str(tmp_path / "long.yaml"), "--json")
    assert code == 0, err
    from_file = json.loads(out)
    assert from_string["string"] == LONG == from_file["string"]
    assert from_string["params"] == from_file["params"] and from_string["macs"] == from_file["macs"]


def test_the_installed_command_prints_a_long_arch_string(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "nas", "arch", LONG], cwd=tmp_path, env=nas_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "params" in done.stdout and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (JUNK, "unknown architecture 'qqqq"),
        ("a/b\0c", "unknown architecture 'a/b\\x00c'"),
        ("w1_d1_r32/x,stem16_s1,\0,head256", "globals of the architecture string"),
        ("{tmp}", "is a directory"),
        (LONG.replace("mb_k5", "xx_k5", 1), "stages[1] of the architecture string must start with one of"),
    ],
    ids=["junk-300", "slash-nul", "slash-nul-string", "directory", "long-with-bad-token"],
)
def test_what_is_neither_a_file_nor_an_architecture_is_one_line_exit_2(
    text: str, fragment: str, tmp_path: Path, capsys
) -> None:
    code, out, err = cli(capsys, "arch", text.replace("{tmp}", str(tmp_path)))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("nas: error: ") and fragment in err, err


@pytest.mark.parametrize("command", [["scale", "--preset", "b1", "-o", "{tmp}/fam"], ["export", "-o", "{tmp}/ex"],
                                     ["train", "-o", "{tmp}/tr", "--epochs", "1"]])
@pytest.mark.parametrize("text", [JUNK, "a/b\0c"], ids=["junk-300", "slash-nul"])
def test_every_command_that_takes_an_architecture_rejects_junk_in_one_line(
    command: list[str], text: str, tmp_path: Path, capsys
) -> None:
    args = [command[0], text, *(a.replace("{tmp}", str(tmp_path)) for a in command[1:])]
    code, out, err = cli(capsys, *args)
    assert code == 2, err
    assert err.count("\n") == 1 and "architecture" in err, err
    assert not any(tmp_path.iterdir())  # nothing written


def test_scale_and_export_take_a_long_arch_string(tmp_path: Path, capsys) -> None:
    code, _, err = cli(capsys, "scale", LONG, "--preset", "b1", "-o", str(tmp_path / "fam"))
    assert code == 0, err
    assert (tmp_path / "fam" / "b1.yaml").is_file()


def test_a_space_reference_may_be_a_long_string_and_junk_names_the_file(tmp_path: Path) -> None:
    tiny = yaml.safe_load((REPO / "search_spaces" / "tiny.yaml").read_text())
    space_file = tmp_path / "space.yaml"
    space_file.write_text(yaml.safe_dump({**tiny, "reference": LONG}))
    assert SearchSpace.load(space_file).reference.to_string() == LONG
    space_file.write_text(yaml.safe_dump({**tiny, "reference": JUNK}))
    with pytest.raises(ConfigError, match=r"space\.yaml: reference: unknown architecture 'qqq") as info:
        SearchSpace.load(space_file)
    assert "\n" not in str(info.value)


def test_an_existing_file_wins_over_a_name(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "efficientnet-b0").write_text(yaml.safe_dump(Arch.from_string(LONG).to_dict()))
    assert load_arch("efficientnet-b0").to_string() == LONG
    assert load_arch("efficientnetv2-s").name == "efficientnetv2-s"
