"""Full training: kill and resume equals an uninterrupted run, files, schedules, EMA, settings checks."""

from __future__ import annotations

import json
import signal
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from nas.spec.errors import ConfigError, RunError
from nas.spec.space import SearchSpace
from nas.training.full import CHECKPOINT, FINAL_MODEL, ExponentialAverage, TrainConfig, make_schedule, train
from nas.training.progressive import DEFAULT_SCHEDULE
from tests.conftest import start_nas

TINY = SearchSpace.load("tiny").reference  # three small stages, 16 px
QUICK = TrainConfig(dataset="mnist5k", epochs=2, batch=32, max_train=256, resolution=16, seed=0, device="cpu")


def _final_weights(folder: Path) -> dict[str, torch.Tensor]:
    return torch.load(folder / FINAL_MODEL, weights_only=True)["model"]


@pytest.mark.slow
def test_kill_then_resume_ends_like_an_uninterrupted_run(tmp_path: Path) -> None:
    arch_file = tmp_path / "tiny.yaml"
    TINY.save(arch_file)
    common = [str(arch_file), "--dataset", "mnist5k", "--epochs", "4", "--batch", "32", "--max-train", "320",
              "--resolution", "16", "--progressive", "--ema", "0.9", "--val-fraction", "0.05", "--device", "cpu",
              "--quiet"]
    # both start together (two cores); one is killed after its first checkpoint
    whole = start_nas("train", *common, "-o", str(tmp_path / "whole"), cwd=tmp_path, threads=1)
    victim = start_nas("train", *common, "-o", str(tmp_path / "cut"), cwd=tmp_path, threads=1)
    checkpoint = tmp_path / "cut" / CHECKPOINT
    while not checkpoint.exists() and victim.poll() is None:  # pytest-timeout bounds the wait
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.wait(30)
    assert victim.returncode == -signal.SIGKILL, victim.stdout.read()
    assert not (tmp_path / "cut" / FINAL_MODEL).exists()
    saved_epoch = torch.load(checkpoint, weights_only=True)["epoch"]
    assert 1 <= saved_epoch < 4

    resumed = start_nas("train", *common, "-o", str(tmp_path / "cut"), "--resume", cwd=tmp_path, threads=1)
    assert resumed.wait(120) == 0, resumed.stdout.read()
    assert whole.wait(120) == 0, whole.stdout.read()

    a, b = _final_weights(tmp_path / "whole"), _final_weights(tmp_path / "cut")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ma = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    mb = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    assert mb["resumed_from_epoch"] == saved_epoch and ma["resumed_from_epoch"] is None
    assert ma["accuracy"] == mb["accuracy"] and ma["history"] == mb["history"]
    assert [h["resolution"] for h in ma["history"]] == [7, 10, 13, 16]  # 128/300 of 16 px, rising


def test_training_writes_checkpoint_metrics_and_tensorboard(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = replace(QUICK, ema=0.9, optimizer="adamw", progressive=DEFAULT_SCHEDULE.for_target(16, stages=2))
    metrics = train(TINY, config, tmp_path / "run", log=lambda line: None)
    out = tmp_path / "run"
    for name in ("train.yaml", "arch.yaml", CHECKPOINT, FINAL_MODEL, "metrics.json"):
        assert (out / name).is_file(), name
    assert metrics == json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["steps"] == 16 and metrics["progressive"] is True
    assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["accuracy"] == metrics["final_val_acc_ema"]
    assert metrics["train_images_per_s"] > 0 and metrics["params"] > 0 and metrics["macs"] > 0
    assert [h["resolution"] for h in metrics["history"]] == [7, 16]
    state = torch.load(out / CHECKPOINT, weights_only=True)  # loads without unpickling code
    assert state["epoch"] == 2 and {"model", "optimizer", "lr_schedule", "ema", "rng_torch"} <= set(state)
    events = EventAccumulator(str(out))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/train_loss", "train/lr", "train/resolution", "val/accuracy", "val/accuracy_ema"} <= tags


def test_an_existing_run_needs_resume_with_the_same_settings(tmp_path: Path) -> None:
    out = tmp_path / "run"
    config = replace(QUICK, epochs=1, max_train=64)
    train(TINY, config, out, log=lambda line: None)
    with pytest.raises(RunError, match="pass --resume"):
        train(TINY, config, out, log=lambda line: None)
    with pytest.raises(ConfigError, match="--epochs must be 1 as when .* was started, but got 3"):
        train(TINY, replace(config, epochs=3), out, resume=True, log=lambda line: None)
    with pytest.raises(ConfigError, match="the architecture must be the one"):
        train(TINY.with_(dropout=0.3), config, out, resume=True, log=lambda line: None)
    with pytest.raises(RunError, match="no training run"):
        train(TINY, config, tmp_path / "missing", resume=True, log=lambda line: None)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"optimizer": "lamb"}, "--optimizer must be one of"),
        ({"schedule": "linear"}, "--schedule must be one of"),
        ({"ema": 1.0}, "--ema must be a decay in"),
        ({"randaugment": 31}, "--randaugment must be a magnitude"),
        ({"warmup_epochs": 20}, "--warmup-epochs must be in"),
        ({"label_smoothing": -0.1}, "--label-smoothing must be in"),
    ],
)
def test_bad_settings_are_config_errors(change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        replace(QUICK, **change).resolved(TINY)


def test_defaults_resolve_from_arch_and_optimizer() -> None:
    config = TrainConfig(optimizer="rmsprop", epochs=30).resolved(TINY)
    assert (config.lr, config.weight_decay, config.warmup_epochs) == (0.016, 1e-5, 3.0)
    assert (config.resolution, config.eval_resolution, config.dropout) == (16, 16, TINY.dropout)


def test_step_schedule_warms_up_then_decays() -> None:
    model = torch.nn.Linear(2, 2)
    config = TrainConfig(optimizer="sgd", lr=1.0, schedule="step", epochs=10, warmup_epochs=1, step_epochs=2,
                         step_gamma=0.5).resolved(TINY)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    schedule = make_schedule(optimizer, config, steps_per_epoch=10)
    lrs = []
    for _ in range(100):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)  # 10 warm-up steps
    assert lrs[10] == lrs[29] == pytest.approx(1.0) and lrs[30] == pytest.approx(0.5)
    assert lrs[99] == pytest.approx(0.5**4)


def test_ema_warms_up_then_averages() -> None:
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    ema = ExponentialAverage(model, decay=0.99)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model, step=0)  # early: keep only 1/10 of the old average
    assert ema.module.weight.item() == pytest.approx(0.9)
    ema.update(model, step=10_000)  # late: the full decay
    assert ema.module.weight.item() == pytest.approx(0.9 + 0.1 * 0.01)
