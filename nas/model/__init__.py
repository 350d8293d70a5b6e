"""PyTorch models built from `nas.spec.arch.Arch` descriptions: the blocks (MBConv, Fused-MBConv)
and the network. Torch starts here; imports only `nas.spec`."""

from nas.model.network import EfficientNet, build

__all__ = ["EfficientNet", "build"]
