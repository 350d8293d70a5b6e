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
        "import nas, nas.spec.resources as r, nas.spec.space as s, pkgutil;"
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


# -- the locked test environment ------------------------------------------------------------
LOCK = REPO / "requirements" / "test.lock"


def _locked() -> dict[str, str]:
    """{normalised name: version} of the lock's entries whose marker holds on this interpreter."""
    from packaging.markers import Marker
    from packaging.utils import canonicalize_name

    pins = {}
    for line in LOCK.read_text().splitlines():
        if not line or line.startswith((" ", "#")):
            continue
        requirement, _, marker = line.partition(";")
        if marker.strip() and not Marker(marker.strip()).evaluate():
            continue
        name, _, version = requirement.strip().partition("==")
        pins[canonicalize_name(name)] = version
    return pins


def _test_closure() -> set[str]:
    """Every distribution `nas[test]` needs here, transitively (what the README's command 2 installs)."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: set[tuple[str, str]] = set()
    todo = [Requirement("nas[test]")]
    while todo:
        req = todo.pop()
        for extra in sorted(req.extras) or [""]:
            if (canonicalize_name(req.name), extra) in seen:
                continue
            seen.add((canonicalize_name(req.name), extra))
            for dep in map(Requirement, metadata.requires(req.name) or []):
                if dep.marker is None or dep.marker.evaluate({"extra": extra}):
                    todo.append(dep)
    return {name for name, _ in seen} - {"nas"}


def test_the_test_environment_is_the_locked_one() -> None:
    """README command 2 installs through requirements/test.lock: every package the test extra
    needs is pinned there, and is installed at exactly that version (torch's local build label,
    `+cpu`, aside). Fails when the suite runs in an environment installed another way."""
    from importlib import metadata

    from packaging.version import Version

    pins = _locked()
    assert Version(pins["torch"]) == Version("2.13.0")  # the README's pin
    wrong = []
    for name in sorted(_test_closure()):
        assert name in pins, f"{name} is needed by nas[test] but not in {LOCK.name}: refresh the lock (README)"
        installed = Version(metadata.version(name))
        if Version(installed.public) != Version(pins[name]):
            wrong.append(f"{name} {installed} (locked {pins[name]})")
    assert not wrong, "not the locked versions: " + ", ".join(wrong) + "; install with README command 2"


def test_ci_runs_the_readmes_test_command_verbatim() -> None:
    readme = (REPO / "README.md").read_text()
    command_2 = next(line for line in readme.splitlines() if line.startswith("pip install") and "pytest" in line)
    assert "-c requirements/test.lock" in command_2
    assert command_2 in (REPO / ".ci" / "run").read_text()
