"""The per-machine step-time table: where it lives, one folder per fingerprint, generations."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from nas.measure.costs import StepTime
from nas.measure.hardware import Hardware
from nas.measure.step_table import (
    CACHE_ENV,
    Drift,
    StepTable,
    cache_dir,
    current_table,
    hardware_folder,
    next_generation,
    pinned_table,
    write_record,
)

CPU = Hardware(device="cpu", device_model="cpu", cpu="Some CPU", threads=2, dtype="fp32", torch="2.13.0")
GPU = Hardware(device="cuda", device_model="NVIDIA H200", cpu="Some CPU", threads=16, dtype="bf16", torch="2.11.0",
               cuda="13.0", cudnn="91200", driver="13000")


def test_the_cache_folder_is_the_flag_else_the_environment_else_the_user_cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "env"))
    assert cache_dir(tmp_path / "flag") == tmp_path / "flag"
    assert cache_dir() == tmp_path / "env"
    monkeypatch.delenv(CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "nas"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "nas"


@pytest.mark.parametrize("change", [{"threads": 1}, {"cpu": "Other CPU"}, {"torch": "2.14.0"}, {"dtype": "bf16"}])
def test_each_fingerprint_field_that_changes_kernels_gets_its_own_table(change: dict, tmp_path: Path) -> None:
    assert hardware_folder(replace(CPU, **change), tmp_path) != hardware_folder(CPU, tmp_path)


@pytest.mark.parametrize("change", [{"cuda": "12.8"}, {"cudnn": "90800"}, {"driver": "12090"},
                                    {"device_model": "NVIDIA H100 80GB HBM3"}])
def test_gpu_tables_follow_the_cuda_cudnn_and_driver_versions(change: dict, tmp_path: Path) -> None:
    other = replace(GPU, **change)
    assert other.key() != GPU.key()
    assert hardware_folder(other, tmp_path) != hardware_folder(GPU, tmp_path)


def test_cpu_keys_are_those_of_tables_made_before_gpu_fields_existed() -> None:
    assert CPU.key() == "cpu:cpu|Some CPU|2t|fp32|torch2.13.0"
    old_record = {k: v for k, v in CPU.to_dict().items() if k not in ("cuda", "cudnn", "driver")}
    assert Hardware.from_dict(old_record) == CPU


def test_generations_advance_once_however_many_processes_find_the_drift(tmp_path: Path) -> None:
    first = current_table(CPU, tmp_path)
    assert first.generation == 1 and not first.path.exists()
    first.cache().put("part", StepTime(10.0, 0.01, 5, 9.0))
    second = next_generation(first)
    assert second.generation == 2 and len(second.cache()) == 0  # starts empty, filled afresh
    assert next_generation(first) == second  # a second finder joins it instead of making g3
    assert current_table(CPU, tmp_path) == second
    assert first.cache().get("part").median_ms == 10.0  # the old generation is kept as it was


def test_a_run_keeps_the_generation_it_pinned(tmp_path: Path) -> None:
    table = current_table(CPU, tmp_path / "cache")
    write_record(tmp_path, table, Drift(table_ms=10.0, now_ms=10.2), None)
    next_generation(table)  # another run starts generation 2 beside it
    assert pinned_table(tmp_path, CPU) == StepTable(table.path, CPU)
    assert pinned_table(tmp_path, replace(CPU, threads=1)) is None  # other hardware: its own table
    record = json.loads((tmp_path / "step_table.json").read_text())
    assert record["generation"] == 1 and record["reference_check"]["beyond"] is False


@pytest.mark.parametrize(("now", "beyond"), [(10.4, False), (9.6, False), (10.6, True), (9.4, True)])
def test_drift_beyond_five_percent_either_way(now: float, beyond: bool) -> None:
    drift = Drift(table_ms=10.0, now_ms=now)
    assert drift.beyond is beyond
    assert "tolerance ±5%" in drift.describe()
