"""Which code made each phase of a reproduction, and refusing to mix code versions silently.

A reproduction runs for hours, and its search workers import the working tree when they
start: code edited or committed mid-run changes what later trials measure. So every phase that
does work (precondition, each search, retraining) records the commit of the nas checkout and
whether its tree had uncommitted changes, in `provenance.json`; a reproduction refuses to start
or resume from a dirty tree, or from another commit than the one it began with, unless the
user says `--allow-code-change`, which the record and the report then state.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nas.records.runs import atomic_write
from nas.spec.errors import ConfigError

PROVENANCE_FILE = "provenance.json"
# what a reproduction's numbers depend on, relative to the checkout's top folder
CODE_PATHS = ("nas", "search_spaces", "pyproject.toml")


@dataclass(frozen=True)
class CodeState:
    """The code a process runs: the checkout's commit (None: not a git checkout, e.g. installed
    from a wheel) and whether `CODE_PATHS` differ from it (tracked changes or new files)."""

    commit: str | None
    dirty: bool
    source: str

    def describe(self) -> str:
        if self.commit is None:
            return f"{self.source} (not a git checkout)"
        return f"commit {self.commit[:12]}{' with uncommitted changes' if self.dirty else ''}"


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=60,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):  # no git on this machine
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def code_state(root: Path) -> CodeState:
    """The state of the git checkout whose top folder is `root`."""
    commit = _git(root, "rev-parse", "HEAD")
    if commit is None:
        return CodeState(None, False, str(root))
    paths = [p for p in CODE_PATHS if (root / p).exists()]
    changes = _git(root, "status", "--porcelain", "--", *paths)
    return CodeState(commit, changes is None or bool(changes), str(root))


def installed_code_state() -> CodeState:
    """The state of the checkout this `nas` is imported from; a package installed outside a
    checkout (a wheel in site-packages, even inside some other repository) has no commit."""
    import nas

    package = Path(nas.__file__).resolve().parent
    top = _git(package, "rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() / "nas" != package:
        return CodeState(None, False, str(package))
    return code_state(Path(top))


@dataclass(frozen=True)
class PhaseRecord:
    """One stretch of work on a phase: the code it ran, when it started and, unless it was cut
    off, when it finished (a resumed phase has one record per stretch)."""

    phase: str
    commit: str | None
    dirty: bool
    started: str
    allowed_code_change: bool = False
    finished: str | None = None

    @property
    def seconds(self) -> float | None:
        if self.finished is None:
            return None
        return (datetime.fromisoformat(self.finished) - datetime.fromisoformat(self.started)).total_seconds()


def read_provenance(folder: Path) -> list[PhaseRecord]:
    path = Path(folder) / PROVENANCE_FILE
    if not path.is_file():
        return []
    return [PhaseRecord(**entry) for entry in json.loads(path.read_text())]


def check_code(folder: Path, code: CodeState, allow_change: bool) -> None:
    """Refuse (ConfigError) a dirty tree, or a commit other than the reproduction's first,
    unless `allow_change`."""
    if allow_change:
        return
    if code.dirty:
        raise ConfigError(f"the nas checkout at {code.source} has uncommitted changes; a reproduction records "
                          f"which commit made each phase, so commit them first, or pass --allow-code-change "
                          f"(the report will say so)")
    earlier = read_provenance(folder)
    if earlier and earlier[0].commit != code.commit:
        first = earlier[0].commit[:12] if earlier[0].commit else "code outside a git checkout"
        raise ConfigError(f"reproduction {Path(folder).name!r} was started with {first}, but this is "
                          f"{code.describe()}; resume it with that commit, or pass --allow-code-change (the report "
                          f"will list the commit of every phase)")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _write(folder: Path, records: list[PhaseRecord]) -> None:
    atomic_write(Path(folder) / PROVENANCE_FILE, json.dumps([asdict(r) for r in records], indent=1) + "\n")


def record_phase(folder: Path, phase: str, code: CodeState, allow_change: bool) -> None:
    """Append that `phase` starts now with `code`."""
    _write(folder, [*read_provenance(folder), PhaseRecord(phase, code.commit, code.dirty, _now(), allow_change)])


def finish_phase(folder: Path, phase: str) -> None:
    """Mark the latest unfinished stretch of `phase` finished now (nothing when none is open)."""
    records = read_provenance(folder)
    for i in range(len(records) - 1, -1, -1):
        if records[i].phase == phase and records[i].finished is None:
            records[i] = replace(records[i], finished=_now())
            _write(folder, records)
            return


def phase_minutes(records: list[PhaseRecord], prefix: str) -> float:
    """Minutes of finished work on the phases whose name starts with `prefix`."""
    return sum(r.seconds or 0.0 for r in records if r.phase.startswith(prefix)) / 60.0


def provenance_rows(records: list[PhaseRecord]) -> list[list[Any]]:
    """One report row per stretch of work: phase, commit, tree, started, minutes (or that it was
    cut off), whether a code change was allowed."""
    return [[r.phase, r.commit[:12] if r.commit else "not a git checkout", "dirty" if r.dirty else "clean", r.started,
             f"{r.seconds / 60:.1f}" if r.seconds is not None else "cut off",
             "yes" if r.allowed_code_change else "no"] for r in records]
