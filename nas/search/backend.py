"""The backends behind one signature: a backend module (`nas.search.optuna_backend`,
`nas.search.ray_backend`) provides the four functions of `Backend`, and `run_search` calls
nothing else of it. Both keep their trials in the run's Optuna study and finish them through
`nas.search.lifecycle.finish_trial`, so their run folders read the same
(tests/search/test_backends.py runs one contract against both).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from nas.records.runs import RunDir
from nas.search.progress import SearchProgress
from nas.spec.errors import ConfigError
from nas.spec.settings import SearchSettings

if TYPE_CHECKING:
    from nas.search.run import SearchJob

BACKENDS = ("optuna", "ray")


class Backend(Protocol):
    def options(self, job: SearchJob, saved: dict[str, Any]) -> Any:
        """Where this backend runs trials: the job's options, else those of the resumed run's
        config.yaml (`saved`), else the defaults; checked (ConfigError names what is wrong)."""

    def connect(self, options: Any, settings: SearchSettings) -> None:
        """Reach where the trials will run and check they can run there, before anything is
        written (fails fast)."""

    def placement(self, run: RunDir, options: Any) -> dict[str, Any]:
        """What config.yaml records about where the trials run (storage, cluster options)."""

    def search(self, run: RunDir, settings: SearchSettings, budget: int, options: Any, *,
               resume: bool = False, progress: SearchProgress | None = None) -> None:
        """Run trials until the run holds `budget` finished ones."""


@dataclass(frozen=True)
class OptunaOptions:
    """Where the Optuna backend's trials run: worker processes on this machine."""

    workers: int = 1
    storage: str | None = None  # an Optuna RDB URL; None: the run's journal file


def load_backend(name: str) -> Backend:
    """The backend module `name`; ray is imported there only, and may be missing."""
    if name not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, but got {name!r}")
    try:
        return importlib.import_module(f"nas.search.{name}_backend")  # type: ignore[return-value]
    except ImportError as exc:
        if (exc.name or "").startswith("nas"):
            raise
        raise ConfigError(f"--backend {name} needs Ray Tune, which cannot be imported here ({exc}); "
                          f"install it with: pip install 'nas[ray]'") from None
