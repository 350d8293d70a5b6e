"""Search spaces: YAML schema, validation with key paths, define-by-run sampling.

A space file declares, per stage, either a fixed value or a list of choices for op, kernel,
expansion, se, channels, layers and skip (stride is fixed). Sampling asks a trial-like object
(`suggest_categorical(name, choices)`, as Optuna trials have) for every field that has more
than one choice, so the Optuna and the Ray backends drive the same space.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from nas.arch import KERNELS, OPS, STRIDES, Arch, Stage, Validator, parse_frame
from nas.errors import ConfigError, describe
from nas.resources import load_arch, reference_names, space_path

STAGE_FIELDS = ("op", "kernel", "expansion", "se", "channels", "layers", "skip")
OBJECTIVE_KINDS = ("reward", "macs", "pareto")


class Suggester(Protocol):
    def suggest_categorical(self, name: str, choices: list[Any]) -> Any: ...


@dataclass(frozen=True)
class StageSpace:
    """Choices of one stage; a field with one choice is fixed."""

    op: tuple[str, ...]
    kernel: tuple[int, ...]
    expansion: tuple[float, ...]
    se: tuple[float, ...]
    channels: tuple[int, ...]
    layers: tuple[int, ...]
    skip: tuple[bool, ...]
    stride: int

    def choices(self, name: str) -> tuple[Any, ...]:
        return getattr(self, name)


@dataclass(frozen=True)
class Proxy:
    """How a full-size candidate is shrunk for its brief proxy training."""

    resolution: int = 28
    width: float = 0.25
    depth: float = 0.34
    stem_stride: int = 1
    epochs: int = 2
    batch: int = 128
    lr: float = 0.01
    max_train: int | None = None
    # Regularisation at the proxy: a few epochs on small images need none (EfficientNetV2's
    # progressive learning makes the same observation); measured: 0.91 vs 0.85 val accuracy.
    dropout: float = 0.0
    drop_path: float = 0.0

    def apply(self, arch: Arch) -> Arch:
        return arch.with_(
            width=arch.width * self.width,
            depth=arch.depth * self.depth,
            resolution=self.resolution,
            stem_stride=self.stem_stride,
            dropout=self.dropout,
            drop_path=self.drop_path,
            name=f"{arch.name}@proxy" if arch.name else None,
        )


@dataclass(frozen=True)
class Measure:
    """Step-time measurement settings (batch defaults to the proxy batch)."""

    batch: int | None = None
    warmup: int = 3
    steps: int = 10


@dataclass(frozen=True)
class ObjectiveSpec:
    kind: str = "reward"
    step_time_weight: float = -0.07
    params_weight: float = -0.05
    macs_weight: float = -0.07
    target_macs: float = 400e6


@dataclass(frozen=True)
class SearchSpace:
    name: str
    about: str
    source: str
    stages: tuple[StageSpace, ...]
    stem_channels: int
    stem_stride: int
    head_channels: int
    resolution: int
    dropout: float
    drop_path: float
    reference: Arch
    objective: ObjectiveSpec = field(default_factory=ObjectiveSpec)
    proxy: Proxy = field(default_factory=Proxy)
    measure: Measure = field(default_factory=Measure)

    # -- sampling --------------------------------------------------------------------------
    def sample(self, trial: Suggester) -> Arch:
        """Define-by-run sampling: one categorical per field that has a choice."""
        stages = []
        for i, st in enumerate(self.stages):
            values = {}
            for name in STAGE_FIELDS:
                options = st.choices(name)
                values[name] = (
                    options[0] if len(options) == 1 else trial.suggest_categorical(param_name(i, name), list(options))
                )
            stages.append(Stage(stride=st.stride, **values))
        return self._arch(tuple(stages))

    def params_for(self, arch: Arch) -> dict[str, Any] | None:
        """Trial parameters that make `sample` return `arch`, or None if it is not in the space."""
        if len(arch.stages) != len(self.stages) or self._arch(arch.stages) != arch.with_(name=None):
            return None
        params = {}
        for i, (st, stage) in enumerate(zip(self.stages, arch.stages, strict=True)):
            if stage.stride != st.stride:
                return None
            for name in STAGE_FIELDS:
                options, value = st.choices(name), getattr(stage, name)
                if value not in options:
                    return None
                if len(options) > 1:
                    params[param_name(i, name)] = value
        return params

    def _arch(self, stages: tuple[Stage, ...]) -> Arch:
        return Arch(
            stages=stages,
            stem_channels=self.stem_channels,
            stem_stride=self.stem_stride,
            head_channels=self.head_channels,
            resolution=self.resolution,
            dropout=self.dropout,
            drop_path=self.drop_path,
        )

    def size(self) -> int:
        """Number of distinct architectures in the space."""
        total = 1
        for st in self.stages:
            for name in STAGE_FIELDS:
                total *= len(st.choices(name))
        return total

    def summary(self) -> str:
        return f"{self.name}: {self.about} ({len(self.stages)} stages, {self.size():.2e} architectures)"

    # -- loading ---------------------------------------------------------------------------
    @classmethod
    def load(cls, name_or_path: str) -> SearchSpace:
        path = space_path(name_or_path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read search space ({exc.strerror})") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: cannot read search space (not UTF-8 text)") from None
        return cls.from_yaml(text, source=str(path), base_dir=path.parent)

    @classmethod
    def from_yaml(cls, text: str, source: str = "search space", base_dir: Path | None = None) -> SearchSpace:
        try:
            data = yaml.safe_load(text)
        except Exception as exc:  # bad tagged scalars raise ValueError etc., not YAMLError
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            if not isinstance(exc, yaml.YAMLError):  # e.g. `!!int abc`, a date 2020-13-45
                where += f" ({type(exc).__name__}: {exc})".splitlines()[0][:120]
            raise ConfigError(f"{source}: not valid YAML{where}") from None
        return _parse_space(data, source, base_dir or Path.cwd())


def param_name(stage: int, name: str) -> str:
    return f"stage{stage}.{name}"


# -- parsing -------------------------------------------------------------------------------
_TOP_KEYS = {"name", "about", "reference", "objective", "proxy", "measure", "stem", "head", "stages",
             "resolution", "dropout", "drop_path"}


def _parse_space(data: Any, source: str, base_dir: Path) -> SearchSpace:
    v = Validator(source)
    v.mapping(data, "")
    v.known_keys(data, "", _TOP_KEYS)
    name = data.get("name")
    if not isinstance(name, str) or not name:
        v.fail("name", name, "a non-empty string")
    about = data.get("about", "")
    if not isinstance(about, str):
        v.fail("about", about, "a string")
    stem, head, raw_stages = parse_frame(data, v)
    stages = tuple(_parse_stage_space(s, f"stages[{i}]", v) for i, s in enumerate(raw_stages))
    proxy = _parse_proxy(data.get("proxy", {}), v)
    stem_stride = v.choice(stem.get("stride", 2), "stem.stride", STRIDES)
    total_stride = proxy.stem_stride
    for st in stages:
        total_stride *= st.stride
    if proxy.resolution < total_stride:
        v.fail(
            "proxy.resolution",
            proxy.resolution,
            f"at least the network's total stride {total_stride} at the proxy "
            f"(lower proxy.stem_stride or the stage strides)",
        )
    space = SearchSpace(
        name=name,
        about=about,
        source=source,
        stages=stages,
        stem_channels=v.integer(stem.get("channels"), "stem.channels", minimum=1),
        stem_stride=stem_stride,
        head_channels=v.integer(head.get("channels"), "head.channels", minimum=1),
        resolution=v.integer(data.get("resolution", 224), "resolution", minimum=8),
        dropout=v.fraction(data.get("dropout", 0.2), "dropout"),
        drop_path=v.fraction(data.get("drop_path", 0.2), "drop_path"),
        reference=_parse_reference(data.get("reference"), v, base_dir),
        objective=_parse_objective(data.get("objective", {}), v),
        proxy=proxy,
        measure=_parse_measure(data.get("measure", {}), v),
    )
    return space


def _choices(v: Validator, raw: Any, path: str, check) -> tuple:
    values = raw if isinstance(raw, list) else [raw]
    if not values:
        v.fail(path, raw, "a value or a non-empty list of choices")
    out = []
    for j, item in enumerate(values):
        out.append(check(item, f"{path}[{j}]" if isinstance(raw, list) else path))
    if len(set(out)) != len(out):
        v.fail(path, raw, "a list without repeated choices")
    return tuple(out)


def _parse_stage_space(raw: Any, where: str, v: Validator) -> StageSpace:
    v.mapping(raw, where)
    v.known_keys(raw, where, set(STAGE_FIELDS) | {"stride"})
    for required in ("op", "kernel", "expansion", "channels", "layers"):
        if required not in raw:
            v.fail(f"{where}.{required}", None, "given (a value or a list of choices)")
    return StageSpace(
        op=_choices(v, raw["op"], f"{where}.op", lambda x, p: v.choice(x, p, OPS)),
        kernel=_choices(v, raw["kernel"], f"{where}.kernel", lambda x, p: v.choice(x, p, KERNELS)),
        expansion=_choices(v, raw["expansion"], f"{where}.expansion", lambda x, p: v.number(x, p, minimum=1.0)),
        se=_choices(v, raw.get("se", 0.0), f"{where}.se", lambda x, p: v.fraction(x, p)),
        channels=_choices(v, raw["channels"], f"{where}.channels", lambda x, p: v.integer(x, p, minimum=1)),
        layers=_choices(v, raw["layers"], f"{where}.layers", lambda x, p: v.integer(x, p, minimum=1)),
        skip=_choices(v, raw.get("skip", True), f"{where}.skip", lambda x, p: v.boolean(x, p)),
        stride=v.choice(raw.get("stride", 1), f"{where}.stride", STRIDES),
    )


def _parse_proxy(raw: Any, v: Validator) -> Proxy:
    v.mapping(raw, "proxy")
    v.known_keys(
        raw, "proxy",
        {"resolution", "width", "depth", "stem_stride", "epochs", "batch", "lr", "max_train", "dropout", "drop_path"},
    )
    d = Proxy()
    max_train = raw.get("max_train", d.max_train)
    return Proxy(
        resolution=v.integer(raw.get("resolution", d.resolution), "proxy.resolution", minimum=8),
        width=v.number(raw.get("width", d.width), "proxy.width", minimum=0.0, exclusive=True),
        depth=v.number(raw.get("depth", d.depth), "proxy.depth", minimum=0.0, exclusive=True),
        stem_stride=v.choice(raw.get("stem_stride", d.stem_stride), "proxy.stem_stride", STRIDES),
        epochs=v.integer(raw.get("epochs", d.epochs), "proxy.epochs", minimum=1),
        batch=v.integer(raw.get("batch", d.batch), "proxy.batch", minimum=2),
        lr=v.number(raw.get("lr", d.lr), "proxy.lr", minimum=0.0, exclusive=True),
        max_train=None if max_train is None else v.integer(max_train, "proxy.max_train", minimum=10),
        dropout=v.fraction(raw.get("dropout", d.dropout), "proxy.dropout"),
        drop_path=v.fraction(raw.get("drop_path", d.drop_path), "proxy.drop_path"),
    )


def _parse_measure(raw: Any, v: Validator) -> Measure:
    v.mapping(raw, "measure")
    v.known_keys(raw, "measure", {"batch", "warmup", "steps"})
    d = Measure()
    batch = raw.get("batch")
    return Measure(
        batch=None if batch is None else v.integer(batch, "measure.batch", minimum=1),
        warmup=v.integer(raw.get("warmup", d.warmup), "measure.warmup", minimum=0),
        steps=v.integer(raw.get("steps", d.steps), "measure.steps", minimum=1),
    )


def _parse_objective(raw: Any, v: Validator) -> ObjectiveSpec:
    v.mapping(raw, "objective")
    v.known_keys(raw, "objective", {"kind", "step_time_weight", "params_weight", "macs_weight", "target_macs"})
    d = ObjectiveSpec()
    return ObjectiveSpec(
        kind=v.choice(raw.get("kind", d.kind), "objective.kind", OBJECTIVE_KINDS),
        step_time_weight=v.number(raw.get("step_time_weight", d.step_time_weight), "objective.step_time_weight"),
        params_weight=v.number(raw.get("params_weight", d.params_weight), "objective.params_weight"),
        macs_weight=v.number(raw.get("macs_weight", d.macs_weight), "objective.macs_weight"),
        target_macs=v.number(
            raw.get("target_macs", d.target_macs), "objective.target_macs", minimum=0.0, exclusive=True
        ),
    )


def _parse_reference(raw: Any, v: Validator, base_dir: Path) -> Arch:
    if isinstance(raw, dict):
        return Arch.from_dict(raw, source=f"{v.source}: reference")
    if not isinstance(raw, str):
        v.fail("reference", raw, f"a reference name ({', '.join(reference_names())}), an arch file or a mapping")
    if raw in reference_names():
        return load_arch(raw)
    path = (base_dir / raw).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"{v.source}: reference must be one of {reference_names()}, an architecture file or a mapping, "
            f"but got {describe(raw)}"
        )
    return Arch.load(path)
