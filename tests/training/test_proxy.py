"""Proxy trainer: resuming from a saved state ends where an uninterrupted run ends; pruning; divergence."""

from __future__ import annotations

import io
import math

import pytest
import torch

from nas.model import build
from nas.spec.errors import TrialError
from nas.spec.space import Proxy, SearchSpace
from nas.training.data import load_dataset
from nas.training.proxy import ProxyRecipe, proxy_train

CPU = torch.device("cpu")
RECIPE = ProxyRecipe(epochs=3, batch=64, lr=0.01, max_train=384, seed=0)


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits", resolution=16, seed=0)


def _model(data) -> torch.nn.Module:
    space = SearchSpace.load("tiny")
    torch.manual_seed(0)
    # the network pools globally, so the reference runs at the data's 16 px
    return build(space.reference, num_classes=data.num_classes, in_channels=data.in_channels)


def _saved(state: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def test_resume_from_a_saved_state_ends_where_an_uninterrupted_run_ends(data) -> None:
    whole = _model(data)
    saved: dict[int, bytes] = {}
    straight = proxy_train(whole, data, RECIPE, CPU, on_state=lambda s: saved.setdefault(s["epoch"], _saved(s)))
    assert sorted(saved) == [1, 2, 3]

    # a fresh process would rebuild the model from scratch and read the checkpoint back safely
    state = torch.load(io.BytesIO(saved[1]), weights_only=True)
    seen: list[int] = []
    resumed_model = _model(data)
    resumed = proxy_train(resumed_model, data, RECIPE, CPU, on_epoch=lambda e, a: seen.append(e), resume=state)

    assert seen == [2, 3], "epochs before the checkpoint are not trained again"
    assert resumed.accuracy == straight.accuracy
    assert [h["val_acc"] for h in resumed.history] == [h["val_acc"] for h in straight.history]
    assert resumed.steps == straight.steps and resumed.images == straight.images
    for (name, a), b in zip(whole.state_dict().items(), resumed_model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_on_epoch_false_stops_early(data) -> None:
    outcome = proxy_train(_model(data), data, RECIPE, CPU, on_epoch=lambda e, a: e < 1)
    assert outcome.stopped_early and len(outcome.history) == 1


def test_divergence_raises_trial_error(data) -> None:
    broken = ProxyRecipe(epochs=1, batch=64, lr=math.inf, max_train=384, seed=0)
    with pytest.raises(TrialError, match="diverged"):
        proxy_train(_model(data), data, broken, CPU)


@pytest.mark.slow  # about 15 s: CPU fp16 kernels are slow
def test_fp16_resume_carries_the_loss_scale(monkeypatch) -> None:
    """With fp16 (a GPU without bf16), the GradScaler's state is part of the saved state: the
    resumed run scales, skips and steps as the uninterrupted one. CPU autocast has fp16 too."""
    from nas.measure.precision import FP16

    monkeypatch.setattr("nas.measure.precision.precision", lambda device: FP16)
    small = load_dataset("digits", resolution=8, seed=0, limit=160)  # fp16 kernels are slow on a CPU
    recipe = ProxyRecipe(epochs=2, batch=32, lr=0.01, max_train=64, seed=0)
    saved: dict[int, bytes] = {}
    straight = proxy_train(_model(small), small, recipe, CPU,
                           on_state=lambda s: saved.setdefault(s["epoch"], _saved(s)))
    state = torch.load(io.BytesIO(saved[1]), weights_only=True)
    assert state["scaler"]["scale"] > 0
    resumed = proxy_train(_model(small), small, recipe, CPU, resume=state)
    assert [h["val_acc"] for h in resumed.history] == [h["val_acc"] for h in straight.history]


def test_a_proxy_training_uses_cudnn_heuristics_and_synchronises_once(monkeypatch) -> None:
    """Proxy steps run without cuDNN autotuning (restored afterwards), and the whole training
    costs the device gate one synchronisation, when it lets go at the end."""
    import nas.measure.device_gate as device_gate
    import nas.training.proxy as train
    from nas.model import build
    from nas.spec.space import SearchSpace
    from nas.training.data import load_dataset

    benchmark_in_steps: list[bool] = []
    real_step = train.train_step

    def step(*args, **kwargs):
        benchmark_in_steps.append(torch.backends.cudnn.benchmark)
        return real_step(*args, **kwargs)

    syncs: list[str] = []
    monkeypatch.setattr(train, "train_step", step)
    monkeypatch.setattr(device_gate, "synchronize", lambda device: syncs.append(str(device)))
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    data = load_dataset("digits", resolution=16, val_fraction=0.2, seed=0)
    torch.manual_seed(0)
    model = build(SearchSpace.load("tiny").reference, num_classes=data.num_classes, in_channels=data.in_channels)
    outcome = train.proxy_train(model, data, train.ProxyRecipe(epochs=2, batch=64, max_train=640),
                                torch.device("cpu"))
    assert outcome.steps == 20 and benchmark_in_steps == [False] * 20
    assert torch.backends.cudnn.benchmark is True
    assert syncs == ["cpu"]


def test_a_timed_step_autotunes_as_a_long_run_would(monkeypatch) -> None:
    from nas.measure.costs import Repeats, time_steps

    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    seen: list[bool] = []
    time_steps(lambda: seen.append(torch.backends.cudnn.benchmark), torch.device("cpu"),
               Repeats(warmup=1, steps=2, max_steps=2, target_spread=0.0))
    assert seen == [True, True, True] and torch.backends.cudnn.benchmark is False


def test_the_recipe_has_the_spaces_proxy_defaults() -> None:
    # one default per proxy setting: a recipe made without a space trains as the default space's
    # proxy does (a 0.003 learning rate here once drifted from the space's 0.01)
    default = ProxyRecipe()
    assert (default.epochs, default.batch, default.lr, default.max_train) == (
        Proxy.epochs, Proxy.batch, Proxy.lr, Proxy.max_train)
    proxy = Proxy(epochs=3, batch=32, lr=0.05, max_train=100)
    assert ProxyRecipe.from_proxy(proxy, seed=4) == ProxyRecipe(epochs=3, batch=32, lr=0.05, max_train=100, seed=4)
