"""Errors that `nas` raises on purpose.

Every error a user can cause is a `NASError`; the CLI prints its message on one line and exits
with status 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import reprlib


class NASError(Exception):
    """Base class of the errors a user can cause and fix."""


class ConfigError(NASError):
    """A search space, architecture, run setting or CLI argument is invalid."""


class DataError(NASError):
    """A dataset is missing, malformed or cannot be read."""


class TrialError(NASError):
    """A trial could not finish (diverged, ran out of memory, raised)."""


class RunError(NASError):
    """A run directory is missing, belongs to another search, or cannot be written."""


# Bounded repr: YAML aliases can nest a few lines into a list of 10**9 shared elements
# (a "billion laughs"), whose full repr would never finish.
_SHORT = reprlib.Repr()
_SHORT.maxlevel = 3
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxset = _SHORT.maxfrozenset = _SHORT.maxdict = 8
_SHORT.maxstring = _SHORT.maxother = _SHORT.maxlong = 80


def describe(value: object) -> str:
    """Short, quoted rendering of an offending value for error messages."""
    try:
        text = _SHORT.repr(value)
    except ValueError:  # an int past Python's 4300-digit str limit (YAML hex literals reach it)
        text = f"<integer of {value.bit_length()} bits>" if isinstance(value, int) else f"<{type(value).__name__}>"
    return text if len(text) <= 60 else text[:57] + "..."
