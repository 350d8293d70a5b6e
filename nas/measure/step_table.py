"""One step-time table per machine, shared by every run and worker on it.

A part's step time depends on the hardware, not on the run, so the table lives in a user cache
folder (`~/.cache/nas/step-times/`, or `$NAS_CACHE_DIR`, or `nas search --cache-dir`), one
folder per hardware fingerprint (`nas.measure.hardware`: device and model, CUDA, cuDNN and driver
versions, dtype, torch; on a CPU its model and threads). A second search on the same machine
then times no part again, and `nas calibrate` can fill the table before any search.

A table is never mixed with timings of another state of the machine. It comes in numbered
*generations* (`g1.json`, `g2.json`, ...): when a run re-times the reference and finds it more
than `DRIFT_TOLERANCE` away from the table (a driver update, a thermal limit, another load), it
says so and starts the next generation, which is filled afresh. A run pins the generation it
started with (`runs/<name>/step_table.json`), so every S of one run comes from one table even
when a later run starts a new generation beside it. Files are shared safely by `StepTimeCache`
(a lock, atomic replacement); creating a generation takes the folder's own lock.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas.measure.costs import StepTimeCache
from nas.measure.hardware import Hardware
from nas.records.file_lock import file_lock

CACHE_ENV = "NAS_CACHE_DIR"
# a reference that steps more than 5% faster or slower than its table entries says the machine
# changed: comparing a candidate with the table's reference would then be off by as much
DRIFT_TOLERANCE = 0.05
_GENERATION = re.compile(r"^g(\d+)\.json$")


def use_cache_dir(folder: str | Path) -> None:
    """Keep the tables in `folder` for this process and every worker it starts (they inherit the
    environment): `--cache-dir`."""
    os.environ[CACHE_ENV] = os.path.abspath(os.path.expanduser(folder))


def cache_dir(override: str | Path | None = None) -> Path:
    """The user cache folder of nas: `override`, else `$NAS_CACHE_DIR`, else the XDG cache folder
    (`~/.cache/nas`)."""
    if override:
        return Path(override).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "nas"


def hardware_folder(hardware: Hardware, root: Path) -> Path:
    """The folder of one fingerprint's table generations: a readable name plus a digest of the key."""
    readable = re.sub(r"[^a-z0-9]+", "-", f"{hardware.device_model}-{hardware.threads}t-{hardware.dtype}".lower())
    digest = hashlib.sha1(hardware.key().encode()).hexdigest()[:12]
    return root / "step-times" / f"{readable.strip('-')[:48]}-{digest}"


@dataclass(frozen=True)
class StepTable:
    """One generation of one machine's table."""

    path: Path
    hardware: Hardware

    @property
    def generation(self) -> int:
        match = _GENERATION.match(self.path.name)
        return int(match.group(1)) if match else 0

    def cache(self) -> StepTimeCache:
        return StepTimeCache(self.path)

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "generation": self.generation, "hardware": self.hardware.to_dict()}


def _generations(folder: Path) -> list[int]:
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for p in folder.iterdir() if (m := _GENERATION.match(p.name)))


def current_table(hardware: Hardware, root: Path | None = None) -> StepTable:
    """The newest generation of this hardware's table (generation 1 when there is none yet)."""
    folder = hardware_folder(hardware, root or cache_dir())
    generations = _generations(folder)
    return StepTable(folder / f"g{generations[-1] if generations else 1}.json", hardware)


def next_generation(table: StepTable) -> StepTable:
    """Start the generation after `table` (or join it, when another process already started it)."""
    folder = table.path.parent
    folder.mkdir(parents=True, exist_ok=True)
    with file_lock(folder / "generations.lock"):
        newest = max(_generations(folder) or [table.generation])
        if newest > table.generation:  # someone else found the drift first: use theirs
            return StepTable(folder / f"g{newest}.json", table.hardware)
        fresh = StepTable(folder / f"g{table.generation + 1}.json", table.hardware)
        fresh.path.write_text("{}\n")  # claims the number; StepTimeCache reads an empty table
        return fresh


@dataclass(frozen=True)
class Drift:
    """The reference re-timed now against the table: the sums over the parts both have."""

    table_ms: float
    now_ms: float
    tolerance: float = DRIFT_TOLERANCE

    @property
    def ratio(self) -> float:
        return self.now_ms / self.table_ms

    @property
    def beyond(self) -> bool:
        return abs(self.ratio - 1.0) > self.tolerance

    def describe(self) -> str:
        return (f"the reference steps in {self.now_ms:.1f} ms now against {self.table_ms:.1f} ms in the table "
                f"({(self.ratio - 1.0) * 100:+.1f}%, tolerance ±{self.tolerance * 100:.0f}%)")

    def to_dict(self) -> dict[str, Any]:
        return {"table_ms": self.table_ms, "now_ms": self.now_ms, "ratio": self.ratio, "tolerance": self.tolerance,
                "beyond": self.beyond}


RECORD = "step_table.json"


def write_record(run_path: Path, table: StepTable, drift: Drift | None, replaced: StepTable | None) -> None:
    """What a run's S came from: the table generation, and the reference check that chose it."""
    from nas.records.runs import atomic_write

    record = {**table.to_dict(), "entries_at_start": len(table.cache()),
              "reference_check": drift.to_dict() if drift is not None else None,
              "replaced": replaced.to_dict() if replaced is not None else None}
    atomic_write(run_path / RECORD, json.dumps(record, indent=2) + "\n")


def pinned_table(run_path: Path, hardware: Hardware) -> StepTable | None:
    """The generation a run pinned (None for a run made before tables were per machine, or on
    other hardware than the one that pinned it: that process uses its own machine's table)."""
    try:
        record = json.loads((run_path / RECORD).read_text())
        pinned = Hardware.from_dict(record["hardware"])
        path = Path(record["path"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return StepTable(path, hardware) if pinned.key() == hardware.key() else None
