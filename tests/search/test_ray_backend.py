"""The Ray backend on a real two-node Ray cluster (loopback only), plus its fast failure modes.

One cluster (head + worker node, 1 CPU each) serves the module; every `nas search` driver runs
inside the cluster's network namespace. Trials are the tiny space at 600 images and 1-2 epochs.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, nas_env, require_module, run_nas, skip_or_fail
from tests.search.ray_cluster import LoopbackCluster, namespaces_available, stop

FAST = ["--space", "tiny", "--max-train", "600", "--quiet", "--backend", "ray"]
# a missing requirement skips here and fails under CI=true (tests/conftest.py: skip_or_fail)
needs_netns = pytest.mark.usefixtures("_netns")
needs_ray = pytest.mark.usefixtures("_ray")


@pytest.fixture
def _netns() -> None:
    if not namespaces_available():
        skip_or_fail("needs `unshare -n` (root or user namespaces)")


@pytest.fixture
def _ray() -> None:
    require_module("ray.tune", "the Ray backend")


def env_1thread() -> dict[str, str]:
    env = nas_env()
    env["OMP_NUM_THREADS"] = "1"
    # a killed driver's trials are failed as interrupted once they stop beating for 4 s
    env.update(NAS_HEARTBEAT_INTERVAL="1", NAS_HEARTBEAT_GRACE="4")
    return env


@pytest.fixture(scope="module")
def cluster() -> Iterator[LoopbackCluster]:
    require_module("ray.tune", "the Ray backend")
    if not namespaces_available():
        skip_or_fail("needs `unshare -n` (root or user namespaces)")
    cluster = LoopbackCluster(env_1thread())
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def nas(cluster: LoopbackCluster, *args: str, cwd: Path, timeout: float = 480) -> subprocess.CompletedProcess:
    """`python -m nas ARGS` inside the cluster's namespace."""
    return cluster.run([sys.executable, "-m", "nas", *args], cwd=cwd, timeout=timeout)


def start_nas(cluster: LoopbackCluster, *args: str, cwd: Path) -> subprocess.Popen:
    return cluster.popen([sys.executable, "-m", "nas", *args], cwd=cwd, log=cwd / "driver.log")


def rows(run: Path) -> list[dict]:
    if not (run / "results.csv").is_file():
        return []  # (written atomically: a file that exists is whole)
    with (run / "results.csv").open() as handle:
        return list(csv.DictReader(handle))


def records(run: Path) -> dict[int, dict]:
    return {int(p.parent.name): json.loads(p.read_text()) for p in (run / "trials").glob("*/metrics.json")}


def wait_for_rows(run: Path, count: int, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if len(rows(run)) >= count:
            return
        if proc.poll() is not None:
            raise AssertionError(f"driver exited early with {proc.returncode}: {tail(run.parent.parent)}")
        time.sleep(0.2)
    raise AssertionError(f"fewer than {count} trials finished in {timeout} s")


def finished(table: list[dict]) -> list[dict]:
    return [r for r in table if not r["reason"].startswith("interrupted")]


def study_trials(run: Path) -> list:
    import optuna

    from nas.records.runs import RunDir
    from nas.search.study import STUDY_NAME, open_storage

    return optuna.load_study(study_name=STUDY_NAME, storage=open_storage(RunDir(run))).trials


def tail(cwd: Path) -> str:
    log = cwd / "driver.log"
    return log.read_text()[-3000:] if log.is_file() else ""


# -- on the cluster -----------------------------------------------------------------------------
# a search's budget, run folder, study and resume: tests/search/test_backends.py, on both backends
@pytest.mark.slow
@needs_netns
def test_asha_stops_weak_trials_and_they_are_pruned(cluster: LoopbackCluster, tmp_path: Path) -> None:
    done = nas(cluster, "search", *FAST, "--epochs", "2", "--max-train", "300", "--budget", "6", "--name", "asha",
               "--address", cluster.address, "--sampler", "random", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    table = rows(tmp_path / "runs" / "asha")
    assert len(table) == 6
    pruned = [r for r in table if r["state"] == "PRUNED"]
    assert pruned, "ASHA (reduction factor 2, grace 1 epoch) should stop some of 6 trials"
    for r in pruned:  # stopped early, with the costs measured up front
        assert int(r["epochs"]) < 2 and float(r["step_ms"]) > 0 and int(r["params"]) > 0
        assert r["reward"], "a pruned row is still scored in the table (not in the sampler)"
    complete = [r for r in table if r["state"] == "COMPLETE"]
    assert complete and all(int(r["epochs"]) == 2 for r in complete), "survivors train all epochs"


@pytest.mark.slow
@needs_netns
def test_driver_killed_then_resume_loses_and_repeats_nothing(cluster: LoopbackCluster, tmp_path: Path) -> None:
    budget = 6
    args = ["search", *FAST, "--epochs", "1", "--budget", str(budget), "--name", "res", "--address", cluster.address]
    proc = start_nas(cluster, *args, cwd=tmp_path)
    run = tmp_path / "runs" / "res"
    try:
        wait_for_rows(run, 2, proc)
    finally:
        stop(proc, sig=signal.SIGKILL)
    before = records(run)
    assert 2 <= len(before) < budget

    # as a user would: the run remembers its backend, address, budget and space
    done = nas(cluster, "search", "--name", "res", "--resume", "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    after = records(run)
    for number, record in before.items():  # nothing finished was lost, re-run or rewritten
        assert after[number] == record
    assert len(finished(rows(run))) == budget
    assert "resumed:" in (run / "config.yaml").read_text()
    # the study's view: exactly `budget` finished trials; what the dead driver left running was
    # failed as interrupted and asked again, and no finished trial was asked again
    trials = study_trials(run)
    assert sum(t.state.is_finished() and not t.user_attrs.get("interrupted") for t in trials) == budget
    retried = {t.user_attrs["retry_of"] for t in trials if "retry_of" in t.user_attrs}
    assert not retried & set(before)


@pytest.mark.slow
@needs_netns
def test_worker_node_dies_and_the_search_still_meets_the_budget(cluster: LoopbackCluster, tmp_path: Path) -> None:
    budget = 6
    proc = start_nas(cluster, "search", *FAST, "--epochs", "2", "--no-asha", "--budget", str(budget),
                     "--name", "fault", "--address", cluster.address, "--max-failures", "3", cwd=tmp_path)
    run = tmp_path / "runs" / "fault"
    try:
        wait_for_rows(run, 2, proc)
        cluster.kill_worker()  # mid-search: a trial is running there
        proc.wait(timeout=240)
    finally:
        stop(proc, sig=signal.SIGKILL)
        cluster.start_worker()  # leave the cluster whole for any later test
    assert proc.returncode == 0, tail(tmp_path)
    found = records(run)
    assert len(found) == budget
    assert all(r["state"] == "COMPLETE" for r in found.values()), [r["reason"] for r in found.values()]
    assert any(r["ray_failures"] >= 1 or r["retry_of"] is not None for r in found.values()), \
        "the trial on the dead node should be retried"


def _checkpointed(run: Path) -> list[dict]:
    """Progress of every trial checkpoint holding a training state (an epoch before the last)."""
    out = []
    for path in (run / "ray").rglob("checkpoint_*/progress.json"):
        with contextlib.suppress(OSError, ValueError):
            if (path.parent / "state.pt").is_file():
                out.append(json.loads(path.read_text()))
    return out


@pytest.mark.slow
@needs_netns
def test_killed_trial_resumes_from_its_checkpoint(cluster: LoopbackCluster, tmp_path: Path) -> None:
    budget, epochs = 2, 4
    proc = start_nas(cluster, "search", *FAST, "--max-train", "1200", "--epochs", str(epochs), "--no-asha",
                     "--budget", str(budget), "--name", "retry", "--address", cluster.address,
                     "--max-failures", "2", cwd=tmp_path)
    run = tmp_path / "runs" / "retry"
    try:
        deadline, victim = time.time() + 180, None
        while victim is None and time.time() < deadline and proc.poll() is None:
            checkpointed = _checkpointed(run)
            victim = checkpointed[0]["written_by"] if checkpointed else None
            time.sleep(0.1)
        assert victim is not None, "no trial checkpointed an epoch: " + tail(tmp_path)
        os.kill(int(victim["pid"]), signal.SIGKILL)  # the trial's actor dies after its epoch-1 checkpoint
        proc.wait(timeout=240)
    finally:
        stop(proc, sig=signal.SIGKILL)
    assert proc.returncode == 0, tail(tmp_path)
    found = records(run)
    assert len(found) == budget
    retried = [r for r in found.values() if r["ray_failures"] >= 1 or r["retry_of"] is not None]
    assert retried, "the killed trial should have been retried"
    for record in retried:
        assert record["state"] == "COMPLETE" and record["epochs"] == epochs
        assert record["resumed_from_epoch"] >= 1, "the retry resumes from the checkpoint, not from scratch"
        assert [h["epoch"] for h in record["history"]] == list(range(1, epochs + 1))


# A driver that injects one fault: the cached actor Tune hands to the next trial dies (as with its
# node) just before Tune resets it for that trial.
_DEAD_CACHED_ACTOR = """
import sys, time
import ray
from ray.tune.execution.tune_controller import TuneController
from nas.cli import main

reset, killed = TuneController._schedule_trial_reset, []

def reset_a_dead_actor(self, trial, *args, **kwargs):
    if not killed:
        ray.kill(trial.temporary_state.ray_actor, no_restart=True)
        time.sleep(1.0)
        killed.append(trial.config["number"])
        print(f"injected: killed the cached actor handed to trial {killed[0]}", flush=True)
    return reset(self, trial, *args, **kwargs)

TuneController._schedule_trial_reset = reset_a_dead_actor
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
@needs_netns
def test_a_trial_handed_a_dead_cached_actor_is_retried(cluster: LoopbackCluster, tmp_path: Path) -> None:
    # Tune errors such a trial without using its retries (it fails while PENDING); nas resumes it
    budget = 4
    driver = tmp_path / "driver.py"
    driver.write_text(_DEAD_CACHED_ACTOR)
    done = cluster.run([sys.executable, str(driver), "search", *FAST, "--epochs", "1", "--budget", str(budget),
                        "--name", "reuse", "--address", cluster.address, "--max-failures", "2"],
                       cwd=tmp_path, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    victim = int(done.stdout.split("handed to trial ")[1].split()[0])
    found = records(tmp_path / "runs" / "reuse")
    assert len(found) == budget and victim not in found  # the victim was interrupted, not finished
    assert all(r["state"] == "COMPLETE" for r in found.values()), [r["reason"] for r in found.values()]
    assert [r["retry_of"] for r in found.values() if r["retry_of"] is not None] == [victim]


@pytest.mark.slow
@needs_netns
def test_a_trial_bigger_than_any_node_fails_fast(cluster: LoopbackCluster, tmp_path: Path) -> None:
    done = nas(cluster, "search", *FAST, "--budget", "2", "--name", "big", "--cpus-per-trial", "4",
               "--address", cluster.address, cwd=tmp_path, timeout=90)
    assert done.returncode == 2
    assert "cannot run one trial" in done.stderr and "largest node has 1 CPU" in done.stderr
    assert len(done.stderr.strip().splitlines()) <= 2  # one line (plus Ray's own start-up notice at most)
    assert not (tmp_path / "runs" / "big").exists()


# -- without a cluster ----------------------------------------------------------------------------
@pytest.mark.slow
@needs_ray
def test_unreachable_address_fails_fast(tmp_path: Path) -> None:
    done = run_nas("search", *FAST, "--budget", "2", "--address", "127.0.0.1:9", cwd=tmp_path, timeout=90)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("nas: error: cannot reach a Ray cluster at 127.0.0.1:9")
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_ray_not_installed_is_one_line(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    # a finder that makes `import ray` fail, as on a machine without ray
    (site / "sitecustomize.py").write_text(
        "import sys\n"
        "class _NoRay:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'ray' or name.startswith('ray.'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, _NoRay())\n"
    )
    env = nas_env()
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO)])
    done = subprocess.run([sys.executable, "-m", "nas", "search", *FAST, "--budget", "1"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "pip install 'nas[ray]'" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    # and the rest of nas does not need ray
    spaces = subprocess.run([sys.executable, "-m", "nas", "spaces"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=60)
    assert spaces.returncode == 0 and "tiny" in spaces.stdout


@pytest.mark.slow
@needs_ray
@pytest.mark.parametrize("option, value, message", [
    ("--gpus-per-trial", "1.5", "a fraction in [0, 1] or a whole number"),
    ("--cpus-per-trial", "0", "must be a positive number"),
    ("--workers", "2", "use --max-concurrent"),
])
def test_bad_ray_options_are_one_line(tmp_path: Path, option: str, value: str, message: str) -> None:
    done = run_nas("search", *FAST, "--budget", "1", option, value, cwd=tmp_path, timeout=60)
    assert done.returncode == 2 and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


# -- the searcher, without Ray running ------------------------------------------------------------
def test_searcher_tells_the_study_pruned_failed_and_interrupted(tmp_path: Path) -> None:
    require_module("ray.tune", "the Ray backend")
    import optuna

    from nas.records.runs import RunDir
    from nas.search.progress import NoProgress
    from nas.search.raytune.searcher import FailureCounter, StudySearcher
    from nas.search.raytune.trainable import NUMBER
    from nas.search.study import STUDY_NAME, RunStudy, count_finished, open_storage
    from nas.spec.objective import Objective, Reference
    from nas.spec.settings import SearchSettings
    from nas.spec.space import SearchSpace

    space = SearchSpace.load("tiny")
    settings = SearchSettings(space=space, dataset="synthetic")
    run = RunDir(tmp_path / "run")
    (run.path / "trials").mkdir(parents=True)
    objective = Objective(space.objective, Reference(step_ms=1.0, params=1000, macs=1000))
    rs = RunStudy.open(run, settings, objective, pruner=optuna.pruners.NopPruner())
    searcher = StudySearcher(rs, space, objective, budget=4, progress=NoProgress(),
                             failures=FailureCounter(), experiment_path=str(tmp_path / "ray"), max_failures=1)
    configs = {tid: searcher.suggest(tid) for tid in ("a", "b", "c", "d")}
    assert [c[NUMBER] for c in configs.values()] == [0, 1, 2, 3]
    assert {k: v for k, v in configs["a"].items() if k != NUMBER} == space.params_for(space.reference)
    assert searcher.suggest("e") is None  # the budget is running: wait, one may still need a retry
    counts = {"step_ms": 1.0, "params": 1000, "macs": 1000, "ref_step_ms": 1.0, "hardware": "cpu"}
    partial = {"score": 0.5, "training_iteration": 1, "checkpoint_dir_name": "checkpoint_000000",
               "nas": {"final": False, "accuracy": 0.5, "epochs": 1, **counts}}
    from ray.tune.utils import flatten_dict  # Tune hands searchers flattened results

    searcher.on_trial_result("a", flatten_dict(partial))
    searcher.on_trial_complete("a", flatten_dict(partial))  # ASHA stopped it: no final result
    final = {"score": 0.7, "nas": {"final": True, "outcome": {
        "state": "COMPLETE", "attrs": {"accuracy": 0.7, "epochs": 2, **counts}, "history": []}}}
    searcher.on_trial_complete("b", flatten_dict(final))
    failed = {"score": 0.0, "nas": {"final": True, "outcome": {"state": "FAIL", "attrs": {"reason": "diverged"}}}}
    searcher.on_trial_complete("c", flatten_dict(failed))
    searcher.on_trial_complete("d", None, error=True)  # its actor died: not the architecture's fault
    study = optuna.load_study(study_name=STUDY_NAME, storage=open_storage(run))  # Optuna's own view
    TS = optuna.trial.TrialState
    assert [t.state for t in study.trials] == [TS.PRUNED, TS.COMPLETE, TS.FAIL, TS.FAIL, TS.WAITING]
    assert study.trials[0].intermediate_values == {1: 0.5}
    assert study.trials[0].user_attrs["checkpoint"].endswith("checkpoint_000000")
    assert study.best_value == pytest.approx(objective.values(0.7, 1.0, 1000, 1000, 1.0)[0])
    assert count_finished(study.trials) == 3
    pruned = rows(run.path)[0]
    assert pruned["state"] == "PRUNED" and pruned["reward"] and pruned["epochs"] == "1"  # scored in the table
    retry = searcher.suggest("f")  # the dead actor's architecture again, as trial 4
    assert retry[NUMBER] == 4
    assert {k: v for k, v in retry.items() if k != NUMBER} == {k: v for k, v in configs["d"].items() if k != NUMBER}
    assert study.trials[4].user_attrs["retry_of"] == 3  # (the study object reads the storage afresh)
    searcher.on_trial_complete("f", dict(final))
    assert searcher.suggest("g") == searcher.FINISHED
    assert [int(r["number"]) for r in rows(run.path)] == [0, 1, 2, 3, 4]
    rs.close()
