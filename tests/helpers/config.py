"""Composing the training config with Hydra, as scripts/train.py does."""

from __future__ import annotations

from collections.abc import Sequence

from omegaconf import DictConfig

from tunixrt.composition import compose

# Answer evaluation compiles a generation program per run: the tests that are not about
# it leave it off (tests/test_train_eval.py turns it on).
NO_ANSWER_EVAL = "eval.max_examples=0"


def without_answer_eval(overrides: Sequence[str]) -> list[str]:
    """`overrides`, plus eval.max_examples=0 unless they set it."""
    if any(o.lstrip("+").startswith("eval.max_examples=") for o in overrides):
        return list(overrides)
    return [*overrides, NO_ANSWER_EVAL]


def compose_train(overrides: Sequence[str] = ()) -> DictConfig:
    """conf/train.yaml with Hydra command-line `overrides` applied (answer evaluation
    off unless they turn it on)."""
    return compose(without_answer_eval(overrides))
