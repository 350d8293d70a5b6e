"""Building blocks of EfficientNet-style networks (MBConv and Fused-MBConv).

The layer choices (bias-free convs, BatchNorm eps 1e-3, SiLU, SE with biased 1x1 convs sized
from the block *input* width) follow the published models, so parameter counts match the
reference implementations exactly.
"""

from __future__ import annotations

import torch
from torch import nn

from nas.spec.arch import expanded_channels, squeeze_channels

BN_EPS = 1e-3


class ConvBNAct(nn.Sequential):
    """Conv (no bias: BatchNorm follows) + BatchNorm + optional SiLU, 'same' padding."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int = 3,
        stride: int = 1,
        groups: int = 1,
        act: bool = True,
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_channels, out_channels, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False
            ),
            nn.BatchNorm2d(out_channels, eps=BN_EPS),
        ]
        if act:
            layers.append(nn.SiLU(inplace=True))
        super().__init__(*layers)


class SqueezeExcite(nn.Module):
    """Channel attention: global pool -> 1x1 reduce -> SiLU -> 1x1 expand -> sigmoid gate."""

    def __init__(self, channels: int, squeeze_channels: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeeze_channels, 1)
        self.act = nn.SiLU(inplace=True)
        self.expand = nn.Conv2d(squeeze_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean((2, 3), keepdim=True)
        scale = torch.sigmoid(self.expand(self.act(self.reduce(scale))))
        return x * scale


class StochasticDepth(nn.Module):
    """Drop the residual branch for whole samples with probability `p` (training only).

    Kept samples are scaled by 1/(1-p) so the expected output matches evaluation.
    """

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"drop-path probability must be in [0, 1], got {p}")
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        if keep == 0.0:
            return torch.zeros_like(x)
        mask = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device)
        mask.bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class _ResidualBlock(nn.Module):
    """Shared forward: body, then residual + drop path when shapes allow and skip is on."""

    body: nn.Sequential

    def __init__(
        self, in_channels: int, out_channels: int, stride: int, skip: bool, drop_path: float
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride
        self.use_residual = skip and stride == 1 and in_channels == out_channels
        # drop path only makes sense on a residual branch; without one it would zero the output
        self.drop_path = StochasticDepth(drop_path if self.use_residual else 0.0)

    def extra_repr(self) -> str:
        # the residual is no module of its own: say it, so structure-keyed step timings see it
        return f"residual={self.use_residual}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        if self.use_residual:
            out = self.drop_path(out) + x
        return out


class MBConv(_ResidualBlock):
    """Inverted bottleneck: 1x1 expand -> kxk depthwise -> SE -> 1x1 linear project."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        stride: int,
        expansion: float,
        se: float = 0.0,
        skip: bool = True,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__(in_channels, out_channels, stride, skip, drop_path)
        hidden = expanded_channels(in_channels, expansion)
        layers: list[nn.Module] = []
        if hidden != in_channels:
            layers.append(ConvBNAct(in_channels, hidden, 1))
        layers.append(ConvBNAct(hidden, hidden, kernel, stride, groups=hidden))
        if se > 0:
            layers.append(SqueezeExcite(hidden, squeeze_channels(in_channels, se)))
        layers.append(ConvBNAct(hidden, out_channels, 1, act=False))
        self.body = nn.Sequential(*layers)


class FusedMBConv(_ResidualBlock):
    """Fused inverted bottleneck: kxk full conv expand -> SE -> 1x1 project.

    With expansion 1 it is a single kxk conv (with activation) from input to output width.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        stride: int,
        expansion: float,
        se: float = 0.0,
        skip: bool = True,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__(in_channels, out_channels, stride, skip, drop_path)
        hidden = expanded_channels(in_channels, expansion)
        sq = squeeze_channels(in_channels, se)
        layers: list[nn.Module]
        if hidden != in_channels:
            layers = [ConvBNAct(in_channels, hidden, kernel, stride)]
            if se > 0:
                layers.append(SqueezeExcite(hidden, sq))
            layers.append(ConvBNAct(hidden, out_channels, 1, act=False))
        else:
            layers = [ConvBNAct(in_channels, out_channels, kernel, stride)]
            if se > 0:
                layers.append(SqueezeExcite(out_channels, sq))
        self.body = nn.Sequential(*layers)


BLOCKS: dict[str, type[_ResidualBlock]] = {"mbconv": MBConv, "fused_mbconv": FusedMBConv}
