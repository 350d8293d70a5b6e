"""What a search tells whoever shows its progress. The library renders nothing: the command line
passes a terminal renderer (`nas.commands.output.TerminalProgress`); a library caller passes its
own, or nothing."""

from __future__ import annotations

from typing import Any, Protocol


class SearchProgress(Protocol):
    def start(self, budget: int, done: int) -> None:
        """The search (re)starts with `done` of `budget` trials finished."""

    def trial(self, done: int, row: dict[str, Any], best: float | None) -> None:
        """A trial finished (`row`: its results.csv row); `best`: the best reward so far."""

    def close(self) -> None:
        """The search stopped (its budget met, or interrupted)."""


class NoProgress:
    """Shows nothing (worker processes, library callers that pass none)."""

    def start(self, budget: int, done: int) -> None:
        pass

    def trial(self, done: int, row: dict[str, Any], best: float | None) -> None:
        pass

    def close(self) -> None:
        pass
