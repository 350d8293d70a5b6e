"""Two workers against a real PostgreSQL server (Optuna RDB storage) meet the budget exactly."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import optuna
import pytest

from nas.search.study import STUDY_NAME, count_finished, is_finished
from tests.conftest import skip_or_fail, start_nas
from tests.search import postgres_server

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _needs_postgres() -> None:
    if not postgres_server.available():  # skips here, fails under CI=true
        skip_or_fail("PostgreSQL server binaries not installed (.ci/run installs them)")


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


def test_a_dead_workers_trial_is_failed_by_optunas_heartbeat_and_retried(tmp_path: Path) -> None:
    from tests.search.test_liveness import ARGS, reaped, start, wait_until

    server = postgres_server.PostgresServer()
    server.start()
    try:
        budget = 3
        args = [*ARGS, "--budget", str(budget), "--name", "pgbeat", "--storage", server.url]

        def running() -> optuna.trial.FrozenTrial | None:
            try:
                found = optuna.load_study(study_name=STUDY_NAME, storage=server.url).get_trials()
            except KeyError:
                return None
            return next((t for t in found if t.state.name == "RUNNING" and "arch" in t.user_attrs), None)

        dying = start(*args, cwd=tmp_path)
        with reaped(dying):
            victim = wait_until("a trial in training", running, [dying])
            os.killpg(dying.pid, signal.SIGKILL)  # no goodbye: only its silence tells
            dying.wait(timeout=60)
        survivor = start(*args, "--resume", cwd=tmp_path)
        with reaped(survivor):
            out, _ = survivor.communicate(timeout=600)
            assert survivor.returncode == 0, out
        trials = {t.number: t for t in optuna.load_study(study_name=STUDY_NAME, storage=server.url).get_trials()}
        assert trials[victim.number].state.name == "FAIL"  # by optuna.storages.fail_stale_trials
        assert not is_finished(trials[victim.number]), "a stale trial does not count toward the budget"
        retries = [t for t in trials.values() if t.user_attrs.get("retry_of") == victim.number]
        assert len(retries) == 1 and retries[0].params == victim.params and is_finished(retries[0])
        assert count_finished(list(trials.values())) == budget
    finally:
        server.stop()
