"""Turn an `Arch` into a PyTorch EfficientNet: stem -> stages of (Fused-)MBConv -> head -> classifier."""

from __future__ import annotations

import math

import torch
from torch import nn

from nas.model.blocks import BLOCKS, ConvBNAct, StochasticDepth
from nas.spec.arch import Arch
from nas.spec.errors import ConfigError


class EfficientNet(nn.Module):
    """EfficientNet / EfficientNetV2-style classifier built from an `Arch`.

    `arch` is kept as built; `set_dropout` changes only the live classifier dropout (progressive
    learning raises it between training stages).
    """

    def __init__(self, arch: Arch, num_classes: int = 1000, in_channels: int = 3) -> None:
        super().__init__()
        if num_classes < 1 or in_channels < 1:
            raise ConfigError(
                f"num_classes and in_channels must be >= 1, but got {num_classes} and {in_channels}"
            )
        self.arch = arch
        self.num_classes = num_classes
        self.in_channels = in_channels

        stem_channels = arch.resolved_stem_channels
        self.stem = ConvBNAct(in_channels, stem_channels, 3, arch.stem_stride)

        stages = arch.resolved_stages()
        total_blocks = sum(s.layers for s in stages)
        block_index = 0
        channels = stem_channels
        stage_modules: list[nn.Module] = []
        for stage in stages:
            blocks: list[nn.Module] = []
            for layer in range(stage.layers):
                # torchvision convention: block i of n gets rate * i / n (the first block gets 0)
                rate = arch.drop_path * block_index / total_blocks
                blocks.append(
                    BLOCKS[stage.op](
                        in_channels=channels,
                        out_channels=stage.channels,
                        kernel=stage.kernel,
                        stride=stage.stride if layer == 0 else 1,
                        expansion=stage.expansion,
                        se=stage.se,
                        skip=stage.skip,
                        drop_path=rate,
                    )
                )
                channels = stage.channels
                block_index += 1
            stage_modules.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stage_modules)

        head_channels = arch.resolved_head_channels
        self.head = ConvBNAct(channels, head_channels, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(arch.dropout)
        self.classifier = nn.Linear(head_channels, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                # torchvision's EfficientNet scales by the number of outputs (classes)
                bound = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    def set_dropout(self, p: float) -> None:
        """Change the classifier dropout rate in place (0 <= p < 1)."""
        if not 0.0 <= p < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), but got {p!r}")
        self.dropout.p = float(p)

    def drop_path_rates(self) -> list[float]:
        """Per-block stochastic-depth rates in network order (0 where a block has no residual)."""
        return [m.p for m in self.stages.modules() if isinstance(m, StochasticDepth)]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled, pre-dropout features (batch, head channels)."""
        x = self.head(self.stages(self.stem(x)))
        return torch.flatten(self.pool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.features(x)))


def build(arch: Arch, num_classes: int = 1000, in_channels: int = 3) -> EfficientNet:
    """Build the network an architecture describes (freshly initialised, on CPU, train mode)."""
    return EfficientNet(arch, num_classes=num_classes, in_channels=in_channels)
