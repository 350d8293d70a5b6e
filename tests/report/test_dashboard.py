"""optuna-dashboard on a finished run: the `optuna-dashboard` command, as the README shows it,
started on loopback against the run's journal file, serves the study and the trials that the
run's results.csv lists."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nas.records.runs import RunDir
from tests.conftest import nas_env, run_nas, skip_or_fail

pytestmark = pytest.mark.slow  # a real tiny search, then a server process


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> RunDir:
    root = tmp_path_factory.mktemp("dashboard")
    done = run_nas("search", "--space", "tiny", "--dataset", "digits", "--max-train", "300", "--epochs", "2",
                   "--budget", "4", "--name", "seen", "--runs-dir", str(root / "runs"), "--quiet", cwd=root,
                   timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return RunDir(root / "runs" / "seen")


def dashboard_command() -> str:
    """The `optuna-dashboard` console script of this Python (the test extra installs it)."""
    beside = Path(sys.executable).parent / "optuna-dashboard"
    found = str(beside) if beside.is_file() else shutil.which("optuna-dashboard")
    if found is None:
        skip_or_fail("needs optuna-dashboard (pip install -e '.[test]')")
    return found


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(base: str, path: str) -> Any:
    with urllib.request.urlopen(base + path, timeout=60) as response:
        return json.loads(response.read())


@pytest.fixture
def dashboard(finished: RunDir, tmp_path: Path) -> Iterator[str]:
    """The dashboard serving the run's journal on 127.0.0.1; yields its base URL."""
    port = free_loopback_port()
    log = (tmp_path / "dashboard.log").open("w")
    server = subprocess.Popen([dashboard_command(), str(finished.path / "study.journal"), "--host", "127.0.0.1",
                               "--port", str(port)], env=nas_env(), stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        while True:  # up when its API answers; pytest-timeout bounds the wait
            assert server.poll() is None, (tmp_path / "dashboard.log").read_text()
            try:
                get(base, "/api/meta")
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)
        yield base
    finally:
        server.terminate()  # this test's own server, by its process
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def test_dashboard_reads_back_the_runs_study_and_trials(finished: RunDir, dashboard: str) -> None:
    studies = get(dashboard, "/api/studies")["study_summaries"]
    assert len(studies) == 1
    study = get(dashboard, f"/api/studies/{studies[0]['study_id']}")
    trials = {t["number"]: t for t in study["trials"]}
    rows = {r["number"]: r for r in finished.read_results()}
    assert len(trials) == len(rows) == 4
    for number, row in rows.items():
        trial = trials[number]
        assert trial["state"].upper() == row["state"]
        if row["state"] == "COMPLETE":
            # results.csv rounds to 4 decimals
            assert trial["values"][0] == pytest.approx(row["reward"], abs=1e-4)
    # the architecture choices are the study's parameters, by name
    assert all(trial["params"] for trial in trials.values())
