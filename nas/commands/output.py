"""What the command line shows on the terminal: the search's progress (a bar of trials done of
the budget with the best reward and ETA, and one line per finished trial, which also lands in
logs where no terminal shows the bar) and the library's log messages, on stderr."""

from __future__ import annotations

import logging
import math
import sys
from typing import Any


class TerminalProgress:
    """`nas.search.progress.SearchProgress` on stderr (the bar only where stderr is a terminal)."""

    def __init__(self) -> None:
        self.bar: Any = None  # a tqdm bar while a search runs
        self.budget = 0
        self.done = 0

    def start(self, budget: int, done: int) -> None:
        from tqdm import tqdm

        self.close()
        self.budget, self.done = budget, done
        self.bar = tqdm(total=budget, initial=done, desc="search", unit="trial", dynamic_ncols=True,
                        disable=not sys.stderr.isatty(), file=sys.stderr)

    def trial(self, done: int, row: dict[str, Any], best: float | None) -> None:
        if self.bar is None:
            self.start(self.budget, self.done)
        assert self.bar is not None
        self.bar.update(max(0, done - self.done))
        self.done = done
        best_text = f"{best:.4f}" if best is not None else "-"
        self.bar.set_postfix_str(f"best {best_text}", refresh=True)
        self.bar.write(f"[{done}/{self.budget}] {describe_row(row)}  best {best_text}", file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class _StderrHandler(logging.Handler):
    """The library's log records on whatever sys.stderr is at the time (tests swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.levelno >= logging.WARNING and not message.startswith("nas:"):
                message = f"nas: {record.levelname.lower()}: {message}"
            print(message, file=sys.stderr, flush=True)
        except Exception:  # a log line must never end a run
            self.handleError(record)


def show_log(quiet: bool = False) -> None:
    """Show the `nas` loggers' messages on stderr: notes unless `quiet`, warnings always."""
    logger = logging.getLogger("nas")
    for handler in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
        logger.removeHandler(handler)
    logger.addHandler(_StderrHandler())
    logger.setLevel(logging.WARNING if quiet else logging.INFO)


def describe_row(row: dict[str, Any]) -> str:
    parts = [f"trial {row['number']:>3} {row['state']:<8}"]
    if row.get("accuracy") is not None:
        parts.append(f"acc {row['accuracy']:.4f}")
    if row.get("step_ms") is not None and math.isfinite(row["step_ms"]):
        parts.append(f"step {row['step_ms']:.1f} ms")
    elif row.get("macs") is not None:  # an objective that does not time steps scores MACs
        parts.append(f"MACs {row['macs'] / 1e6:.0f}M")
    if row.get("params") is not None:
        parts.append(f"params {row['params'] / 1e3:.0f}k")
    if row.get("reward") is not None:
        parts.append(f"reward {row['reward']:.4f}")
    if row.get("seconds") is not None:
        parts.append(f"{row['seconds']:.1f} s")
    if row.get("reason"):
        parts.append(f"({row['reason']})")
    return "  ".join(parts)
