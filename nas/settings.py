"""Resolved settings of a search: the space plus everything the command line overrides."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import torch

from nas.errors import ConfigError
from nas.proxy_check import check_proxy_keeps_choices
from nas.space import Measure, Proxy, SearchSpace
from nas.step_cost import TimingShape
from nas.train import ProxyRecipe

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

    @property
    def proxy(self) -> Proxy:
        return self.space.proxy

    @property
    def measure(self) -> Measure:
        return self.space.measure

    def timing_shape(self, device: torch.device, num_classes: int) -> TimingShape:
        """The shape S is timed at on `device` (the space's `measure`, or the device's defaults)."""
        return self.measure.timing_shape(device.type, self.space.resolution, num_classes)

    def recipe(self) -> ProxyRecipe:
        p = self.proxy
        return ProxyRecipe(epochs=p.epochs, batch=p.batch, lr=p.lr, max_train=p.max_train, seed=self.seed)

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
        check_proxy_keeps_choices(self.space)

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "space"}
        out["space"] = self.space.name
        out["proxy"] = asdict(self.proxy)
        out["measure"] = asdict(self.measure)
        out["objective"] = asdict(self.space.objective)
        out["reference"] = self.space.reference.to_string()
        return out
