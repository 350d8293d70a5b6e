"""Progress of a search on the terminal: a bar (trials done/budget, best reward, ETA) and one
line per finished trial, which also lands in logs where no terminal shows the bar."""

from __future__ import annotations

import math
import sys
from typing import Any

from tqdm import tqdm


class Progress:
    def __init__(self, budget: int, done: int, enabled: bool = True) -> None:
        self.enabled = enabled
        self.budget = budget
        self.bar = tqdm(
            total=budget, initial=done, desc="search", unit="trial", dynamic_ncols=True,
            disable=not enabled or not sys.stderr.isatty(), file=sys.stderr,
        )
        self.done = done

    def update(self, done: int, row: dict[str, Any], best: float | None) -> None:
        if not self.enabled:
            return
        self.bar.update(max(0, done - self.done))
        self.done = done
        best_text = f"{best:.4f}" if best is not None else "-"
        self.bar.set_postfix_str(f"best {best_text}", refresh=True)
        self.bar.write(f"[{done}/{self.budget}] {describe_row(row)}  best {best_text}", file=sys.stderr)

    def close(self) -> None:
        self.bar.close()


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
