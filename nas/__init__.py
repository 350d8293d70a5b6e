"""nas: training-aware neural architecture search for EfficientNet-style networks."""

__version__ = "0.1.0"
