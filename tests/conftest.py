"""Shared helpers: run the real `nas` command in a subprocess, read run folders."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest
from hypothesis import HealthCheck, settings

REPO = Path(__file__).resolve().parent.parent

# Property tests: CI runs the same examples every time (derandomized, no example database), so
# a red run re-runs red and can be debugged. `HYPOTHESIS_PROFILE=fuzz python -m pytest
# tests/test_fuzz_inputs.py` draws fresh random examples, FUZZ_FACTOR times as many, to hunt.
FUZZ_FACTOR = 25
_QUIET = [HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large]
settings.register_profile("ci", deadline=None, derandomize=True, database=None, suppress_health_check=_QUIET)
settings.register_profile("fuzz", deadline=None, derandomize=False, database=None, suppress_health_check=_QUIET,
                          print_blob=True)
HYPOTHESIS_PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
settings.load_profile(HYPOTHESIS_PROFILE)


def examples(n: int) -> int:
    """A property test's example count under the loaded profile: n in CI, many more when fuzzing."""
    return n * FUZZ_FACTOR if HYPOTHESIS_PROFILE == "fuzz" else n


def _private_temp_folder() -> str:
    """A temp folder of this test session's own, for this process and every `nas` it starts.

    nas keeps host-wide lock files in the temp folder (the device gate that orders step-time
    measurements): a search of another test session on the same machine, or a worker another
    test froze with SIGSTOP, must not stall or time this session's searches. pytest's own
    tmp_path folders stay where they were (PYTEST_DEBUG_TEMPROOT)."""
    real = tempfile.gettempdir()
    os.environ.setdefault("PYTEST_DEBUG_TEMPROOT", real)
    private = tempfile.mkdtemp(prefix="nas-t", dir=real)  # short: Ray puts socket paths under it
    os.chmod(private, 0o1777)  # like /tmp: children running as other users (postgres) can use it too
    os.environ["TMPDIR"] = private  # inherited by every child process
    tempfile.tempdir = private
    return private


SESSION_TEMP = _private_temp_folder()
# the per-machine step-time table (nas.measure.step_table) of this test session: never the user's
# ~/.cache/nas, shared by the session's searches like a user's runs share theirs
os.environ["NAS_CACHE_DIR"] = os.path.join(SESSION_TEMP, "nas-cache")


def pytest_sessionfinish(session: pytest.Session) -> None:
    shutil.rmtree(SESSION_TEMP, ignore_errors=True)


def in_ci() -> bool:
    """Whether this is CI (`CI=true`, set by .ci/run and by most CI services)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def skip_or_fail(reason: str) -> NoReturn:
    """Skip a test whose requirement (Ray, PostgreSQL, network namespaces) is missing here, but
    fail it under CI: a CI machine that lost a requirement must not pass by skipping its tests.
    Callable from a test, a fixture or at module level."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: this test must run in CI, so a missing requirement is a failure)",
                    pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def require_module(name: str, why: str = "") -> ModuleType:
    """`import name`, or skip_or_fail when it cannot be imported (like pytest.importorskip)."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        skip_or_fail(f"needs {name}{f' ({why})' if why else ''}: {exc}")


def nas_env(threads: int | None = None) -> dict[str, str]:
    """The test's environment for a `nas` child; `threads` caps its torch threads (processes that run
    side by side on the 2 cores should take one each: spin-waiting OpenMP threads slow both 3-10x)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    env.setdefault("OMP_NUM_THREADS", "2")
    return env


def run_nas(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m nas ARGS` as a user would run it; returns the finished process."""
    return subprocess.run(
        [sys.executable, "-m", "nas", *args], cwd=cwd, env=nas_env(), capture_output=True, text=True,
        timeout=timeout,
    )


def start_nas(*args: str, cwd: Path, threads: int | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "nas", *args], cwd=cwd, env=nas_env(threads), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print how many malformed inputs tests/test_fuzz_inputs.py tried (issue 7 asks to report it)."""
    fuzz = sys.modules.get("tests.test_fuzz_inputs")
    if fuzz is not None:
        failed = [getattr(r, "nodeid", "") for r in terminalreporter.stats.get("failed", [])]
        line = fuzz.summary_line(failed)
        if line:
            terminalreporter.write_line(line)
