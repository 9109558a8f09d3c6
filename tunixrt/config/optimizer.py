"""The optimizer section: the update rule and its learning-rate schedule."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from omegaconf import MISSING

from tunixrt.config._checks import _require


class OptimizerName(enum.StrEnum):
    adamw = "adamw"
    adafactor = "adafactor"
    lion = "lion"
    sgd = "sgd"


class Schedule(enum.StrEnum):
    constant = "constant"
    linear = "linear"
    cosine = "cosine"


@dataclass
class OptimizerConfig:
    name: OptimizerName = MISSING
    lr: float = 1e-3  # peak learning rate
    schedule: Schedule = Schedule.cosine
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1  # final lr / peak lr for linear and cosine decay
    # Steps over which the schedule runs; null: trainer.max_steps of the run's first start,
    # so extending max_steps on resume continues the schedule instead of reshaping it.
    decay_steps: int | None = None
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    b1: float = 0.9
    b2: float = 0.95
    eps: float = 1e-8
    momentum: float = 0.9  # sgd only
    nesterov: bool = False  # sgd only

    def __post_init__(self) -> None:
        _require(self.lr > 0, "optimizer.lr", self.lr, "a positive number")
        _require(
            self.warmup_steps >= 0, "optimizer.warmup_steps", self.warmup_steps, "an integer >= 0"
        )
        _require(
            0.0 <= self.min_lr_ratio <= 1.0,
            "optimizer.min_lr_ratio",
            self.min_lr_ratio,
            "a number in [0, 1]",
        )
        _require(
            self.decay_steps is None or self.decay_steps > 0,
            "optimizer.decay_steps",
            self.decay_steps,
            "a positive integer or null",
        )
        _require(
            self.weight_decay >= 0, "optimizer.weight_decay", self.weight_decay, "a number >= 0"
        )
        _require(
            self.grad_clip >= 0,
            "optimizer.grad_clip",
            self.grad_clip,
            "a number >= 0 (0 disables clipping)",
        )
        for key in ("b1", "b2", "momentum"):
            value = getattr(self, key)
            _require(0.0 <= value < 1.0, f"optimizer.{key}", value, "a number in [0, 1)")
