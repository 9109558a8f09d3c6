"""The root of a run's config (`TrainConfig`, every section plus seed, init and the
metric a sweep optimises) and `validate`, which turns a composed config into it."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from tunixrt.config._checks import ConfigError, _require
from tunixrt.config.algorithm import AlgorithmConfig
from tunixrt.config.data import DatasetConfig
from tunixrt.config.device import DeviceConfig
from tunixrt.config.model import ModelConfig
from tunixrt.config.optimizer import OptimizerConfig
from tunixrt.config.run import (
    CheckpointConfig,
    EvalConfig,
    RegistryConfig,
    RunConfig,
    TrainerConfig,
)

INIT_KEYS = ("from",)


def _no_init() -> dict[str, str | None]:
    return {"from": None}


# Metrics a run reports at its end, e.g. to a sweeper (`optimized_metric`).
FINAL_METRICS = ("eval/loss", "train/loss", "eval/accuracy")


@dataclass
class TrainConfig:
    seed: int = 0
    optimized_metric: str = "eval/loss"  # what the task returns to Hydra's sweepers
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    device: DeviceConfig = field(default_factory=DeviceConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    run: RunConfig = field(default_factory=RunConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    # Weights to start from (a dict because `from` cannot name a dataclass field):
    # init.from = a registered run id, a run folder, a checkpoint step folder
    # (RUN/checkpoints/STEP) or a Hugging Face folder; null starts from model.* as usual.
    # Only a fresh start reads it: a resume continues from the run's own checkpoints.
    init: dict[str, str | None] = field(default_factory=_no_init)

    @property
    def init_from(self) -> str | None:
        return self.init.get("from")

    def __post_init__(self) -> None:
        unknown = sorted(set(self.init) - set(INIT_KEYS))
        _require(not unknown, "init", unknown, f"only the keys {list(INIT_KEYS)}")
        if self.model.path is None:  # a pretrained model's limit is checked when it loads
            _require(
                self.trainer.seq_len <= self.model.max_seq_len,
                "trainer.seq_len",
                self.trainer.seq_len,
                f"at most model.max_seq_len={self.model.max_seq_len}, the longest input "
                "the model accepts",
            )
        _require(
            self.optimized_metric in FINAL_METRICS,
            "optimized_metric",
            self.optimized_metric,
            f"one of {list(FINAL_METRICS)}",
        )


def validate(cfg: DictConfig | TrainConfig | Mapping[str, Any]) -> TrainConfig:
    """Typed objects with every range check run. A `TrainConfig` built in Python, or a
    plain dict (a config stored as JSON), goes through OmegaConf too, so a wrong type or
    a missing value (`???`) names its key as it does on the command line; keys a dict
    lacks take their defaults."""
    try:
        node: Any = cfg
        if not isinstance(cfg, DictConfig):
            # merged as plain values onto the schema, so an error names the dotted key
            plain = dataclasses.asdict(cfg) if isinstance(cfg, TrainConfig) else dict(cfg)
            node = OmegaConf.merge(OmegaConf.structured(TrainConfig), plain)
        obj = OmegaConf.to_object(node)
    except OmegaConfBaseException as err:
        # the first line says what is wrong; the rest repeats the key and object types
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        key = getattr(err, "full_key", None)
        raise ConfigError(f"invalid config value {key}: {reason}" if key else reason) from None
    if not isinstance(obj, TrainConfig):
        raise ConfigError(f"expected a TrainConfig, got {type(obj).__name__}")
    return obj
