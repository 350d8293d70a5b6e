"""Where the shipped search spaces and reference architectures live (repo or installed wheel)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from nas.arch import Arch
from nas.errors import ConfigError


def _spaces_root() -> Path:
    # Installed: the wheel maps search_spaces/ to nas.search_spaces. Run from a checkout (the
    # repository root on sys.path shadows the editable finder): the folder beside nas/.
    try:
        return Path(str(resources.files("nas.search_spaces")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "search_spaces"


def _user_path(name: str) -> Path:
    try:
        return Path(name).expanduser()
    except RuntimeError:  # `~nobody/x.yaml` with no such user: keep it literal, reported as missing
        return Path(name)


def space_names() -> list[str]:
    return sorted(p.stem for p in _spaces_root().glob("*.yaml"))


def reference_names() -> list[str]:
    return sorted(p.stem for p in (_spaces_root() / "arches").glob("*.yaml"))


def space_path(name: str) -> Path:
    """Path of a shipped space by name, or of a user's YAML file."""
    if name in space_names():
        return _spaces_root() / f"{name}.yaml"
    path = _user_path(name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"search space file {name!r} does not exist")
        return path
    raise ConfigError(f"unknown search space {name!r}; allowed: {', '.join(space_names())} or a YAML file path")


def load_arch(name_or_path: str) -> Arch:
    """A reference architecture by name (`efficientnet-b0`, ...) or an architecture YAML file."""
    if name_or_path in reference_names():
        return Arch.load(_spaces_root() / "arches" / f"{name_or_path}.yaml")
    path = _user_path(name_or_path)
    if path.is_file():
        return Arch.load(path)
    if "," in name_or_path:
        return Arch.from_string(name_or_path)
    raise ConfigError(
        f"unknown architecture {name_or_path!r}; allowed: {', '.join(reference_names())}, "
        f"an architecture YAML file or an architecture string"
    )
