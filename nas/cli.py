"""The `nas` command line. Each command lives in `nas.commands.<name>` with `add_parser`
and `run`; this module builds the parser and turns errors into exit codes (the argument types
live in `nas.commands.args`).

User mistakes end in one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from nas.commands.args import EXIT_USAGE, OneLineParser
from nas.spec.errors import NASError


def build_parser() -> argparse.ArgumentParser:
    from nas.commands import COMMANDS, command_module

    parser = OneLineParser(prog="nas", description="Training-aware neural architecture search (EfficientNet / V2).")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    for name in COMMANDS:
        command_module(name).add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from nas.commands import command_module

    args = build_parser().parse_args(argv)
    from nas.commands.output import show_log

    show_log(quiet=getattr(args, "quiet", False))
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
