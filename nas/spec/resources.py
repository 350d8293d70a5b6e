"""Where the shipped search spaces and reference architectures live (repo or installed wheel)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from nas.spec.arch import Arch
from nas.spec.errors import ConfigError, describe
from nas.spec.paths import is_dir, is_file, user_path


def _spaces_root() -> Path:
    # Installed: the wheel maps search_spaces/ to nas.search_spaces. Run from a checkout (the
    # repository root on sys.path shadows the editable finder): the folder beside nas/.
    try:
        return Path(str(resources.files("nas.search_spaces")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[2] / "search_spaces"


def space_names() -> list[str]:
    return sorted(p.stem for p in _spaces_root().glob("*.yaml"))


def reference_names() -> list[str]:
    return sorted(p.stem for p in (_spaces_root() / "arches").glob("*.yaml"))


def space_path(name: str) -> Path:
    """Path of a shipped space by name, or of a user's YAML file."""
    if name in space_names():
        return _spaces_root() / f"{name}.yaml"
    path = user_path(name)
    if path is not None and is_file(path):
        return path
    if is_dir(name):
        raise ConfigError(f"search space {describe(name)} is a directory; allowed: {', '.join(space_names())} "
                          f"or a YAML file path")
    if _looks_like_yaml_path(name):
        raise ConfigError(f"search space file {describe(name)} does not exist")
    raise ConfigError(f"unknown search space {describe(name)}; allowed: {', '.join(space_names())} or a YAML file path")


def _looks_like_yaml_path(text: str) -> bool:
    return "," not in text and text.rstrip().endswith((".yaml", ".yml"))


def load_arch(name_or_path: str, base: Path | None = None) -> Arch:
    """An architecture from a user's argument: an existing file is a file, a known name is a
    reference (`efficientnet-b0`, ...), anything else is parsed as an architecture string.

    `base` is the folder a relative file name is read from (a space file's own folder). Whatever
    the text, the error is one ConfigError naming what is wrong, never the file system's.
    """
    if is_file(name_or_path, base):
        return Arch.load(user_path(name_or_path, base))  # type: ignore[arg-type]  # is_file: a path
    if name_or_path in reference_names():
        return Arch.load(_spaces_root() / "arches" / f"{name_or_path}.yaml")
    allowed = f"allowed: {', '.join(reference_names())}, an architecture YAML file or an architecture string"
    if is_dir(name_or_path, base):
        raise ConfigError(f"architecture {describe(name_or_path)} is a directory; {allowed}")
    if _looks_like_yaml_path(name_or_path):
        raise ConfigError(f"architecture file {describe(name_or_path)} does not exist; {allowed}")
    if "," in name_or_path:
        return Arch.from_string(name_or_path)
    raise ConfigError(f"unknown architecture {describe(name_or_path)}; {allowed}")
