"""Composing the training config with Hydra, as scripts/train.py does."""

from __future__ import annotations

from collections.abc import Sequence

from omegaconf import DictConfig

from tunixrt.composition import compose


def compose_train(overrides: Sequence[str] = ()) -> DictConfig:
    """conf/train.yaml with Hydra command-line `overrides` applied."""
    return compose(overrides)
