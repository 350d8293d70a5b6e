"""The spec: what a user declares and the rules it must follow.

Architectures (`arch`), search spaces (`space`), objectives, search settings, the timing shape,
packaged resources, user paths and the error types. The bottom layer: it imports nothing else
from `nas` and no torch (a contract in pyproject.toml), so `nas report` and `nas spaces` start
without loading torch.
"""
