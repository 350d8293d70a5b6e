"""Export: a trained tiny model loads back in a fresh Python that cannot import nas, same outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from nas.model import build
from nas.spec.errors import ConfigError
from nas.spec.space import SearchSpace
from nas.training.export import PROGRAM, export, load_weights
from nas.training.full import CHECKPOINT, FINAL_MODEL, TrainConfig, train

pytestmark = pytest.mark.slow  # a trained model and torch.export (tens of seconds)

TINY = SearchSpace.load("tiny").reference

# Runs with -I (no PYTHONPATH, no user site, no script dir) and a finder that refuses `nas`, so
# the program must load from torch alone.
LOAD_WITHOUT_NAS = """
import importlib.abc, sys
class NoNas(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "nas" or name.startswith("nas."):
            raise ImportError("nas must not be needed to load an export")
sys.meta_path.insert(0, NoNas())
import torch
program, inputs, outputs = sys.argv[1:4]
model = torch.export.load(program).module()
with torch.no_grad():
    torch.save(model(torch.load(inputs)), outputs)
assert not any(m == "nas" or m.startswith("nas.") for m in sys.modules), "nas was imported"
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train") / "run"
    config = TrainConfig(dataset="mnist5k", epochs=1, batch=32, max_train=128, resolution=16, val_fraction=0.05,
                         device="cpu")
    train(TINY, config, out, log=lambda line: None)
    return out


def test_trained_export_loads_without_nas_and_gives_the_same_outputs(trained: Path, tmp_path: Path) -> None:
    weights = load_weights(trained / FINAL_MODEL)
    assert (weights.num_classes, weights.in_channels, weights.resolution) == (10, 1, 16)
    result = export(TINY, tmp_path / "export", weights=weights, batch=4, steps=2)
    folder = tmp_path / "export"
    for name in (PROGRAM, "arch.yaml", "README.md", "export.json"):
        assert (folder / name).is_file(), name
    assert result.trained and result.params > 0 and result.macs > 0 and result.step_ms > 0

    model = build(TINY, num_classes=10, in_channels=1)
    model.load_state_dict(weights.state)
    model.eval()
    inputs = torch.randn(3, 1, 16, 16)  # a batch size other than the one exported with
    torch.save(inputs, tmp_path / "inputs.pt")
    done = subprocess.run(
        [sys.executable, "-I", "-c", LOAD_WITHOUT_NAS, str(folder / PROGRAM), str(tmp_path / "inputs.pt"),
         str(tmp_path / "outputs.pt")],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    with torch.no_grad():
        expected = model(inputs)
    assert torch.allclose(torch.load(tmp_path / "outputs.pt"), expected, atol=1e-5)


def test_readme_states_params_macs_and_step_time(trained: Path, tmp_path: Path) -> None:
    from nas.cli import main

    assert main(["export", str(trained), "-o", str(tmp_path / "e"), "--batch", "4", "--steps", "2"]) == 0
    facts = json.loads((tmp_path / "e" / "export.json").read_text())
    readme = (tmp_path / "e" / "README.md").read_text()
    assert f"| parameters | {facts['params']:,} |" in readme
    assert "multiply-adds" in readme and "training step time" in readme and "torch.export.load" in readme
    assert facts["trained"] and facts["weights"].endswith(FINAL_MODEL) and facts["resolution"] == 16
    if not facts["onnx"]:
        assert "ONNX not written" in readme


def test_fresh_architecture_and_training_checkpoint_sources(trained: Path, tmp_path: Path) -> None:
    fresh = export(TINY, tmp_path / "fresh", num_classes=5, in_channels=3, batch=2, steps=1)
    assert not fresh.trained and fresh.num_classes == 5 and fresh.resolution == TINY.resolution
    # a training checkpoint works too (its EMA when there is one, else its model weights)
    assert load_weights(trained / CHECKPOINT).state.keys() == load_weights(trained / FINAL_MODEL).state.keys()


def test_mismatched_checkpoint_is_a_config_error(trained: Path, tmp_path: Path) -> None:
    bigger = replace(TINY, head_channels=128)
    with pytest.raises(ConfigError, match="--checkpoint must match the architecture"):
        export(bigger, tmp_path / "bad", weights=load_weights(trained / FINAL_MODEL), batch=2, steps=1)
    junk = tmp_path / "junk.pt"
    torch.save({"something": torch.zeros(1)}, junk)
    with pytest.raises(ConfigError, match="--checkpoint must hold weights of a nas network"):
        load_weights(junk)
