"""Progressive learning: schedule values at stage boundaries, batched augmentation, recipes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nas.spec.arch import Validator
from nas.spec.errors import ConfigError
from nas.training.data import resize
from nas.training.progressive import (
    DEFAULT_SCHEDULE,
    BatchAugment,
    ProgressiveSchedule,
    SoftTargetCrossEntropy,
    StageValues,
    TrainingRecipe,
    find_recipe,
)


def test_v2_s_schedule_at_stage_boundaries() -> None:
    s = DEFAULT_SCHEDULE  # the paper's V2-S row: 128 -> 300 px, RandAugment 5 -> 15, dropout 0.1 -> 0.3
    assert s.at_stage(0) == StageValues(resolution=128, randaugment=5, mixup=0, dropout=0.1)
    assert s.at_stage(3) == StageValues(resolution=300, randaugment=15, mixup=0, dropout=0.3)
    # linear in between: a third of the way per stage
    assert s.at_stage(1) == StageValues(resolution=185, randaugment=8.3333, mixup=0, dropout=0.1667)
    assert s.at_stage(2) == StageValues(resolution=243, randaugment=11.6667, mixup=0, dropout=0.2333)


def test_steps_map_to_equal_stages() -> None:
    s = DEFAULT_SCHEDULE
    total = 100
    stages = [s.stage_of(step, total) for step in range(total)]
    assert stages[:25] == [0] * 25 and stages[25:50] == [1] * 25 and stages[75:] == [3] * 25
    # first and last step of each boundary
    assert s.at(24, total).resolution == 128 and s.at(25, total).resolution == 185
    assert s.at(74, total).resolution == 243 and s.at(75, total).resolution == 300
    assert s.at(99, total) == s.at_stage(3)


def test_values_rise_together_and_mixup_follows_its_range() -> None:
    m = ProgressiveSchedule(resolution=(128, 380), randaugment=(5, 20), mixup=(0.0, 0.2), dropout=(0.1, 0.4))
    values = [m.at_stage(i) for i in range(4)]
    for key in ("resolution", "randaugment", "mixup", "dropout"):
        series = [getattr(v, key) for v in values]
        assert series == sorted(series) and series[0] < series[-1]
    assert values[-1] == StageValues(380, 20, 0.2, 0.4)


def test_for_target_scales_sizes_to_the_training_size() -> None:
    small = DEFAULT_SCHEDULE.for_target(28, stages=3)
    assert small.resolution == (12, 28) and small.stages == 3  # 128/300 of the target at the start
    assert small.at_stage(2).resolution == 28
    assert ProgressiveSchedule(resolution=(5, 5), stages=1).at_stage(0).resolution == 5


def test_schedule_parsing_names_the_key() -> None:
    v = Validator("m.recipe.yaml")
    with pytest.raises(ConfigError, match=r"progressive.dropout must be a \[start, end\] pair"):
        ProgressiveSchedule.from_dict({"resolution": [128, 300], "dropout": 0.3}, v)
    with pytest.raises(ConfigError, match="RandAugment magnitude"):
        ProgressiveSchedule.from_dict({"resolution": [128, 300], "randaugment": [5, 40]}, v)


def test_batch_augment_resizes_randaugments_and_mixes() -> None:
    torch.manual_seed(0)
    images = torch.randn(16, 1, 28, 28)
    labels = torch.arange(16) % 10
    augment = BatchAugment.for_images(images)
    out, mixed = augment(images, labels, StageValues(resolution=12, randaugment=10, mixup=0.2, dropout=0.1))
    assert out.shape == (16, 1, 12, 12)
    assert mixed.shape == (16, 3)  # label, partner's label, lambda
    assert torch.equal(mixed[:, 0].long(), labels) and bool(((mixed[:, 2] >= 0) & (mixed[:, 2] <= 1)).all())
    # augmented values stay inside the training images' range
    assert out.min() >= images.min() - 1e-5 and out.max() <= images.max() + 1e-5
    plain, same = augment(images, labels, StageValues(resolution=28, randaugment=0, mixup=0, dropout=0))
    assert plain is images and same is labels


def test_randaugment_handles_rgb_and_is_seeded() -> None:
    images = torch.rand(8, 3, 16, 16)
    augment = BatchAugment.for_images(images)
    torch.manual_seed(3)
    first = augment.randaugment(images, 9)
    torch.manual_seed(3)
    assert torch.equal(first, augment.randaugment(images, 9))


def test_resize_is_bilinear_and_identity_at_size() -> None:
    x = torch.rand(2, 3, 32, 32)
    assert resize(x, 32) is x
    assert resize(x, 16).shape == (2, 3, 16, 16)


def test_soft_target_loss_matches_cross_entropy() -> None:
    logits = torch.randn(6, 10)
    labels = torch.randint(0, 10, (6,))
    loss = SoftTargetCrossEntropy(0.1)
    assert torch.allclose(loss(logits, labels), F.cross_entropy(logits, labels, label_smoothing=0.1))
    unmixed = torch.stack([labels.float(), labels.roll(1).float(), torch.zeros(6)], dim=1)
    assert torch.allclose(loss(logits, unmixed), loss(logits, labels))
    half = unmixed.clone()
    half[:, 2] = 0.5
    expected = 0.5 * (loss(logits, labels) + loss(logits, labels.roll(1)))
    assert torch.allclose(loss(logits, half), expected)


def test_find_recipe_beside_an_arch_file(tmp_path) -> None:
    arch = tmp_path / "m.yaml"
    arch.write_text("placeholder")
    assert find_recipe(str(arch)) is None
    (tmp_path / "m.recipe.yaml").write_text("train_resolution: 24\neval_resolution: 32\ndropout: 0.3\n")
    assert find_recipe(str(arch)) == TrainingRecipe(train_resolution=24, eval_resolution=32, dropout=0.3)
    (tmp_path / "m.recipe.yaml").write_text("train_resolution: 24\neval_resolution: 32\nbatch: 3\n")
    with pytest.raises(ConfigError, match="m.recipe.yaml: batch must be a known key"):
        find_recipe(str(arch))
