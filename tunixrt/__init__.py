"""tunixrt: train decoder-only language models on reasoning traces with JAX."""

__version__ = "0.1.0"
