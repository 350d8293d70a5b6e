"""Search spaces: YAML schema, validation with key paths, define-by-run sampling.

A space file declares, per stage, either a fixed value or a list of choices for op, kernel,
expansion, se, channels, layers and skip (stride is fixed). Sampling asks a trial-like object
(`suggest_categorical(name, choices)`, as Optuna trials have) for every field that has more
than one choice, so the Optuna and the Ray backends drive the same space.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import yaml

from nas.spec.arch import KERNELS, OPS, STRIDES, Arch, Stage, Validator, parse_frame, round_channels, round_layers
from nas.spec.errors import ConfigError
from nas.spec.resources import load_arch, reference_names, space_path
from nas.spec.timing import METHODS, Repeats, TimingShape

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
    """How S, the training-step cost, is measured: the candidate's full-size network at a timing
    shape (batch, resolution, input channels), by the per-part table or the whole network.

    Unset batch and resolution take device defaults (`timing_shape`): on a CPU a small shape
    (batch 8, at most 128 px) that still times the candidate's own full width and depth; on a
    GPU the space's training resolution at batch 32.
    """

    method: str = "table"
    batch: int | None = None
    resolution: int | None = None
    in_channels: int = 3
    warmup: int = 2
    steps: int = 5
    max_steps: int = 20
    target_spread: float = 0.05
    # a run re-times the reference; further than this from the table, the table starts afresh
    drift_tolerance: float = 0.05

    def repeats(self) -> Repeats:
        return Repeats(warmup=self.warmup, steps=self.steps, max_steps=self.max_steps,
                       target_spread=self.target_spread)

    def timing_shape(self, device_type: str, space_resolution: int, num_classes: int) -> TimingShape:
        if device_type == "cuda":
            batch, resolution = self.batch or 32, self.resolution or space_resolution
        else:
            batch, resolution = self.batch or 8, self.resolution or min(128, space_resolution)
        return TimingShape(batch=batch, resolution=resolution, in_channels=self.in_channels,
                           num_classes=num_classes)


@dataclass(frozen=True)
class ObjectiveSpec:
    kind: str = "reward"
    step_time_weight: float = -0.07
    params_weight: float = -0.05
    macs_weight: float = -0.07
    target_macs: float = 400e6

    @property
    def uses_step_time(self) -> bool:
        """Whether the score depends on S: the MnasNet MACs reward does not, so a search by it
        does not spend time timing steps."""
        return self.kind != "macs"


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

    def proxy_arch(self, arch: Arch) -> Arch:
        """The network that is proxy-trained for `arch`: shrunk by the proxy's width and depth,
        at the proxy resolution, with every choice of a stage still distinct.

        Plain rounding merges choices (width 0.25 turns channels 12, 16 and 20 into 8 each; depth
        0.34 turns layers 1, 2, 3 into 1, 1, 2). Here each stage's choices map in order to
        strictly increasing proxy values (the next multiple of 8 channels, the next layer count),
        so different architectures train as different networks (`nas.spec.proxy_check` verifies it);
        choices that are one network at full size stay one at the proxy. Values outside the
        stage's choices (another architecture) are shrunk by plain rounding.
        """
        p = self.proxy
        width, depth = arch.width * p.width, arch.depth * p.depth
        matched = len(arch.stages) == len(self.stages)

        def full_channels(c: float) -> int:
            return round_channels(c * arch.width)

        def full_layers(n: int) -> int:
            return round_layers(n, arch.depth)

        stages = []
        for i, stage in enumerate(arch.stages):
            channels = round_channels(stage.channels * width)
            layers = round_layers(stage.layers, depth)
            if matched:
                choices = self.stages[i]
                channel_map = _distinct(choices.channels, full_channels, lambda c: round_channels(c * width), 8)
                channels = channel_map.get(full_channels(stage.channels), channels)
                # with skip a choice, a stage of several layers keeps a repeated block: only
                # blocks after the first can have the residual that skip switches
                floor = 2 if len(choices.skip) > 1 else 1
                layer_map = _distinct(choices.layers, full_layers,
                                      lambda n, f=floor: max(round_layers(n, depth), min(full_layers(n), f)), 1)
                layers = layer_map.get(full_layers(stage.layers), layers)
            stages.append(replace(stage, channels=channels, layers=layers))
        return arch.with_(
            stages=tuple(stages),
            stem_channels=round_channels(arch.stem_channels * width),
            head_channels=round_channels(arch.head_channels * width),
            width=1.0,
            depth=1.0,
            resolution=p.resolution,
            stem_stride=p.stem_stride,
            dropout=p.dropout,
            drop_path=p.drop_path,
            name=f"{arch.name}@proxy" if arch.name else None,
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


def _distinct(choices: tuple[int, ...], full, shrink, step: int) -> dict[int, int]:
    """Full-size value -> shrunk value, for a stage's choices: larger full-size values stay larger
    (raised by `step` where shrinking would merge them); equal full-size values stay equal."""
    out: dict[int, int] = {}
    previous: int | None = None
    for value in sorted(choices):
        if full(value) in out:
            continue
        previous = shrink(value) if previous is None else max(shrink(value), previous + step)
        out[full(value)] = previous
    return out


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
    v.known_keys(raw, "measure", {"method", "batch", "resolution", "in_channels", "warmup", "steps", "max_steps",
                                  "target_spread", "drift_tolerance"})
    d = Measure()

    def optional(key: str, minimum: int) -> int | None:
        value = raw.get(key)
        return None if value is None else v.integer(value, f"measure.{key}", minimum=minimum)

    steps = v.integer(raw.get("steps", d.steps), "measure.steps", minimum=1)
    max_steps = v.integer(raw.get("max_steps", max(d.max_steps, steps)), "measure.max_steps", minimum=1)
    if max_steps < steps:
        v.fail("measure.max_steps", max_steps, f"at least measure.steps ({steps})")
    return Measure(
        method=v.choice(raw.get("method", d.method), "measure.method", METHODS),
        batch=optional("batch", 1),
        resolution=optional("resolution", 8),
        in_channels=v.integer(raw.get("in_channels", d.in_channels), "measure.in_channels", minimum=1),
        warmup=v.integer(raw.get("warmup", d.warmup), "measure.warmup", minimum=0),
        steps=steps,
        max_steps=max_steps,
        target_spread=v.number(raw.get("target_spread", d.target_spread), "measure.target_spread", minimum=0.0),
        drift_tolerance=v.number(raw.get("drift_tolerance", d.drift_tolerance), "measure.drift_tolerance",
                                 minimum=0.0),
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
    try:
        return load_arch(raw, base=base_dir)
    except ConfigError as exc:
        raise ConfigError(f"{v.source}: reference: {exc}") from None
