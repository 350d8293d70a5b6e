"""PyTorch models built from `nas.spec.arch.Arch` descriptions."""

from nas.model.network import EfficientNet, build

__all__ = ["EfficientNet", "build"]
