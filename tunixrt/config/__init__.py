"""Typed config schemas: the single source of truth for every key a user can set.

One module per concern: `model`, `data`, `optimizer`, `device`, `run` (trainer, eval,
checkpoint, registry and resume), `algorithm`, and `train` (the root `TrainConfig` and
`validate`); every name is importable from `tunixrt.config` itself.

`tunixrt.composition` registers them in Hydra's ConfigStore, so a value of the wrong
type or an unknown choice fails while Hydra composes the config. Range checks live in
`__post_init__` and run when `validate` turns a composed DictConfig (or a `TrainConfig`
built in Python) into these objects, before anything is compiled. Nothing here needs
Hydra: `train(TrainConfig(...), ...)` works from plain Python.
"""

from tunixrt.config._checks import ConfigError
from tunixrt.config.algorithm import REWARD_NAMES, AdvantageScale, AlgorithmConfig, AlgorithmName
from tunixrt.config.data import DatasetConfig
from tunixrt.config.device import (
    DeviceConfig,
    DistributedConfig,
    MatmulOutput,
    MeshConfig,
    Platform,
    Precision,
)
from tunixrt.config.model import (
    Activation,
    AttentionImpl,
    LoRAConfig,
    ModelConfig,
    NormKind,
    PositionKind,
    RopeScaling,
)
from tunixrt.config.optimizer import OptimizerConfig, OptimizerName, Schedule
from tunixrt.config.run import (
    BEST_METRICS,
    METRIC_MODES,
    BestMode,
    CheckpointConfig,
    EvalConfig,
    Progress,
    RegistryConfig,
    Resume,
    RunConfig,
    TrainerConfig,
)
from tunixrt.config.train import FINAL_METRICS, INIT_KEYS, TrainConfig, validate

__all__ = [
    "BEST_METRICS",
    "FINAL_METRICS",
    "INIT_KEYS",
    "METRIC_MODES",
    "REWARD_NAMES",
    "Activation",
    "AdvantageScale",
    "AlgorithmConfig",
    "AlgorithmName",
    "AttentionImpl",
    "BestMode",
    "CheckpointConfig",
    "ConfigError",
    "DatasetConfig",
    "DeviceConfig",
    "DistributedConfig",
    "EvalConfig",
    "LoRAConfig",
    "MatmulOutput",
    "MeshConfig",
    "ModelConfig",
    "NormKind",
    "OptimizerConfig",
    "OptimizerName",
    "Platform",
    "PositionKind",
    "Precision",
    "Progress",
    "RegistryConfig",
    "Resume",
    "RopeScaling",
    "RunConfig",
    "Schedule",
    "TrainConfig",
    "TrainerConfig",
    "validate",
]
