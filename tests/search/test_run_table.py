"""A run's step-time table: calibrated once per machine, a search on it times no part; a
reference that drifted from the table starts a new generation, said and recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from nas.measure.costs import StepTime, StepTimeCache
from tests.conftest import REPO, run_nas

pytestmark = pytest.mark.slow
SEARCH = ("--max-train", "300", "--epochs", "1", "--budget", "3", "--quiet")


def tiny_space(folder: Path, **measure) -> Path:
    space = yaml.safe_load((REPO / "search_spaces" / "tiny.yaml").read_text())
    space["measure"] = {**space["measure"], **measure}
    path = folder / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    return path


def record(run: Path) -> dict:
    return json.loads((run / "step_table.json").read_text())


def test_after_calibrate_a_search_times_no_part(tmp_path: Path) -> None:
    # a large tolerance: this test is about the table's coverage, not about the machine's load
    space, cache = tiny_space(tmp_path, drift_tolerance=100.0), tmp_path / "cache"
    done = run_nas("calibrate", "--space", str(space), "--cache-dir", str(cache), "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "timed 82 now, 0 were in the table" in done.stdout
    again = run_nas("calibrate", "--space", str(space), "--cache-dir", str(cache), "--quiet", cwd=tmp_path)
    assert "timed 0 now, 82 were in the table" in again.stdout
    table = Path(done.stdout.rsplit("table: ", 1)[1].strip())
    assert table.parent.parent == cache / "step-times" and len(StepTimeCache(table)) == 82
    done = run_nas("search", "--space", str(space), "--name", "warm", "--cache-dir", str(cache), *SEARCH,
                   "--runs-dir", str(tmp_path / "runs"), "--sampler", "random", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    pinned = record(tmp_path / "runs" / "warm")
    assert pinned["path"] == str(table) and pinned["reference_check"]["beyond"] is False
    assert len(StepTimeCache(table)) == 82  # three random candidates and the reference: all hits


def test_a_drifted_reference_starts_a_new_generation_and_says_so(tmp_path: Path) -> None:
    space, cache, runs = tiny_space(tmp_path), tmp_path / "cache", tmp_path / "runs"
    first = run_nas("search", "--space", str(space), "--name", "first", "--cache-dir", str(cache), *SEARCH,
                    "--runs-dir", str(runs), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    old = Path(record(runs / "first")["path"])
    assert old.name == "g1.json" and record(runs / "first")["reference_check"] is None  # nothing to compare yet
    # the machine "changed": every entry now reads ten times what the reference steps in
    table = StepTimeCache(old)
    for key in list(json.loads(old.read_text())):
        step = table.get(key)
        table.put(key, StepTime(step.median_ms * 10, step.spread, step.samples, step.min_ms * 10))
    second = run_nas("search", "--space", str(space), "--name", "second", "--cache-dir", str(cache), *SEARCH,
                     "--runs-dir", str(runs), cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    now = record(runs / "second")
    assert now["generation"] == 2 and now["replaced"]["path"] == str(old)
    assert now["reference_check"]["beyond"] is True and now["reference_check"]["ratio"] < 0.5
    assert "times every part afresh in generation 2" in second.stderr
    assert record(runs / "first")["path"] == str(old)  # the first run stays on its generation
