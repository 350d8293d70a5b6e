"""Progressive learning (EfficientNetV2): image size and regularisation rise together.

Training is split into `stages` equal parts (by optimizer steps). Stage i of n uses the values
start + (end - start)·i/(n - 1) for image size, RandAugment magnitude, mixup alpha and dropout,
so the first stage trains small images with weak regularisation and the last one the target size
with the full recipe (V2-S: 128 -> 300 px, RandAugment 5 -> 15, dropout 0.1 -> 0.3).

The data are loaded once at the largest size the run needs (`nas.training.data.load_dataset` resizes at
load time); every batch is resized on the fly (`nas.training.data.resize`), then augmented on the
device with kornia (RandAugment, MixUp), all batched.

A `TrainingRecipe` is what a scaled family member carries: fixed train/eval sizes and
regularisation, plus its progressive schedule. It lives beside the architecture YAML as
`<member>.recipe.yaml` (architecture files hold architectures only).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from torch import nn

from nas.spec.arch import Validator
from nas.spec.errors import ConfigError
from nas.spec.paths import is_file, user_path
from nas.training.data import resize

Pair = tuple[float, float]


@dataclass(frozen=True)
class StageValues:
    """What one stage of progressive training uses."""

    resolution: int
    randaugment: float
    mixup: float
    dropout: float


@dataclass(frozen=True)
class ProgressiveSchedule:
    """(start, end) of each quantity; `stages` equal parts of training, values linear in between."""

    resolution: tuple[int, int]
    randaugment: Pair = (5.0, 15.0)
    mixup: Pair = (0.0, 0.0)
    dropout: Pair = (0.1, 0.3)
    stages: int = 4

    def __post_init__(self) -> None:
        if self.stages < 1:
            raise ConfigError(f"progressive stages must be >= 1, but got {self.stages}")

    def stage_of(self, step: int, total_steps: int) -> int:
        """The stage that optimizer step `step` (0-based) of `total_steps` belongs to."""
        return min(self.stages - 1, step * self.stages // max(1, total_steps))

    def at_stage(self, stage: int) -> StageValues:
        t = stage / (self.stages - 1) if self.stages > 1 else 1.0

        def lerp(pair: tuple[float, float]) -> float:
            return pair[0] + (pair[1] - pair[0]) * t

        return StageValues(
            resolution=int(round(lerp(self.resolution))),
            randaugment=round(lerp(self.randaugment), 4),
            mixup=round(lerp(self.mixup), 4),
            dropout=round(lerp(self.dropout), 4),
        )

    def at(self, step: int, total_steps: int) -> StageValues:
        return self.at_stage(self.stage_of(step, total_steps))

    def for_target(self, resolution: int, stages: int | None = None) -> ProgressiveSchedule:
        """The same schedule with its image sizes scaled so that it ends at `resolution`."""
        start, end = self.resolution
        first = max(1, int(round(start * resolution / end)))
        return replace(self, resolution=(min(first, resolution), resolution), stages=stages or self.stages)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Any, v: Validator, where: str = "progressive") -> ProgressiveSchedule:
        v.mapping(data, where)
        v.known_keys(data, where, {"resolution", "randaugment", "mixup", "dropout", "stages"})
        d = cls(resolution=(1, 1))

        def pair(key: str, check) -> tuple:
            raw = data.get(key, list(getattr(d, key)))
            if not isinstance(raw, (list, tuple)) or len(raw) != 2:
                v.fail(f"{where}.{key}", raw, "a [start, end] pair")
            return tuple(check(x, f"{where}.{key}") for x in raw)

        if "resolution" not in data:
            v.fail(f"{where}.resolution", None, "a [start, end] pair of pixel sizes")
        return cls(
            resolution=pair("resolution", lambda x, p: v.integer(x, p, minimum=1)),
            randaugment=pair("randaugment", lambda x, p: _magnitude(v, x, p)),
            mixup=pair("mixup", lambda x, p: v.number(x, p, minimum=0.0)),
            dropout=pair("dropout", lambda x, p: v.fraction(x, p)),
            stages=v.integer(data.get("stages", d.stages), f"{where}.stages", minimum=1),
        )


# The V2-S row of the paper's Table 6: the default schedule of any architecture, scaled to its size.
DEFAULT_SCHEDULE = ProgressiveSchedule(resolution=(128, 300), randaugment=(5, 15), mixup=(0.0, 0.0),
                                       dropout=(0.1, 0.3))


@dataclass(frozen=True)
class TrainingRecipe:
    """Per-member training settings written by `nas scale --method v2` and read by `nas train`."""

    train_resolution: int
    eval_resolution: int
    dropout: float
    randaugment: float = 0.0
    mixup: float = 0.0
    progressive: ProgressiveSchedule | None = None
    size: str | None = None

    def rescaled(self, ratio: float, max_resolution: int) -> TrainingRecipe:
        """Pixel sizes times `ratio` (a source smaller than V2-S's 384 px), eval size capped."""
        eval_res = min(max_resolution, max(1, int(round(self.eval_resolution * ratio))))
        train_res = min(eval_res, max(1, int(round(self.train_resolution * ratio))))
        schedule = self.progressive
        if schedule is not None:
            end = min(train_res, max(1, int(round(schedule.resolution[1] * ratio))))
            schedule = schedule.for_target(end)
        return replace(self, train_resolution=train_res, eval_resolution=eval_res, progressive=schedule)

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "progressive" and v is not None}
        if self.progressive is not None:
            out["progressive"] = self.progressive.to_dict()
        return out

    def save(self, path: Path) -> None:
        from nas.records.runs import atomic_write

        header = "# training recipe of the architecture beside this file (read by `nas train`)\n"
        atomic_write(path, header + yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None))

    @classmethod
    def from_dict(cls, data: Any, source: str) -> TrainingRecipe:
        v = Validator(source)
        v.mapping(data, "")
        v.known_keys(data, "", {"size", "train_resolution", "eval_resolution", "dropout", "randaugment",
                                "mixup", "progressive"})
        size = data.get("size")
        if size is not None and not isinstance(size, str):
            v.fail("size", size, "a string")
        progressive = data.get("progressive")
        return cls(
            size=size,
            train_resolution=v.integer(data.get("train_resolution"), "train_resolution", minimum=1),
            eval_resolution=v.integer(data.get("eval_resolution"), "eval_resolution", minimum=1),
            dropout=v.fraction(data.get("dropout", 0.0), "dropout"),
            randaugment=_magnitude(v, data.get("randaugment", 0.0), "randaugment"),
            mixup=v.number(data.get("mixup", 0.0), "mixup", minimum=0.0),
            progressive=None if progressive is None else ProgressiveSchedule.from_dict(progressive, v),
        )

    @classmethod
    def load(cls, path: Path) -> TrainingRecipe:
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read training recipe ({exc})") from None
        return cls.from_dict(data, source=str(path))


def recipe_path(arch_path: str | Path) -> Path:
    """`family/m.yaml` -> `family/m.recipe.yaml`."""
    path = Path(arch_path)
    return path.with_name(f"{path.stem}.recipe.yaml")


def find_recipe(arch_spec: str) -> TrainingRecipe | None:
    """The recipe beside an architecture file, if there is one."""
    if not is_file(arch_spec):  # a name or an architecture string: no file beside it
        return None
    path = recipe_path(user_path(arch_spec))  # type: ignore[arg-type]  # is_file: a path
    return TrainingRecipe.load(path) if is_file(path) else None


def _magnitude(v: Validator, value: Any, path: str) -> float:
    number = v.number(value, path, minimum=0.0)
    if number >= 30:
        v.fail(path, value, "a RandAugment magnitude in [0, 30)")
    return number


# -- batched augmentation on the device -----------------------------------------------------------


class BatchAugment:
    """Resize, RandAugment and mixup of whole batches on their device (kornia).

    The loaded images are normalised per channel; RandAugment's operations (solarize, posterize,
    ...) expect [0, 1], so batches are mapped to [0, 1] with the training set's per-channel range
    and back. Colour ops are left out for images that are not RGB.
    """

    def __init__(self, channel_low: torch.Tensor, channel_high: torch.Tensor, ops_per_image: int = 2) -> None:
        self.low = channel_low.view(1, -1, 1, 1)
        self.span = (channel_high.view(1, -1, 1, 1) - self.low).clamp_min(1e-6)
        self.ops = ops_per_image
        self._randaugment: dict[int, nn.Module] = {}

    @classmethod
    def for_images(cls, images: torch.Tensor) -> BatchAugment:
        return cls(images.amin(dim=(0, 2, 3)), images.amax(dim=(0, 2, 3)))

    def _policy(self, magnitude: int, channels: int) -> nn.Module:
        if magnitude not in self._randaugment:
            from kornia.augmentation.auto import RandAugment
            from kornia.augmentation.auto.rand_augment.rand_augment import default_policy

            policy = default_policy if channels == 3 else [p for p in default_policy if p[0][0] != "color"]
            self._randaugment[magnitude] = RandAugment(n=self.ops, m=magnitude, policy=policy)
        return self._randaugment[magnitude]

    def randaugment(self, images: torch.Tensor, magnitude: float) -> torch.Tensor:
        m = int(round(magnitude))
        if m < 1:
            return images
        low, span = self.low.to(images.device), self.span.to(images.device)
        unit = ((images - low) / span).clamp_(0.0, 1.0)
        return self._policy(min(m, 29), images.shape[1])(unit) * span + low

    @staticmethod
    def mixup(images: torch.Tensor, labels: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Mix each image with a random partner, weight λ ~ Beta(α, α) as in the mixup paper.

        Returns labels of shape (N, 3): label, partner's label, λ (kornia's convention).
        """
        if alpha <= 0:
            return images, labels
        import kornia.augmentation as K

        n = len(images)
        lam = torch.distributions.Beta(alpha, alpha).sample((n,)).to(images.device, images.dtype)
        params = {"batch_prob": torch.ones(n, dtype=torch.bool, device=images.device),
                  "mixup_pairs": torch.randperm(n).to(images.device), "mixup_lambdas": lam}
        return K.RandomMixUpV2(data_keys=["input", "class"])(images, labels, params=params)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor,
                 values: StageValues) -> tuple[torch.Tensor, torch.Tensor]:
        images = self.randaugment(resize(images, values.resolution), values.randaugment)
        return self.mixup(images, labels, values.mixup)


class SoftTargetCrossEntropy(nn.Module):
    """Cross-entropy with label smoothing that also takes mixup's (N, 3) labels."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if labels.dim() == 1:
            return F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        first = F.cross_entropy(logits, labels[:, 0].long(), label_smoothing=self.label_smoothing, reduction="none")
        second = F.cross_entropy(logits, labels[:, 1].long(), label_smoothing=self.label_smoothing, reduction="none")
        lam = labels[:, 2].to(first.dtype)
        return ((1 - lam) * first + lam * second).mean()
