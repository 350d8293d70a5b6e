"""Run-folder files are replaced whole and durably: fsync the file, rename, fsync the folder."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

import nas.records.runs
from nas.records.runs import atomic_write
from nas.spec.errors import RunError


def test_atomic_write_syncs_the_file_before_the_rename_and_the_folder_after(tmp_path: Path, monkeypatch) -> None:
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def replace(src, dst) -> None:
        events.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(nas.records.runs.os, "fsync", fsync)
    monkeypatch.setattr(nas.records.runs.os, "replace", replace)
    target = tmp_path / "results.csv"
    atomic_write(target, "number,state\n0,COMPLETE\n")
    assert events == ["fsync file", "rename", "fsync folder"]
    assert target.read_text() == "number,state\n0,COMPLETE\n"
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]  # no temporary file left


def test_a_failed_write_keeps_the_old_file_and_names_it(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "best.yaml"
    target.write_text("old\n")

    def full_disk(fd: int) -> None:  # an injected fault: the disk fills up before the data is durable
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(nas.records.runs.os, "fsync", full_disk)
    with pytest.raises(RunError, match="cannot write .*best.yaml: No space left on device"):
        atomic_write(target, "new\n")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["best.yaml"]
