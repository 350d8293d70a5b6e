"""A search needs only torch, numpy, pyyaml, tqdm and Optuna: the heavy optional libraries are
imported where they are used, so `nas` runs on a bare GPU box and `nas --help` starts fast."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import nas_env

# Not needed by `nas --help` or by `nas search --dataset synthetic` (the GPU box lacks most).
HEAVY = ("mlxtend", "sklearn", "kornia", "matplotlib", "tensorboard", "ray", "scipy", "PIL", "pandas")


def _loaded_after(code: str, watched: tuple[str, ...] = HEAVY) -> list[str]:
    """The `watched` modules a fresh interpreter has loaded after running `code`."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run([sys.executable, "-c", probe], env=nas_env(threads=1), capture_output=True, text=True,
                         check=True).stdout
    return [name for name in json.loads(out.splitlines()[-1]) if name in watched]


def test_the_spec_and_the_reports_import_no_torch() -> None:
    # the spec (architectures, spaces, objectives, settings) and what renders reports read files
    # only: torch loads when something is built, trained or timed (a report's MACs count does)
    modules = ["nas.spec.arch", "nas.spec.space", "nas.spec.timing", "nas.spec.objective", "nas.spec.settings",
               "nas.spec.proxy_check", "nas.spec.resources", "nas.records.runs", "nas.report.run_report",
               "nas.commands.report", "nas.reproduce.report", "nas.reproduce.precondition"]
    assert _loaded_after("\n".join(f"import {m}" for m in modules), ("torch",)) == []


def test_help_imports_nothing_heavy() -> None:
    assert _loaded_after("import nas.cli\nnas.cli.build_parser()") == []


def test_the_search_path_imports_nothing_heavy() -> None:
    modules = ["nas.commands.search", "nas.commands.show", "nas.search.optuna_backend", "nas.search.base",
               "nas.search.trial", "nas.training.data", "nas.training.proxy", "nas.measure.costs",
               "nas.measure.step_cost", "nas.spec.settings", "nas.records.runs", "nas.training.tblog",
               "nas.report.stats", "nas.report.plots", "nas.report.run_report"]
    assert _loaded_after("\n".join(f"import {m}" for m in modules)) == []


# Runs a real search with the heavy libraries made unimportable, as on a bare GPU box: a None
# entry in sys.modules makes `import x` raise ImportError and importlib.util.find_spec say None,
# as for a module that is not installed.
_BARE_SEARCH = """
import sys
sys.modules.update(dict.fromkeys(BLOCKED))
from nas.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_a_synthetic_search_runs_without_the_heavy_libraries(tmp_path) -> None:
    code = f"BLOCKED = {HEAVY!r}\n{_BARE_SEARCH}"
    done = subprocess.run(
        [sys.executable, "-c", code, "search", "--space", "tiny", "--budget", "1", "--dataset", "synthetic",
         "--device", "cpu", "--epochs", "1", "--runs-dir", str(tmp_path), "--name", "bare", "--quiet"],
        env=nas_env(threads=1), capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "COMPLETE" in (tmp_path / "bare" / "results.csv").read_text()
    assert "tensorboard is not installed" in done.stderr
    # and the report of that run renders without loading torch: reading runs needs none
    render = f"from nas.cli import main\nassert main(['report', 'bare', '--runs-dir', {str(tmp_path)!r}, " \
             "'--no-full-counts']) == 0"
    assert _loaded_after(render, ("torch",)) == []
    assert (tmp_path / "bare" / "report.md").is_file()
