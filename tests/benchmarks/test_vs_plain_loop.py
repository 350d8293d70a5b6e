"""The plain loop of benchmarks/vs_plain_loop.py trains what nas trains: same accuracy, same S."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from nas.measure.costs import StepTimeCache
from nas.search.trial import evaluate
from nas.spec.settings import SearchSettings
from nas.spec.space import SearchSpace
from nas.training.data import load_dataset
from nas.training.proxy import warmup_cosine

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "vs_plain_loop.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("vs_plain_loop", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_lr_factor_is_nas_schedule(bench) -> None:
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = warmup_cosine(optimizer, total_steps=23, warmup_fraction=0.1)
    for step in range(23):
        assert optimizer.param_groups[0]["lr"] == bench.lr_factor(step, 23, 0.1)
        optimizer.step()
        schedule.step()


@pytest.mark.slow
def test_plain_loop_matches_nas_trial(bench, tmp_path: Path) -> None:
    # dropout and drop-path on: the plain loop must also draw the same random numbers
    settings = SearchSettings(space=SearchSpace.load("tiny"), dataset="synthetic", device="cpu", pruner="none")
    settings = settings.with_overrides(max_train=128, epochs=2, dropout=0.1, drop_path=0.1)
    data = load_dataset(settings.dataset, resolution=settings.proxy.resolution, val_fraction=settings.val_fraction,
                        seed=settings.seed)
    arch = settings.space.reference
    cache = StepTimeCache(tmp_path / "step_times.json")
    # fills the table for arch and the reference
    result = evaluate(arch, settings, data, torch.device("cpu"), cache=cache)
    accuracies, steps = bench.plain_run([arch.to_string()], settings, data, cache.path)
    assert accuracies == [result.accuracy]
    assert steps == [result.step_ms]
