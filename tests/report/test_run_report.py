"""`nas report` on real tiny runs: finished, killed mid-search, and with nothing finished."""

from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import time
from pathlib import Path

import pytest

from nas.cli import main
from nas.records.runs import RESULT_COLUMNS, RunDir
from nas.report.run_report import PLOTS, md_table, write_report
from tests.conftest import start_nas

FAST = ["--space", "tiny", "--dataset", "digits", "--max-train", "400", "--epochs", "1", "--quiet"]


# -- helpers ---------------------------------------------------------------------------------
def tables(markdown: str) -> list[list[list[str]]]:
    """Every pipe table of a markdown text as rows of cells; asserts each is well formed."""
    found, block = [], []
    for line in [*markdown.splitlines(), ""]:
        if line.startswith("|"):
            block.append(line)
            continue
        if block:
            rows = [[c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]] for row in block]
            assert len(rows) >= 2 and all(re.fullmatch(r"-{3,}", c) for c in rows[1]), block[:2]
            assert all(len(r) == len(rows[0]) for r in rows), block
            found.append([rows[0], *rows[2:]])
            block = []
    return found


def assert_plots(folder: Path, names: list[str]) -> None:
    for name in names:
        path = folder / name
        assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def assert_links_resolve(report: Path) -> None:
    for target in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report.read_text()):
        assert (report.parent / target).is_file(), target


def read_rows(run: Path) -> list[dict[str, str]]:
    with (run / "results.csv").open() as handle:
        return list(csv.DictReader(handle))


def write_rows(run: Path, rows: list[dict[str, str]]) -> None:
    with (run / "results.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=RESULT_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    assert main(["search", *FAST, "--budget", "4", "--name", "done", "--runs-dir", str(runs)]) == 0
    return runs / "done"


def copy_run(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns("*.png", "report.md"))
    return dest


# -- finished run ----------------------------------------------------------------------------
@pytest.mark.slow
def test_report_of_a_finished_run(finished: Path) -> None:
    report = write_report(RunDir(finished))
    text = report.read_text()
    assert report == finished / "report.md"
    assert_plots(finished, list(PLOTS.values()))
    assert_links_resolve(report)
    assert "4 of 4 trials finished (finished)" in text
    for heading in ("## Best architecture", "## Top", "## Accuracy against cost", "## Search progress",
                    "## Choices per stage", "## Failed and pruned trials", "## Settings and versions"):
        assert heading in text, heading
    parsed = tables(text)
    # the best architecture in the papers' layout: stem, one row per stage, head
    layout = parsed[0]
    assert layout[0][:8] == ["stage", "operator", "kernel", "stride", "expansion", "SE", "channels", "layers"]
    assert [row[0] for row in layout[1:]] == ["0", "1", "2", "3", "4"]
    assert layout[1][1] == "Conv" and layout[-1][1].startswith("Conv1×1")
    metrics = parsed[1]
    assert metrics[1][0].startswith("best (trial") and metrics[2][0] == "reference (trial 0)"
    # the top table ranks by reward and marks the reference
    top = next(t for t in parsed if t[0][:2] == ["trial", "reward"])
    rewards = [float(r[1]) for r in top[1:]]
    assert rewards == sorted(rewards, reverse=True)
    assert any("(reference)" in r[0] for r in top[1:])
    settings = dict((r[0], r[1]) for r in next(t for t in parsed if t[0] == ["setting", "value"])[1:])
    assert settings["space"] == "tiny" and settings["dataset"] == "digits" and settings["budget"] == "4"
    assert any(t[0] == ["package", "version"] and any(r[0] == "torch" for r in t[1:]) for t in parsed)


@pytest.mark.slow
def test_report_command(finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = copy_run(finished, tmp_path / "runs" / "again")
    assert main(["report", "again", "--runs-dir", str(tmp_path / "runs"), "--top-k", "2", "--no-full-counts"]) == 0
    assert capsys.readouterr().out.strip() == str(run / "report.md")
    assert "among the 2 best trials" in (run / "report.md").read_text()


def test_report_of_an_unknown_run_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "nothing", "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nas: error: no run named 'nothing'") and "\n" not in err


# -- unfinished runs -------------------------------------------------------------------------
@pytest.mark.slow
def test_report_of_a_killed_run(tmp_path: Path) -> None:
    proc = start_nas("search", *FAST, "--budget", "40", "--name", "killed", cwd=tmp_path)
    run = tmp_path / "runs" / "killed"
    try:
        # wait for two finished trials (pytest-timeout bounds the wait); the search must not end first
        while not ((run / "results.csv").is_file() and len(read_rows(run)) >= 2):
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: this kills only the search we started
        proc.wait()
    report = write_report(RunDir(run))
    text = report.read_text()
    assert_plots(run, list(PLOTS.values()))
    assert_links_resolve(report)
    finished = len(read_rows(run))
    assert f"{finished} of 40 trials finished (unfinished)" in text
    tables(text)


@pytest.mark.slow
def test_report_with_no_finished_trial(finished: Path, tmp_path: Path) -> None:
    run = tmp_path / "empty"
    run.mkdir()
    for name in ("config.yaml", "space.yaml"):
        shutil.copy(finished / name, run / name)
    write_rows(run, [])  # a header and nothing else
    text = write_report(RunDir(run)).read_text()
    assert "No trials finished yet" in text
    assert "0 of 4 trials finished" in text
    assert_plots(run, list(PLOTS.values()))
    tables(text)
    (run / "results.csv").unlink()  # not even a results file
    assert "No trials finished yet" in write_report(RunDir(run)).read_text()


@pytest.mark.slow
def test_trial_with_metrics_but_no_row_is_reported(finished: Path, tmp_path: Path) -> None:
    # killed between writing trials/<n>/metrics.json and results.csv
    run = copy_run(finished, tmp_path / "gap")
    rows = read_rows(run)
    write_rows(run, rows[:-1])
    text = write_report(RunDir(run)).read_text()
    assert "4 of 4 trials finished" in text


@pytest.mark.slow
def test_failed_and_pruned_trials_are_listed_with_reasons(finished: Path, tmp_path: Path) -> None:
    run = copy_run(finished, tmp_path / "bad")
    shutil.rmtree(run / "trials")
    rows = read_rows(run)
    rows[1].update(state="FAIL", reason="training diverged: loss is nan in epoch 1", reward="", accuracy="")
    rows[2].update(state="PRUNED", reward="")
    rows[3].update(state="FAIL", reason="interrupted (worker died)", reward="", accuracy="")
    write_rows(run, rows)
    text = write_report(RunDir(run)).read_text()
    failures = next(t for t in tables(text) if t[0] == ["trial", "state", "epochs", "accuracy", "reason"])
    by_trial = {r[0]: r for r in failures[1:]}
    assert by_trial["1"][4] == "training diverged: loss is nan in epoch 1"
    assert by_trial["2"][1] == "PRUNED" and "pruner" in by_trial["2"][4]
    assert "interrupted" in by_trial["3"][4]
    assert "3 of 4 trials finished (unfinished)" in text  # an interrupted trial is run again


def test_md_table_escapes_pipes() -> None:
    text = md_table(["a", "b"], [["x|y", 1]])
    assert tables(text) == [[["a", "b"], ["x\\|y", "1"]]]
