"""Architectures: frozen dataclasses, a compact string form, YAML/dict round trips.

An `Arch` holds *base* stage settings plus width/depth multipliers, the way the EfficientNet
papers write a model: B1..B7 differ from B0 only in (width, depth, resolution, dropout). The
builder resolves the multipliers with `round_channels` and `round_layers`.

Compact string (one token list, comma separated; round-trips exactly)::

    w1_d1_r224_do0.2_dp0.2,stem32_s2,mb_k3_e1_se0.25_c16_l1_s1,...,head1280

Stage tokens: `mb` (MBConv) or `fmb` (Fused-MBConv), then k(ernel), e(xpansion), se (ratio),
c(hannels), l(ayers), s(tride), and `noskip` when the residual is disabled.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from nas.spec.errors import ConfigError, describe

OPS = ("mbconv", "fused_mbconv")
OP_TOKENS = {"mbconv": "mb", "fused_mbconv": "fmb"}
KERNELS = (1, 3, 5, 7, 9)
STRIDES = (1, 2)


def round_channels(channels: float, divisor: int = 8) -> int:
    """Round to a multiple of `divisor`, never below 90% of the target (EfficientNet rule)."""
    rounded = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * channels:
        rounded += divisor
    return int(rounded)


def squeeze_channels(in_channels: int, se: float) -> int:
    """SE width: a fraction of the block's *input* channels (not the expanded width)."""
    return max(1, int(in_channels * se))


def expanded_channels(in_channels: int, expansion: float) -> int:
    # expansion 1 keeps the input width even when it is not 8-divisible, so no expand conv appears
    return in_channels if expansion == 1 else round_channels(in_channels * expansion)


def round_layers(layers: int, depth: float) -> int:
    """Stage depth after the depth multiplier: always rounded up."""
    return int(math.ceil(layers * depth))


@dataclass(frozen=True)
class Stage:
    """One stage: `layers` identical blocks, the first taking `stride`."""

    op: str
    kernel: int
    expansion: float
    se: float
    channels: int
    layers: int
    stride: int
    skip: bool = True

    def token(self) -> str:
        parts = [
            OP_TOKENS[self.op],
            f"k{self.kernel}",
            f"e{_num(self.expansion)}",
            f"se{_num(self.se)}",
            f"c{self.channels}",
            f"l{self.layers}",
            f"s{self.stride}",
        ]
        if not self.skip:
            parts.append("noskip")
        return "_".join(parts)


@dataclass(frozen=True)
class Arch:
    """A complete network description; `build` in `nas.model` turns it into a module."""

    stages: tuple[Stage, ...]
    stem_channels: int
    stem_stride: int = 2
    head_channels: int = 1280
    width: float = 1.0
    depth: float = 1.0
    resolution: int = 224
    dropout: float = 0.2
    drop_path: float = 0.2
    name: str | None = field(default=None, compare=False)

    # -- derived ---------------------------------------------------------------------------
    def resolved_stages(self) -> list[Stage]:
        """Stages with width and depth multipliers applied (what the builder instantiates)."""
        return [
            replace(
                s,
                channels=round_channels(s.channels * self.width),
                layers=round_layers(s.layers, self.depth),
            )
            for s in self.stages
        ]

    @property
    def resolved_stem_channels(self) -> int:
        return round_channels(self.stem_channels * self.width)

    @property
    def resolved_head_channels(self) -> int:
        return round_channels(self.head_channels * self.width)

    @property
    def total_stride(self) -> int:
        return self.stem_stride * math.prod(s.stride for s in self.stages)

    def with_(self, **changes: Any) -> Arch:
        """Copy with some fields changed (a new name unless one is given)."""
        changes.setdefault("name", None)
        return replace(self, **changes)

    # -- compact string --------------------------------------------------------------------
    def to_string(self) -> str:
        head = (
            f"w{_num(self.width)}_d{_num(self.depth)}_r{self.resolution}"
            f"_do{_num(self.dropout)}_dp{_num(self.drop_path)}"
        )
        stem = f"stem{self.stem_channels}_s{self.stem_stride}"
        stages = [s.token() for s in self.stages]
        return ",".join([head, stem, *stages, f"head{self.head_channels}"])

    @classmethod
    def from_string(cls, text: str) -> Arch:
        tokens = [t.strip() for t in text.strip().split(",")]
        if len(tokens) < 4:
            raise ConfigError(
                f"architecture string needs globals, stem, at least one stage and head, "
                f"but got {describe(text)}"
            )
        glob = _keyed(tokens[0], "globals", {"w": float, "d": float, "r": int, "do": float, "dp": float})
        stem = _keyed(tokens[1], "stem", {"stem": int, "s": int})
        head = _keyed(tokens[-1], "head", {"head": int})
        stages = []
        for i, tok in enumerate(tokens[2:-1]):
            parts = tok.split("_")
            op = {v: k for k, v in OP_TOKENS.items()}.get(parts[0])
            if op is None:
                raise ConfigError(
                    f"stages[{i}] of the architecture string must start with one of "
                    f"{sorted(OP_TOKENS.values())}, but got {describe(tok)}"
                )
            skip = "noskip" not in parts[1:]
            rest = "_".join(p for p in parts[1:] if p != "noskip")
            vals = _keyed(
                rest,
                f"stages[{i}]",
                {"k": int, "e": float, "se": float, "c": int, "l": int, "s": int},
            )
            stages.append(
                {
                    "op": op,
                    "kernel": vals["k"],
                    "expansion": vals["e"],
                    "se": vals["se"],
                    "channels": vals["c"],
                    "layers": vals["l"],
                    "stride": vals["s"],
                    "skip": skip,
                }
            )
        return cls.from_dict(
            {
                "width": glob["w"],
                "depth": glob["d"],
                "resolution": glob["r"],
                "dropout": glob["do"],
                "drop_path": glob["dp"],
                "stem": {"channels": stem["stem"], "stride": stem["s"]},
                "head": {"channels": head["head"]},
                "stages": stages,
            },
            source="architecture string",
        )

    # -- dict / YAML -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.name:
            out["name"] = self.name
        out.update(
            resolution=self.resolution,
            width=self.width,
            depth=self.depth,
            dropout=self.dropout,
            drop_path=self.drop_path,
            stem={"channels": self.stem_channels, "stride": self.stem_stride},
            head={"channels": self.head_channels},
            stages=[_stage_dict(s) for s in self.stages],
            string=self.to_string(),
        )
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None, width=120)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_yaml())

    @classmethod
    def from_dict(cls, data: Any, source: str = "architecture") -> Arch:
        v = _Validator(source)
        v.mapping(data, "")
        allowed = {"name", "resolution", "width", "depth", "dropout", "drop_path", "stem", "head",
                   "stages", "string"}
        v.known_keys(data, "", allowed)
        stem, head, stages_raw = parse_frame(data, v)
        stages = tuple(parse_stage(s, f"stages[{i}]", v) for i, s in enumerate(stages_raw))
        name = data.get("name")
        if name is not None and not isinstance(name, str):
            v.fail("name", name, "a string")
        string = data.get("string")  # informative only (to_dict writes it); the fields rule
        if string is not None and not isinstance(string, str):
            v.fail("string", string, "an architecture string")
        return cls(
            stages=stages,
            stem_channels=v.integer(stem.get("channels"), "stem.channels", minimum=1),
            stem_stride=v.choice(stem.get("stride", 2), "stem.stride", STRIDES),
            head_channels=v.integer(head.get("channels"), "head.channels", minimum=1),
            width=v.number(data.get("width", 1.0), "width", minimum=0.0, exclusive=True),
            depth=v.number(data.get("depth", 1.0), "depth", minimum=0.0, exclusive=True),
            resolution=v.integer(data.get("resolution", 224), "resolution", minimum=8),
            dropout=v.fraction(data.get("dropout", 0.2), "dropout"),
            drop_path=v.fraction(data.get("drop_path", 0.2), "drop_path"),
            name=name,
        )

    @classmethod
    def from_yaml(cls, text: str, source: str = "architecture") -> Arch:
        try:
            data = yaml.safe_load(text)
        except Exception as exc:  # bad tagged scalars raise ValueError etc., not YAMLError
            raise ConfigError(f"{source}: not valid YAML ({_yaml_problem(exc)})") from None
        return cls.from_dict(data, source=source)

    @classmethod
    def load(cls, path: str | Path) -> Arch:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read architecture file ({exc.strerror})") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: cannot read architecture file (not UTF-8 text)") from None
        return cls.from_yaml(text, source=str(path))


def parse_frame(data: dict, v: _Validator) -> tuple[dict, dict, list]:
    """The parts an architecture and a search space share: stem, head and the stage list."""
    stem = data.get("stem")
    v.mapping(stem, "stem")
    v.known_keys(stem, "stem", {"channels", "stride"})
    head = data.get("head", {"channels": 1280})
    v.mapping(head, "head")
    v.known_keys(head, "head", {"channels"})
    stages = data.get("stages")
    if not isinstance(stages, list) or not stages:
        v.fail("stages", stages, "a non-empty list of stages")
    return stem, head, stages


def parse_stage(raw: Any, where: str, v: _Validator) -> Stage:
    """Validate one fixed stage mapping (every field a single value)."""
    v.mapping(raw, where)
    v.known_keys(raw, where, {"op", "kernel", "expansion", "se", "channels", "layers", "stride", "skip"})
    return Stage(
        op=v.choice(raw.get("op"), f"{where}.op", OPS),
        kernel=v.choice(raw.get("kernel"), f"{where}.kernel", KERNELS),
        expansion=v.number(raw.get("expansion"), f"{where}.expansion", minimum=1.0),
        se=v.fraction(raw.get("se", 0.0), f"{where}.se", upper=1.0),
        channels=v.integer(raw.get("channels"), f"{where}.channels", minimum=1),
        layers=v.integer(raw.get("layers"), f"{where}.layers", minimum=1),
        stride=v.choice(raw.get("stride", 1), f"{where}.stride", STRIDES),
        skip=v.boolean(raw.get("skip", True), f"{where}.skip"),
    )


class _Validator:
    """Checks values and raises ConfigError naming source, key path, value and what is allowed."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, value: Any, allowed: str) -> None:
        where = f"{self.source}: {path}" if path else self.source
        raise ConfigError(f"{where} must be {allowed}, but got {describe(value)}")

    def mapping(self, value: Any, path: str) -> None:
        if not isinstance(value, dict):
            self.fail(path or "top level", value, "a mapping")

    def known_keys(self, value: dict, path: str, allowed: set[str]) -> None:
        for key in value:
            if key not in allowed:
                where = f"{path}.{key}" if path else str(key)
                self.fail(where, key, f"a known key (one of {sorted(allowed)})")

    def integer(self, value: Any, path: str, minimum: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, value, "an integer")
        if minimum is not None and value < minimum:
            self.fail(path, value, f"an integer >= {minimum}")
        return int(value)

    def number(self, value: Any, path: str, minimum: float | None = None, exclusive: bool = False) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(path, value, "a finite number")
        try:
            number = float(value)
        except OverflowError:  # an integer literal too large for a float (YAML allows 10**400)
            number = math.inf
        if not math.isfinite(number):
            self.fail(path, value, "a finite number")
        if minimum is not None and (number <= minimum if exclusive else number < minimum):
            self.fail(path, value, f"a number {'>' if exclusive else '>='} {_num(minimum)}")
        return number

    def fraction(self, value: Any, path: str, upper: float = 1.0) -> float:
        number = self.number(value, path)
        if not 0.0 <= number < upper:
            self.fail(path, value, f"a number in [0, {_num(upper)})")
        return number

    def boolean(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            self.fail(path, value, "true or false")
        return value

    def choice(self, value: Any, path: str, allowed: tuple) -> Any:
        # match the type as well: 3.0 == 3 and True == 1, but a float kernel or stride breaks the convs
        if not any(type(value) is type(a) and value == a for a in allowed):
            self.fail(path, value, f"one of {list(allowed)}")
        return value


Validator = _Validator


def _stage_dict(stage: Stage) -> dict[str, Any]:
    out = asdict(stage)
    if out["skip"]:
        del out["skip"]
    out["expansion"] = _plain(stage.expansion)
    return out


def _plain(x: float) -> int | float:
    return int(x) if float(x).is_integer() else x


def _num(x: float) -> str:
    return f"{x:g}"


_KEYED = re.compile(r"^([a-z]+)(-?[0-9.]+(?:e-?[0-9]+)?)$")


def _keyed(token: str, what: str, spec: dict[str, type]) -> dict[str, Any]:
    """Parse `k3_e6_c24` into {'k': 3, 'e': 6.0, 'c': 24} with the types in `spec`."""
    out: dict[str, Any] = {}
    for part in token.split("_"):
        match = _KEYED.match(part)
        if not match or match.group(1) not in spec:
            raise ConfigError(
                f"{what} of the architecture string has an unknown part {describe(part)}; "
                f"allowed keys are {sorted(spec)}"
            )
        key, raw = match.groups()
        if key in out:  # `k3_k5` is ambiguous; silently keeping the last would hide a typo
            raise ConfigError(f"{what} of the architecture string repeats {key!r} in {describe(token)}")
        try:
            out[key] = spec[key](raw)
        except ValueError:
            raise ConfigError(f"{what}: {key} must be {spec[key].__name__}, but got {describe(raw)}") from None
    missing = sorted(set(spec) - set(out))
    if missing:
        raise ConfigError(f"{what} of the architecture string lacks {missing} in {describe(token)}")
    return out


def _yaml_problem(exc: Exception) -> str:
    mark = getattr(exc, "problem_mark", None)
    if not isinstance(exc, yaml.YAMLError):
        # e.g. `!!int abc`, a date 2020-13-45, nesting deeper than the recursion limit
        return f"{type(exc).__name__}: {exc}".splitlines()[0][:120]
    problem = getattr(exc, "problem", None) or "syntax error"
    return f"{problem} at line {mark.line + 1}" if mark else problem
