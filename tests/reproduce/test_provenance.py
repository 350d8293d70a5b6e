"""Which code made each phase of a reproduction: real git checkouts made in a temporary folder."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from nas.reproduce.provenance import (
    CodeState,
    check_code,
    code_state,
    finish_phase,
    installed_code_state,
    phase_minutes,
    provenance_rows,
    read_provenance,
    record_phase,
)
from nas.reproduce.request import Request
from nas.reproduce.run import run_reproduction
from nas.spec.errors import ConfigError


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A committed checkout laid out like nas's: a package folder, the spaces and pyproject.toml."""
    root = tmp_path / "checkout"
    (root / "nas").mkdir(parents=True)
    (root / "nas" / "__init__.py").write_text('"""nas"""\n')
    (root / "search_spaces").mkdir()
    (root / "search_spaces" / "v2.yaml").write_text("name: v2\n")
    (root / "pyproject.toml").write_text("[project]\nname = 'nas'\n")
    (root / "notes.txt").write_text("not code\n")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "first")
    return root


def commit_all(root: Path, message: str) -> str:
    git(root, "add", "-A")
    git(root, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", message)
    return git(root, "rev-parse", "HEAD")


def test_a_clean_checkout_is_its_commit(checkout: Path) -> None:
    state = code_state(checkout)
    assert state.commit == git(checkout, "rev-parse", "HEAD") and not state.dirty


@pytest.mark.parametrize("change", ["edit code", "new module", "edit space", "edit pyproject"])
def test_changed_code_makes_the_tree_dirty(checkout: Path, change: str) -> None:
    path = {"edit code": "nas/__init__.py", "new module": "nas/new.py", "edit space": "search_spaces/v2.yaml",
            "edit pyproject": "pyproject.toml"}[change]
    with open(checkout / path, "a") as handle:
        handle.write("# changed\n")
    assert code_state(checkout).dirty


def test_files_that_are_not_code_do_not_make_it_dirty(checkout: Path) -> None:
    (checkout / "notes.txt").write_text("edited\n")
    (checkout / "runs").mkdir()
    (checkout / "runs" / "results.csv").write_text("number\n")
    assert not code_state(checkout).dirty


def test_a_folder_outside_git_has_no_commit(tmp_path: Path) -> None:
    assert code_state(tmp_path) == CodeState(None, False, str(tmp_path))


def test_this_nas_knows_its_own_state() -> None:
    state = installed_code_state()
    assert state.commit is None or len(state.commit) == 40


def test_a_dirty_tree_is_refused_unless_allowed(checkout: Path, tmp_path: Path) -> None:
    (checkout / "nas" / "__init__.py").write_text("# edited\n")
    dirty = code_state(checkout)
    folder = tmp_path / "repro"
    with pytest.raises(ConfigError, match="uncommitted changes.*--allow-code-change"):
        check_code(folder, dirty, allow_change=False)
    check_code(folder, dirty, allow_change=True)


def test_resuming_at_another_commit_is_refused_unless_allowed(checkout: Path, tmp_path: Path) -> None:
    folder = tmp_path / "repro"
    folder.mkdir()
    first = code_state(checkout)
    check_code(folder, first, allow_change=False)
    record_phase(folder, "search search", first, allow_change=False)
    (checkout / "nas" / "trial.py").write_text("# new code\n")
    commit_all(checkout, "second")
    second = code_state(checkout)
    assert second.commit != first.commit and not second.dirty
    with pytest.raises(ConfigError, match=f"started with {first.commit[:12]}.*--allow-code-change"):
        check_code(folder, second, allow_change=False)
    check_code(folder, second, allow_change=True)
    record_phase(folder, "retrain", second, allow_change=True)
    records = read_provenance(folder)
    assert [(r.phase, r.commit, r.allowed_code_change) for r in records] == [
        ("search search", first.commit, False), ("retrain", second.commit, True)]
    assert [row[:3] + row[4:] for row in provenance_rows(records)] == [
        ["search search", first.commit[:12], "clean", "cut off", "no"],
        ["retrain", second.commit[:12], "clean", "cut off", "yes"]]


def test_each_stretch_of_work_records_its_time(checkout: Path, tmp_path: Path) -> None:
    state = code_state(checkout)
    record_phase(tmp_path, "search search", state, allow_change=False)  # cut off: never finished
    record_phase(tmp_path, "search search", state, allow_change=False)  # the resumed stretch
    finish_phase(tmp_path, "search search")
    finish_phase(tmp_path, "retrain")  # never started: nothing to finish
    records = read_provenance(tmp_path)
    assert [(r.phase, r.finished is None) for r in records] == [("search search", True), ("search search", False)]
    assert records[1].seconds is not None and records[1].seconds >= 0.0 and records[0].seconds is None
    assert phase_minutes(records, "search ") == records[1].seconds / 60
    assert [row[4] for row in provenance_rows(records)] == ["cut off", f"{records[1].seconds / 60:.1f}"]


def test_a_reproduction_from_a_dirty_tree_writes_nothing(checkout: Path, tmp_path: Path) -> None:
    (checkout / "search_spaces" / "v2.yaml").write_text("name: changed\n")
    request = Request("v2s", budget=2, space="tiny", dataset="digits")
    with pytest.raises(ConfigError, match="uncommitted changes"):
        run_reproduction(request, tmp_path / "runs", "repro", code=code_state(checkout))
    assert not (tmp_path / "runs").exists()
