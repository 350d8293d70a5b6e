"""Two workers against a real PostgreSQL server (Optuna RDB storage) meet the budget exactly."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import pytest

from nas.search.optuna_backend import STUDY_NAME, count_finished
from tests.conftest import start_nas
from tests.search import postgres_server

pytestmark = pytest.mark.skipif(
    not postgres_server.available(), reason="PostgreSQL server binaries not installed (.ci/run installs them)"
)
FAST = ["--space", "tiny", "--max-train", "400", "--epochs", "1", "--quiet"]


def test_two_workers_share_a_postgresql_storage(tmp_path: Path) -> None:
    server = postgres_server.PostgresServer()
    server.start()
    try:
        budget = 6
        args = ["search", *FAST, "--budget", str(budget), "--name", "pg", "--storage", server.url]
        first = start_nas(*args, cwd=tmp_path, threads=1)
        deadline = time.time() + 120
        while not (tmp_path / "runs" / "pg" / "config.yaml").is_file() and time.time() < deadline:
            time.sleep(0.2)
        second = start_nas(*args, "--resume", cwd=tmp_path, threads=1)
        for proc in (first, second):
            out, _ = proc.communicate(timeout=300)
            assert proc.returncode == 0, out
        study = optuna.load_study(study_name=STUDY_NAME, storage=server.url)
        trials = study.get_trials()
        assert count_finished(trials) == budget
        owners = {t.user_attrs.get("worker") for t in trials if t.state.is_finished()}
        assert len(owners) == 2, "both workers should have run trials"
        numbers = [t.number for t in trials]
        assert len(numbers) == len(set(numbers))
        rows = (tmp_path / "runs" / "pg" / "results.csv").read_text().strip().splitlines()
        assert len(rows) == 1 + budget
    finally:
        server.stop()
