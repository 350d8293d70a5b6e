"""The import contracts in pyproject.toml ([tool.importlinter]) hold, and would catch a breach."""

from __future__ import annotations

import json
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


def contracts() -> list[dict]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def lint_one(contract: dict, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` with only `contract` (JSON's strings and lists are TOML's too)."""
    lines = ["[tool.importlinter]", 'root_package = "nas"', "include_external_packages = true",
             "exclude_type_checking_imports = true", "", "[[tool.importlinter.contracts]]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in contract.items()]
    config = tmp_path / "one.toml"
    config.write_text("\n".join(lines) + "\n")
    return lint_imports(config)


def test_the_import_contracts_are_kept() -> None:
    done = lint_imports(REPO / "pyproject.toml")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert f"{len(contracts())} kept, 0 broken" in done.stdout


def test_every_subpackage_is_in_a_layer() -> None:
    layers = next(c for c in contracts() if c["type"] == "layers")["layers"]
    packages = {f"nas.{p.name}" for p in (REPO / "nas").iterdir() if (p / "__init__.py").exists()}
    assert packages - set(layers) == set()


def test_a_lower_layer_importing_a_higher_one_would_break_the_layers(tmp_path: Path) -> None:
    # not vacuous: with the spec put above the records, records' imports of the spec break it
    layers = dict(next(c for c in contracts() if c["type"] == "layers"))
    order = list(layers["layers"])
    order.remove("nas.spec")
    order.insert(order.index("nas.records"), "nas.spec")
    done = lint_one({**layers, "layers": order}, tmp_path)
    assert done.returncode != 0 and "0 kept, 1 broken" in done.stdout, done.stdout[-3000:] + done.stderr[-2000:]
    assert "nas.records is not allowed to import nas.spec" in done.stdout


def test_a_torch_import_below_the_line_would_break_the_contract(tmp_path: Path) -> None:
    # not vacuous: counting nas.measure.costs (which times steps with torch) as spec breaks it
    no_torch = next(c for c in contracts() if c.get("forbidden_modules") == ["torch"])
    done = lint_one({**no_torch, "source_modules": [*no_torch["source_modules"], "nas.measure.costs"]}, tmp_path)
    assert done.returncode != 0 and "0 kept, 1 broken" in done.stdout, done.stdout[-3000:] + done.stderr[-2000:]
    assert "nas.measure.costs -> torch" in done.stdout


def test_only_the_command_line_prints() -> None:
    # below nas.cli and nas.commands, notes go to the `nas` loggers and progress to a
    # SearchProgress the caller passes: a library caller decides what is shown
    import ast

    offenders = []
    for path in sorted((REPO / "nas").rglob("*.py")):
        relative = path.relative_to(REPO / "nas")
        if relative.parts[0] in ("commands", "cli.py", "__main__.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                offenders.append(f"{relative}:{node.lineno} print()")
            if (isinstance(node, ast.Attribute) and node.attr in ("stdout", "stderr")
                    and isinstance(node.value, ast.Name) and node.value.id == "sys"):
                offenders.append(f"{relative}:{node.lineno} sys.{node.attr}")
    assert offenders == []


def test_ray_outside_the_ray_backend_would_break_the_contract(tmp_path: Path) -> None:
    # not vacuous: without its exception, the Ray backend's own `import ray` breaks it
    only_ray = next(c for c in contracts() if c.get("forbidden_modules") == ["ray"])
    kept = [rule for rule in only_ray["ignore_imports"] if not rule.startswith("nas.search.ray_backend ")]
    done = lint_one({**only_ray, "ignore_imports": kept}, tmp_path)
    assert done.returncode != 0 and "0 kept, 1 broken" in done.stdout, done.stdout[-3000:] + done.stderr[-2000:]
    assert "nas.search.ray_backend -> ray" in done.stdout
