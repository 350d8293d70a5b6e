"""Argument types and exit codes shared by the commands: a bad value is reported as
"must be <what is allowed>, but got <text>" in one line."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, NoReturn

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line (exit 2), without the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"nas: error: {message} (see '{self.prog} --help')\n")


def _bounded(cast: type, accept: Callable[[float], bool], allowed: str) -> Callable[[str], Any]:
    """An argparse type: `cast(text)` that `accept`s, else "must be <allowed>, but got <text>"."""

    def parse(text: str) -> Any:
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {allowed}, but got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"must be {allowed}, but got {text!r}")
        return value

    return parse


positive_int = _bounded(int, lambda v: v >= 1, "a positive integer")
non_negative_int = _bounded(int, lambda v: v >= 0, "an integer >= 0")
positive_float = _bounded(float, lambda v: v > 0, "a positive number")
non_negative_float = _bounded(float, lambda v: v >= 0, "a number >= 0")
fraction = _bounded(float, lambda v: 0.0 < v < 1.0, "a number in (0, 1)")
fraction_or_zero = _bounded(float, lambda v: 0.0 <= v < 1.0, "a number in [0, 1)")
