"""The spaces and reference architectures ship inside a regular (non-editable) install."""

from __future__ import annotations

import json
import os
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_install_finds_spaces_and_references(tmp_path: Path) -> None:
    target = tmp_path / "site"
    # build from a clean copy: setuptools reuses a checkout's stale build/ folder, which once hid a
    # subpackage missing from pyproject's package list
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", "build", "runs", "*.egg-info", "__pycache__", ".ruff_cache", ".pytest_cache", ".hypothesis"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(source)],
        check=True, capture_output=True, timeout=300,
    )
    code = (
        "import nas, nas.resources as r, nas.space as s, pkgutil;"
        "print(nas.__file__);"
        "print(r.space_names(), r.reference_names());"
        "print(s.SearchSpace.load('v2').reference.name);"
        "print(sorted(m.name for m in pkgutil.walk_packages(nas.__path__, 'nas.')))"
    )
    env = dict(os.environ, PYTHONPATH=str(target))
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120, check=True)
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith(str(target))  # the installed copy, not the checkout
    assert lines[1] == (
        "['tiny', 'v1', 'v2'] ['efficientnet-b0', 'efficientnetv2-l', 'efficientnetv2-m', 'efficientnetv2-s']"
    )
    assert lines[2] == "efficientnetv2-s"
    # every module of the checkout is in the wheel (a subpackage missing from pyproject's list
    # would break `nas` for everyone who installs without -e)
    checkout = {m.name for m in pkgutil.walk_packages([str(REPO / "nas")], "nas.")}
    # the spaces live at the top of the checkout and install as nas.search_spaces (package-dir)
    checkout |= {"nas.search_spaces"} | {
        f"nas.search_spaces.{m.name}" for m in pkgutil.iter_modules([str(REPO / "search_spaces")])}
    assert lines[3] == str(sorted(checkout))
    cli = subprocess.run([sys.executable, "-m", "nas", "arch", "efficientnet-b0", "--json"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["params"] == 5_288_548
