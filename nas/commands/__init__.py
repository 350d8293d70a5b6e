"""One module per `nas` command, each with `add_parser(subparsers)` and `run(args)`; shared
argument types in `args`, what the terminal shows in `output`. The only layer (with `nas.cli`)
that prints or exits; it may import every layer of the library.

Modules import only argparse at the top, so `nas --help` stays fast; heavy imports happen
inside `run`.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

# Order is the order of `nas --help`.
COMMANDS = [
    name
    for name in ("spaces", "arch", "calibrate", "search", "show", "report", "reproduce", "scale", "train", "export")
    if importlib.util.find_spec(f"nas.commands.{name}") is not None
]


def command_module(name: str) -> ModuleType:
    return importlib.import_module(f"nas.commands.{name}")
