"""Builder tests: published parameter counts, every block variant, residual and drop-path rules."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from nas.model import EfficientNet, build
from nas.model.blocks import FusedMBConv, MBConv, SqueezeExcite, StochasticDepth
from nas.spec.arch import Arch, Stage
from nas.spec.errors import ConfigError
from nas.spec.resources import load_arch


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def tiny_arch(op: str = "mbconv", kernel: int = 3, expansion: float = 4, se: float = 0.25, **kw) -> Arch:
    stages = (
        Stage(op, kernel, expansion, se, channels=16, layers=2, stride=1),
        Stage(op, kernel, expansion, se, channels=24, layers=2, stride=2),
    )
    defaults = dict(stem_channels=16, stem_stride=1, head_channels=64, resolution=16)
    defaults.update(kw)
    return Arch(stages=stages, **defaults)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("efficientnet-b0", 5_288_548),
        ("efficientnetv2-s", 21_458_488),
        ("efficientnetv2-m", 54_139_356),
        ("efficientnetv2-l", 118_515_272),
    ],
)
def test_published_param_counts(name: str, expected: int) -> None:
    with torch.device("meta"):  # shapes only: V2-L's 118M weights need not be allocated and initialised
        model = build(load_arch(name))
    assert n_params(model) == expected


def test_b0_runs_and_keeps_arch() -> None:
    arch = load_arch("efficientnet-b0")
    model = build(arch, num_classes=7, in_channels=3)
    assert isinstance(model, EfficientNet)
    assert model.arch is arch
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)


@pytest.mark.parametrize(
    ("op", "kernel", "expansion", "se"),
    list(itertools.product(["mbconv", "fused_mbconv"], [3, 5], [1, 4, 6], [0.0, 0.25])),
)
def test_every_block_variant_trains(op: str, kernel: int, expansion: float, se: float) -> None:
    model = build(tiny_arch(op, kernel, expansion, se), num_classes=10, in_channels=1)
    x = torch.randn(4, 1, 16, 16)
    out = model(x)
    assert out.shape == (4, 10)
    out.sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_mbconv_param_count_by_hand() -> None:
    # 16 -> 64 expand, 3x3 depthwise, SE squeezing to 16 * 0.25 = 4, project to 16
    block = MBConv(16, 16, kernel=3, stride=1, expansion=4, se=0.25)
    expand = 16 * 64 + 2 * 64
    depthwise = 64 * 9 + 2 * 64
    se = (64 * 4 + 4) + (4 * 64 + 64)
    project = 64 * 16 + 2 * 16
    assert n_params(block) == expand + depthwise + se + project


def test_expansion_one_skips_expand_conv() -> None:
    mb = MBConv(16, 24, kernel=3, stride=1, expansion=1, se=0.25)
    se_convs = {id(c) for c in _se_convs(mb)}
    convs = [m for m in mb.modules() if isinstance(m, nn.Conv2d) and id(m) not in se_convs]
    assert [c.groups for c in convs] == [16, 1]  # depthwise, project
    fused = FusedMBConv(16, 24, kernel=5, stride=2, expansion=1, se=0.0)
    convs = [m for m in fused.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 and convs[0].kernel_size == (5, 5) and convs[0].stride == (2, 2)
    assert isinstance(fused.body[0][-1], nn.SiLU)  # the single conv keeps its activation


def test_fused_expanded_has_linear_projection() -> None:
    fused = FusedMBConv(16, 16, kernel=3, stride=1, expansion=4, se=0.25)
    kinds = [type(m).__name__ for m in fused.body]
    assert kinds == ["ConvBNAct", "SqueezeExcite", "ConvBNAct"]
    assert not any(isinstance(m, nn.SiLU) for m in fused.body[-1])
    se = next(m for m in fused.modules() if isinstance(m, SqueezeExcite))
    assert se.reduce.out_channels == 4 and se.reduce.bias is not None


def _se_convs(block: nn.Module) -> list[nn.Module]:
    return [c for m in block.modules() if isinstance(m, SqueezeExcite) for c in (m.reduce, m.expand)]


@pytest.mark.parametrize("cls", [MBConv, FusedMBConv])
def test_residual_rules(cls: type) -> None:
    assert cls(16, 16, 3, 1, 4).use_residual
    assert not cls(16, 16, 3, 2, 4).use_residual  # stride
    assert not cls(16, 24, 3, 1, 4).use_residual  # width change
    assert not cls(16, 16, 3, 1, 4, skip=False).use_residual  # stage says no skip
    block = cls(16, 16, 3, 1, 4, drop_path=0.5).eval()
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(block(x), block.body(x) + x)
    no_skip = cls(16, 16, 3, 1, 4, skip=False, drop_path=0.5).eval()
    with torch.no_grad():
        torch.testing.assert_close(no_skip(x), no_skip.body(x))


def test_noskip_stage_in_network() -> None:
    arch = tiny_arch()
    arch = arch.with_(stages=(Stage("mbconv", 3, 4, 0.25, 16, 2, 1, skip=False), *arch.stages[1:]))
    model = build(arch, 10, 1)
    assert [b.use_residual for b in model.stages[0]] == [False, False]
    assert [b.use_residual for b in model.stages[1]] == [False, True]


def test_drop_path_schedule_is_linear() -> None:
    stages = (
        Stage("mbconv", 3, 4, 0.25, 16, 2, 1),
        Stage("fused_mbconv", 3, 4, 0.0, 16, 3, 1),
    )
    arch = Arch(stages=stages, stem_channels=16, stem_stride=1, head_channels=32, drop_path=0.2)
    rates = build(arch, 10, 1).drop_path_rates()
    assert rates == pytest.approx([0.2 * i / 5 for i in range(5)])
    # a block without a residual has nothing to drop, whatever its index
    b0 = build(load_arch("efficientnet-b0"))
    blocks = [b for stage in b0.stages for b in stage]
    assert len(blocks) == 16
    for i, block in enumerate(blocks):
        assert block.drop_path.p == pytest.approx(0.2 * i / 16 if block.use_residual else 0.0)


def test_stochastic_depth() -> None:
    x = torch.ones(64, 3, 2, 2)
    sd = StochasticDepth(0.5)
    sd.eval()
    assert sd(x) is x
    sd.train()
    assert StochasticDepth(0.0).train()(x) is x
    torch.manual_seed(0)
    out = sd(x)
    per_sample = out.flatten(1)
    # whole samples are dropped or kept (scaled by 1 / (1 - p)), never single elements
    assert set(per_sample.unique().tolist()) <= {0.0, 2.0}
    assert (per_sample == per_sample[:, :1]).all()
    assert 0 < (per_sample[:, 0] == 0).sum() < 64
    assert (StochasticDepth(1.0).train()(x) == 0).all()
    with pytest.raises(ValueError):
        StochasticDepth(1.5)


def test_set_dropout() -> None:
    model = build(tiny_arch(dropout=0.2), 10, 1)
    assert model.dropout.p == pytest.approx(0.2)
    model.set_dropout(0.5)
    assert model.dropout.p == pytest.approx(0.5)
    assert model.arch.dropout == pytest.approx(0.2)
    with pytest.raises(ConfigError):
        model.set_dropout(1.0)


@pytest.mark.parametrize("in_channels", [1, 3, 4])
def test_tiny_inputs_with_stem_stride_one(in_channels: int) -> None:
    arch = load_arch("efficientnetv2-s").with_(width=0.25, depth=0.34, stem_stride=1, resolution=8)
    model = build(arch, num_classes=10, in_channels=in_channels)
    out = model(torch.randn(2, in_channels, 8, 8))
    assert out.shape == (2, 10)
    out.sum().backward()
    assert model.stem[0].in_channels == in_channels


def test_init_like_torchvision() -> None:
    model = build(tiny_arch(), num_classes=10, in_channels=1)
    bound = 1 / math.sqrt(10)
    assert model.classifier.weight.abs().max() <= bound
    assert (model.classifier.bias == 0).all()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert m.eps == 1e-3 and (m.weight == 1).all() and (m.bias == 0).all()
        if isinstance(m, nn.Conv2d) and m.bias is not None:
            assert (m.bias == 0).all()


def test_bad_sizes_rejected() -> None:
    with pytest.raises(ConfigError):
        build(tiny_arch(), num_classes=0)
    with pytest.raises(ConfigError):
        build(tiny_arch(), in_channels=0)
