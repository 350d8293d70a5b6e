"""Errors that `nas` raises on purpose.

Every error a user can cause is a `NASError`; the CLI prints its message on one line and exits
with status 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


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


def describe(value: object) -> str:
    """Short, quoted rendering of an offending value for error messages."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
