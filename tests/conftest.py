"""Shared helpers: run the real `nas` command in a subprocess, read run folders."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


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
