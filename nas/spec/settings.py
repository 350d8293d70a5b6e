"""Resolved settings of a search: the space plus everything the command line overrides."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from nas.spec.errors import ConfigError, RunError
from nas.spec.proxy_check import check_proxy_keeps_choices
from nas.spec.space import Measure, Proxy, SearchSpace
from nas.spec.timing import TimingShape

if TYPE_CHECKING:
    import torch

    from nas.records.runs import RunDir

SAMPLERS = ("tpe", "random", "nsga2")
PRUNERS = ("median", "none")


@dataclass(frozen=True)
class SearchSettings:
    """Everything one trial needs; picklable so workers (processes, Ray actors) get a copy."""

    space: SearchSpace
    dataset: str = "mnist5k"
    device: str = "auto"
    seed: int = 0
    val_fraction: float = 0.2
    sampler: str = "tpe"
    pruner: str = "median"
    # held out before train and val are split, the same for every seed; no trial reads it
    # (nas reproduce tests its retrained networks on it)
    test_fraction: float = 0.0

    @property
    def proxy(self) -> Proxy:
        return self.space.proxy

    @property
    def measure(self) -> Measure:
        return self.space.measure

    def timing_shape(self, device: torch.device, num_classes: int) -> TimingShape:
        """The shape S is timed at on `device` (the space's `measure`, or the device's defaults)."""
        return self.measure.timing_shape(device.type, self.space.resolution, num_classes)

    def with_overrides(self, **proxy_overrides: Any) -> SearchSettings:
        """Apply CLI overrides of the proxy (epochs, batch, resolution, ...); None means keep."""
        changes = {k: v for k, v in proxy_overrides.items() if v is not None}
        if not changes:
            return self
        return replace(self, space=replace(self.space, proxy=replace(self.space.proxy, **changes)))

    def with_objective(self, kind: str | None) -> SearchSettings:
        if kind is None:
            return self
        return replace(self, space=replace(self.space, objective=replace(self.space.objective, kind=kind)))

    def check(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"--sampler must be one of {list(SAMPLERS)}, but got {self.sampler!r}")
        if self.pruner not in PRUNERS:
            raise ConfigError(f"--pruner must be one of {list(PRUNERS)}, but got {self.pruner!r}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"--val-fraction must be in (0, 1), but got {self.val_fraction}")
        if not 0.0 <= self.test_fraction < 1.0 - self.val_fraction:
            raise ConfigError(f"--test-fraction must be in [0, {1.0 - self.val_fraction:g}) beside --val-fraction "
                              f"{self.val_fraction:g}, but got {self.test_fraction}")
        check_proxy_keeps_choices(self.space)

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "space"}
        if not self.test_fraction:  # runs without a test split keep the config they always had
            del out["test_fraction"]
        out["space"] = self.space.name
        out["proxy"] = asdict(self.proxy)
        # the drift tolerance only picks the table generation when the run starts (space.yaml keeps
        # it): left out, so runs made before it existed resume with the same fingerprint
        out["measure"] = {k: v for k, v in asdict(self.measure).items() if k != "drift_tolerance"}
        out["objective"] = asdict(self.space.objective)
        out["reference"] = self.space.reference.to_string()
        return out


def default_sampler(objective_kind: str) -> str:
    """NSGA-II for a Pareto objective, TPE otherwise."""
    return "nsga2" if objective_kind == "pareto" else "tpe"


def saved_space(run: RunDir) -> tuple[str, SearchSpace]:
    """The space a run was made with: its space.yaml, as text and validated."""
    path = run.path / "space.yaml"
    try:
        text = path.read_text()
    except OSError as exc:
        raise RunError(f"cannot read {path}: {exc.strerror or exc}") from None
    return text, SearchSpace.from_yaml(text, source=str(path), base_dir=run.path)


def settings_from_run(run: RunDir, *, space: SearchSpace | None = None, dataset: str | None = None,
                      device: str | None = None, seed: int | None = None, val_fraction: float | None = None,
                      sampler: str | None = None, pruner: str | None = None,
                      objective: str | None = None, test_fraction: float | None = None) -> SearchSettings:
    """The settings `run` was made with (config.yaml, space.yaml); each given value replaces
    the saved one. A given `space` replaces the saved space, but the run's proxy stays: it is
    what the run's trials were trained with. Not checked: callers apply their overrides first."""
    config = run.config()
    if space is None:
        space = saved_space(run)[1]
    saved_proxy = config.get("proxy")
    try:
        proxy = Proxy(**saved_proxy) if isinstance(saved_proxy, dict) else space.proxy
    except TypeError as exc:  # a key this version of nas does not know
        raise RunError(f"cannot read {run.config_path}: proxy: {exc}") from None
    kind = objective or (config.get("objective") or {}).get("kind") or space.objective.kind
    settings = SearchSettings(
        space=replace(space, proxy=proxy),
        dataset=dataset if dataset is not None else str(config.get("dataset", "mnist5k")),
        device=device if device is not None else str(config.get("device", "auto")),
        seed=seed if seed is not None else int(config.get("seed", 0)),
        val_fraction=val_fraction if val_fraction is not None else float(config.get("val_fraction", 0.2)),
        sampler=sampler or str(config.get("sampler") or default_sampler(kind)),
        pruner=pruner or str(config.get("pruner", "median")),
        test_fraction=test_fraction if test_fraction is not None else float(config.get("test_fraction", 0.0)),
    )
    return settings.with_objective(kind)
