"""The run directory: one folder per search, the same whichever backend ran it.

    runs/<name>/config.yaml      resolved settings, budget, versions, git commit
    runs/<name>/space.yaml       the search space file as used
    runs/<name>/study.journal    Optuna storage (crash-safe journal)
    runs/<name>/reference.json   the reward's normalisers, measured once per run
    runs/<name>/trials/<n>/      arch.yaml, metrics.json, TensorBoard events
    runs/<name>/results.csv      one row per trial
    runs/<name>/best.yaml        best architecture (pareto.csv too for --objective pareto)

Every file is written to a temporary name and renamed, so a crash never leaves half a file.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterable
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from nas.spec.arch import Arch
from nas.spec.errors import ConfigError, RunError, describe
from nas.spec.paths import is_file, user_path

RESULT_COLUMNS = [
    "number", "state", "reward", "accuracy", "step_ms", "step_spread", "ref_step_ms", "params", "macs", "epochs",
    "seconds", "hardware", "reason", "arch",
]
FINGERPRINT_KEYS = ("space", "space_sha256", "dataset", "proxy", "measure", "objective", "reference", "val_fraction",
                    "test_fraction", "seed")


def atomic_write(path: Path, text: str) -> None:
    """Write via a temporary file, fsync it, rename it over `path` and fsync the folder, so that
    after a crash or power loss `path` holds either the old or the new text, never a mix or
    nothing. Errors name the path and the reason."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_folder(path.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise RunError(f"cannot write {path}: {exc.strerror or exc}") from None


def _fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (where the platform allows opening a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # e.g. Windows: folders cannot be opened; the rename is as durable as it gets
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on folders
    finally:
        os.close(fd)


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for package in ("nas", "torch", "optuna", "numpy", "ray"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
            text=True, timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def default_name(space_name: str) -> str:
    return f"{space_name}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"


class RunDir:
    """A run folder on disk."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    # -- layout ----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def journal_path(self) -> Path:
        return self.path / "study.journal"

    @property
    def results_path(self) -> Path:
        return self.path / "results.csv"

    @property
    def best_path(self) -> Path:
        return self.path / "best.yaml"

    @property
    def reference_path(self) -> Path:
        return self.path / "reference.json"

    def trial_dir(self, number: int) -> Path:
        return self.path / "trials" / f"{number:04d}"

    def exists(self) -> bool:
        return self.config_path.is_file()

    # -- lifecycle -------------------------------------------------------------------------
    @classmethod
    def locate(cls, name_or_path: str, runs_dir: str | Path = "runs") -> RunDir:
        """An existing run by name (under runs_dir) or by path."""
        for base in (Path(runs_dir), None):
            if is_file(Path(name_or_path) / "config.yaml", base) and (candidate := user_path(name_or_path, base)):
                return cls(candidate)
        raise RunError(f"no run named {describe(name_or_path)} in {runs_dir}/ (and no run folder at that path)")

    def start(self, config: dict[str, Any], space_text: str, resume: bool) -> None:
        """Create a new run, or check that a resumed one was made with the same settings."""
        if self.exists():
            if not resume:
                raise RunError(
                    f"run {self.name!r} already exists in {self.path.parent}/; pass --resume to continue it "
                    f"or choose another --name"
                )
            self._check_same(config)
            saved = self.config()
            saved["budget"] = config["budget"]
            saved.setdefault("resumed", []).append(dt.datetime.now().isoformat(timespec="seconds"))
            atomic_write(self.config_path, yaml.safe_dump(saved, sort_keys=False))
            return
        if resume and not self.path.exists():
            raise RunError(f"cannot resume run {self.name!r}: no such run in {self.path.parent}/")
        try:
            (self.path / "trials").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunError(f"cannot create run directory {self.path}: {exc.strerror or exc}") from None
        full = dict(config)
        full["created"] = dt.datetime.now().isoformat(timespec="seconds")
        full["versions"] = versions()
        full["git_commit"] = git_commit()
        full["command"] = " ".join(["nas", *sys.argv[1:]])
        atomic_write(self.path / "space.yaml", space_text)
        atomic_write(self.config_path, yaml.safe_dump(full, sort_keys=False))

    def _check_same(self, config: dict[str, Any]) -> None:
        saved = self.config()
        for key in FINGERPRINT_KEYS:
            if saved.get(key) != config.get(key):
                raise ConfigError(
                    f"run {self.name!r} was made with {key} = {_short(saved.get(key))}, but this command "
                    f"gives {_short(config.get(key))}; use the run's settings or a new --name"
                )

    def config(self) -> dict[str, Any]:
        try:
            data = yaml.safe_load(self.config_path.read_text()) or {}
        except OSError as exc:
            raise RunError(f"cannot read {self.config_path}: {exc.strerror or exc}") from None
        except Exception as exc:  # YAMLError, or ValueError etc. from bad tagged scalars
            # one line: the CLI prints errors on one line, and YAMLError's str spans several
            mark = getattr(exc, "problem_mark", None)
            problem = getattr(exc, "problem", None) or f"{type(exc).__name__}: {exc}".splitlines()[0]
            where = f" at line {mark.line + 1}" if mark else ""
            raise RunError(f"cannot read {self.config_path}: {problem}{where}") from None
        if not isinstance(data, dict):
            raise RunError(f"cannot read {self.config_path}: not a mapping of settings")
        return data

    @contextmanager
    def writable(self) -> Any:
        """Turn OS errors (disk full, read-only folder) into one-line RunErrors."""
        try:
            yield
        except OSError as exc:
            raise RunError(f"cannot write to run directory {self.path}: {exc.strerror or exc}") from None

    # -- per-trial files -------------------------------------------------------------------
    def write_trial(self, number: int, arch: Arch | None, metrics: dict[str, Any]) -> Path:
        folder = self.trial_dir(number)
        with self.writable():
            folder.mkdir(parents=True, exist_ok=True)
        if arch is not None:
            atomic_write(folder / "arch.yaml", arch.to_yaml())
        atomic_write(folder / "metrics.json", json.dumps(metrics, indent=2, default=str) + "\n")
        return folder

    # -- tables ----------------------------------------------------------------------------
    def write_results(self, rows: Iterable[dict[str, Any]], pareto: list[dict[str, Any]] | None = None) -> None:
        rows = sorted(rows, key=lambda r: r["number"])
        atomic_write(self.results_path, _csv(rows))
        if pareto is not None:
            atomic_write(self.path / "pareto.csv", _csv(pareto))
        best = best_row(rows)
        if best is not None:
            arch = Arch.from_string(best["arch"]).with_(name=f"{self.name}-best")
            header = (
                f"# best of run {self.name}: trial {best['number']}, reward {_fmt(best['reward'])}, "
                f"proxy accuracy {_fmt(best['accuracy'])}\n"
            )
            atomic_write(self.best_path, header + arch.to_yaml())

    def read_results(self) -> list[dict[str, Any]]:
        if not self.results_path.is_file():
            return []
        with self.results_path.open(newline="") as handle:
            return [_typed(row) for row in csv.DictReader(handle)]


def best_row(rows: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    done = [r for r in rows if r["state"] == "COMPLETE" and r.get("reward") not in (None, "")]
    return max(done, key=lambda r: float(r["reward"]), default=None)


def _csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=RESULT_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in RESULT_COLUMNS})
    return buffer.getvalue()


def _typed(row: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = dict(row)
    for key in ("number", "params", "macs", "epochs"):
        out[key] = int(row[key]) if row.get(key) else None
    for key in ("reward", "accuracy", "step_ms", "step_spread", "ref_step_ms", "seconds"):
        out[key] = float(row[key]) if row.get(key) else None
    return out


def _fmt(x: Any) -> str:
    return f"{x:.4f}" if isinstance(x, float) else str(x)


def _short(value: Any) -> str:
    text = json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."
