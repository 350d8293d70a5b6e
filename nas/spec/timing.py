"""What a step timing is, as the spec declares it: the input it is timed on, how many steps it
takes, and by which method. No torch here: the spec (`nas.spec.space`) and everything that only reads
runs use these without loading torch; `nas.measure.costs` and `nas.measure.step_cost` do the timing."""

from __future__ import annotations

from dataclasses import dataclass

from nas.spec.errors import ConfigError

# table: sum the per-part times (nas.measure.step_cost); network: time the whole candidate
METHODS = ("table", "network")


@dataclass(frozen=True)
class TimingShape:
    """The input a step is timed on: batch, image size, input channels and classes."""

    batch: int
    resolution: int
    in_channels: int = 3
    num_classes: int = 10

    def describe(self) -> str:
        return (f"batch {self.batch}, {self.resolution}x{self.resolution} px, {self.in_channels} channels, "
                f"{self.num_classes} classes")

    def token(self) -> str:
        return f"b{self.batch}_r{self.resolution}_in{self.in_channels}_nc{self.num_classes}"


@dataclass(frozen=True)
class Repeats:
    """How many steps a timing takes: `warmup` untimed, then at least `steps` timed, repeating
    (as torch.utils.benchmark's adaptive_autorange does) until the interquartile range is within
    `target_spread` of the median or `max_steps` steps were timed."""

    warmup: int = 2
    steps: int = 5
    max_steps: int = 20
    target_spread: float = 0.05

    def check(self) -> None:
        if self.steps < 1 or self.warmup < 0 or self.max_steps < self.steps:
            raise ConfigError(
                f"steps must be >= 1, warmup >= 0 and max_steps >= steps, but got steps={self.steps}, "
                f"warmup={self.warmup}, max_steps={self.max_steps}"
            )
