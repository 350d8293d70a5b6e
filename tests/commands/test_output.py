"""The one line per finished trial."""

from __future__ import annotations

import math

from nas.commands.output import describe_row

ROW = {"number": 7, "state": "COMPLETE", "accuracy": 0.9, "params": 5_300_000, "macs": 390_000_000,
       "reward": 0.93, "seconds": 4.2}


def test_a_timed_step_is_shown_in_milliseconds() -> None:
    line = describe_row({**ROW, "step_ms": 123.45})
    assert "step 123.5 ms" in line and "MACs" not in line


def test_a_search_that_times_no_step_shows_the_macs_it_scored() -> None:
    line = describe_row({**ROW, "step_ms": math.nan})
    assert "MACs 390M" in line and "step" not in line and "nan" not in line
