"""What a reproduction was asked to do, recorded in its folder so a re-run resumes it."""

from __future__ import annotations

import logging
import shlex
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from nas.records.runs import atomic_write
from nas.reproduce.claims import TARGETS
from nas.spec.errors import ConfigError

log = logging.getLogger(__name__)

REQUEST_FILE = "reproduce.yaml"


# -- the request -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Request:
    target: str
    budget: int = 100
    baseline_budget: int | None = None  # None: the search's budget (a fair comparison)
    search_seeds: int = 6  # TPE and random search each run with this many seeds (paired by seed)
    ablation: bool = True  # per seed also TPE for accuracy alone (every cost weight 0): accuracy or cost?
    top: int = 3
    seeds: int = 3
    retrain_epochs: int | None = None  # None: twice the proxy's epochs
    rank_extra: int = 7  # with top 3 and the reference: 11 architectures for Kendall tau
    precondition_rounds: int = 5  # interleaved timings of the fused ablation (0: skip it)
    dataset: str = "mnist5k"
    test_fraction: float = 0.2  # held out from every search; the retrained networks are tested on it
    device: str = "auto"
    workers: int = 1
    seed: int = 0
    space: str | None = None  # tests: a smaller space with the same claims
    epochs: int | None = None
    max_train: int | None = None
    search_args: tuple[str, ...] = ()  # more `nas search` options for both searches (e.g. --backend ray)
    allow_code_change: bool = False  # run from a dirty tree or another commit (nas.reproduce.provenance)

    @property
    def space_name(self) -> str:
        return self.space or TARGETS[self.target].space

    @property
    def baseline(self) -> int:
        return self.budget if self.baseline_budget is None else self.baseline_budget

    def search_runs(self) -> list[SeedRuns]:
        return seed_runs(self.seed, self.search_seeds)

    def command(self, name: str, runs_dir: str | Path = "runs") -> str:
        """The `nas reproduce` command line that asks for this (options left at defaults omitted)."""
        parts = ["nas", "reproduce", self.target]
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name == "target" or value == item.default:
                continue
            flag = "--" + item.name.replace("_", "-")
            if isinstance(value, bool):  # a switch: the flag that turns the default around
                parts.append(flag if value else "--no-" + flag[2:])
                continue
            parts += [flag, shlex.join(value) if item.name == "search_args" else str(value)]
        parts += ["--name", name] + (["--runs-dir", str(runs_dir)] if str(runs_dir) != "runs" else [])
        return shlex.join(parts)

    def fingerprint(self) -> dict[str, Any]:
        """What must not change when the same --name is run again."""
        return {"target": self.target, "space": self.space_name, "dataset": self.dataset, "seed": self.seed,
                "test_fraction": self.test_fraction}


@dataclass(frozen=True)
class SeedRuns:
    """The TPE and random-search run folders of one search seed."""

    seed: int
    tpe: str
    random: str
    accuracy: str  # the cost-term ablation: TPE with every cost weight 0


def seed_runs(first_seed: int, count: int) -> list[SeedRuns]:
    """One pair of runs per search seed; the first seed's keep the plain names `search` and
    `random` (its search is the one retrained and reported in detail)."""
    out = []
    for i in range(max(1, count)):
        seed = first_seed + i
        suffix = "" if i == 0 else f"-seed{seed}"
        out.append(SeedRuns(seed, f"search{suffix}", f"random{suffix}", f"accuracy-only{suffix}"))
    return out


def is_reproduction(path: Path) -> bool:
    return (Path(path) / REQUEST_FILE).is_file()


def record_request(folder: Path, request: Request, runs_dir: str | Path) -> None:
    path = folder / REQUEST_FILE
    if path.is_file():
        saved = yaml.safe_load(path.read_text()) or {}
        for key, value in request.fingerprint().items():
            if saved.get(key) != value:
                raise ConfigError(
                    f"reproduction {folder.name!r} was made with {key} = {saved.get(key)!r}, but this command gives "
                    f"{value!r}; use the same settings or another --name"
                )
    folder.mkdir(parents=True, exist_ok=True)
    record = dict(vars(request))
    record["search_args"] = list(request.search_args)
    record["baseline_budget"] = request.baseline
    record.update(request.fingerprint())
    record["command"] = request.command(folder.name, runs_dir)
    atomic_write(path, yaml.safe_dump(record, sort_keys=False))


def say(line: str) -> None:
    """A reproduction's progress note (the `nas` loggers; `nas reproduce` shows them on stderr)."""
    log.info(line)
