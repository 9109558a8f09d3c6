"""The sweeper's config schema, registered as `hydra/sweeper=tunixrt_optuna`.

No `from __future__ import annotations` here: Hydra's plugin scan runs this module
before it is in sys.modules, where dataclasses cannot resolve string annotations.
"""

import enum
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore


class Direction(enum.Enum):
    minimize = "minimize"
    maximize = "maximize"


@dataclass
class TPESamplerConf:
    seed: int | None = None  # offset by the trials already in the study, see _search.py
    n_startup_trials: int = 10  # random trials before TPE models the results


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.tunixrt_optuna.sweeper.TunixrtOptunaSweeper"
    n_trials: int = 10  # COMPLETE trials the study should hold; a restart runs the rest
    n_jobs: int = 1  # trials launched together (in parallel with a parallel launcher)
    direction: Direction = Direction.minimize
    # null: "tunixrt-<hparams_search preset>-<hash of the command-line overrides>"
    study_name: str | None = None
    # null: beside the run registry (registry.url); else any SQLAlchemy URL
    storage: str | None = None
    # failed trials one invocation tolerates; one more stops it (null: n_trials)
    max_failures: int | None = None
    sampler: TPESamplerConf = field(default_factory=TPESamplerConf)
    # key -> "float(lo, hi)", "log_float(lo, hi)", "int(lo, hi)", "log_int(lo, hi)",
    # "choice(a, b, ...)"; see _space.py
    params: dict[str, Any] = field(default_factory=dict)


ConfigStore.instance().store(
    group="hydra/sweeper", name="tunixrt_optuna", node=OptunaSweeperConf, provider="tunixrt"
)
