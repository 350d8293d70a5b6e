"""`nas spaces`: the shipped search spaces, one line each."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    sub.add_parser("spaces", help="list the shipped search spaces")


def run(args: argparse.Namespace) -> None:
    from nas.spec.resources import space_names
    from nas.spec.space import SearchSpace

    for name in space_names():
        print(SearchSpace.load(name).summary())
