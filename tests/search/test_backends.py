"""One contract, run against both backends (as Optuna runs one test suite against every storage):
a search meets its budget with the reference first, writes the same run folder and the same
Optuna study, and a resume raises the budget without repeating or losing a trial.

The Ray case runs on a real two-node loopback cluster (tests/search/ray_cluster.py)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from nas.records.runs import RESULT_COLUMNS
from nas.search.backend import BACKENDS
from tests.conftest import run_nas
from tests.search.test_ray_backend import cluster, study_trials  # noqa: F401 (the fixture, for Ray)

COMMON = ["--space", "tiny", "--max-train", "600", "--epochs", "1", "--quiet"]
Search = Callable[..., subprocess.CompletedProcess]


@pytest.fixture(params=BACKENDS)
def search(request: pytest.FixtureRequest, tmp_path: Path) -> Search:
    """`nas search ARGS` with this backend, in tmp_path."""
    if request.param == "optuna":
        return lambda *args: run_nas("search", *COMMON, *args, cwd=tmp_path, timeout=480)
    on = request.getfixturevalue("cluster")  # started only for the Ray case
    return lambda *args: on.run([sys.executable, "-m", "nas", "search", *COMMON, "--backend", "ray",
                                 "--address", on.address, *args], cwd=tmp_path, timeout=480)


def table(run: Path) -> tuple[list[str], list[dict[str, str]]]:
    with (run / "results.csv").open() as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


@pytest.mark.slow
def test_a_search_meets_its_budget_and_a_resume_repeats_nothing(search: Search, tmp_path: Path,
                                                                 request: pytest.FixtureRequest) -> None:
    from nas.spec.space import SearchSpace

    backend = request.node.callspec.params["search"]
    done = search("--budget", "3", "--name", "c")
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "runs" / "c"
    for name in ("config.yaml", "space.yaml", "results.csv", "best.yaml", "reference.json"):
        assert (run / name).is_file(), name
    assert f"backend: {backend}" in (run / "config.yaml").read_text()
    columns, first = table(run)
    assert columns == RESULT_COLUMNS
    assert [int(r["number"]) for r in first] == [0, 1, 2]
    assert first[0]["arch"] == SearchSpace.load("tiny").reference.to_string()  # the reference first
    assert all(r["state"] == "COMPLETE" for r in first), [r["reason"] for r in first]
    for row in first:
        folder = run / "trials" / f"{int(row['number']):04d}"
        assert (folder / "arch.yaml").is_file()
        assert json.loads((folder / "metrics.json").read_text())["accuracy"] == pytest.approx(float(row["accuracy"]))
        assert any(p.name.startswith("events.out.tfevents") for p in folder.iterdir())

    done = search("--budget", "5", "--name", "c", "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    _, second = table(run)
    assert [int(r["number"]) for r in second] == [0, 1, 2, 3, 4]
    assert second[:3] == first  # finished trials are kept as they were, not trained again
    # the run's study, as Optuna's own tools open it: one ledger whichever backend wrote it
    study = study_trials(run)
    assert [t.state.name for t in study] == ["COMPLETE"] * 5
    assert [t.user_attrs["accuracy"] for t in study] == [float(r["accuracy"]) for r in second]
    shown = run_nas("show", "c", cwd=tmp_path, timeout=60)  # no Ray needed to read a Ray run
    assert shown.returncode == 0 and "5/5 trials" in shown.stdout
    if backend == "ray":  # where the trials ran: both nodes of the loopback cluster
        records = [json.loads(p.read_text()) for p in run.glob("trials/*/metrics.json")]
        assert len({r["node_id"] for r in records}) == 2, "trials should have run on both nodes"
        assert {r["node_ip"] for r in records} == {"127.0.0.1"}
