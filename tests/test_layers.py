"""The import contracts in pyproject.toml ([tool.importlinter]) hold, and would catch a breach."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[1]


def lint_imports(config: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` with `config`, from the repository's root (a fresh process: no cache shared)."""
    code = ("import sys\nfrom importlinter.cli import lint_imports\n"
            f"sys.exit(lint_imports(config_filename={str(config)!r}, no_cache=True, no_logo=True))")
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_the_import_contracts_are_kept() -> None:
    done = lint_imports(REPO / "pyproject.toml")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "2 kept, 0 broken" in done.stdout


def test_a_spec_module_that_imported_torch_would_break_the_contract(tmp_path: Path) -> None:
    # not vacuous: counting nas.measure (which times steps with torch) as spec breaks it
    settings = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    spec = settings["contracts"][0]
    lines = ["[tool.importlinter]", 'root_package = "nas"', "include_external_packages = true",
             "exclude_type_checking_imports = true", "", "[[tool.importlinter.contracts]]",
             f"name = {spec['name']!r}", 'type = "forbidden"',
             f"source_modules = {[*spec['source_modules'], 'nas.measure']!r}",
             f"forbidden_modules = {spec['forbidden_modules']!r}"]
    config = tmp_path / "breach.toml"
    config.write_text("\n".join(lines).replace("'", '"') + "\n")
    done = lint_imports(config)
    assert done.returncode != 0 and "0 kept, 1 broken" in done.stdout, done.stdout[-3000:] + done.stderr[-2000:]
    assert "nas.measure -> torch" in done.stdout
