"""The `nas` command line. Each command lives in `nas.commands.<name>` with `add_parser`
and `run`; this module holds the shared argument types and the error handling.

User mistakes end in one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from nas.errors import NASError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
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


def build_parser() -> argparse.ArgumentParser:
    from nas.commands import COMMANDS, command_module

    parser = _Parser(prog="nas", description="Training-aware neural architecture search (EfficientNet / V2).")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMANDS:
        command_module(name).add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from nas.commands import command_module

    args = build_parser().parse_args(argv)
    try:
        command_module(args.command).run(args)
    except NASError as exc:
        print(f"nas: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
