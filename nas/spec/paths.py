"""Looking at a user's argument as a path without letting the file system raise.

An argument such as `nas arch TEXT` may be a file, a known name or an architecture string. An
architecture string of 20 blocks is a few hundred characters, longer than a file name may be
(`OSError: File name too long`), and fuzzed input holds NUL bytes (`ValueError`). Such a string
simply names no file: these helpers answer False/None instead of raising, so the caller goes on
to parse it and reports the token that is wrong.
"""

from __future__ import annotations

import contextlib
from pathlib import Path


def user_path(text: str | Path, base: Path | None = None) -> Path | None:
    """`text` as a path (`~` expanded, relative to `base`), or None where it cannot be one."""
    if isinstance(text, str) and (not text or "\0" in text):
        return None
    path = Path(text)
    with contextlib.suppress(RuntimeError):  # `~nobody/x` with no such user: kept literal, it will not exist
        path = path.expanduser()
    return base / path if base is not None else path


def _probe(text: str | Path, base: Path | None, test: str) -> bool:
    path = user_path(text, base)
    if path is None:
        return False
    try:
        return bool(getattr(path, test)())
    except (OSError, ValueError):  # too long a name, a component that is too long, a NUL
        return False


def is_file(text: str | Path, base: Path | None = None) -> bool:
    """Whether `text` names an existing regular file; never raises for a string that cannot be a path."""
    return _probe(text, base, "is_file")


def is_dir(text: str | Path, base: Path | None = None) -> bool:
    """Whether `text` names an existing directory; never raises for a string that cannot be a path."""
    return _probe(text, base, "is_dir")
