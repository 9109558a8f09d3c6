"""The sweeper's config schema, registered as `hydra/sweeper=tunixrt_optuna`, and the
checked settings a search reads (SearchSettings).

No `from __future__ import annotations` here: Hydra's plugin scan runs this module
before it is in sys.modules, where dataclasses cannot resolve string annotations.
"""

import enum
from dataclasses import dataclass, field
from typing import Any, Literal, Self, cast

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf


class Direction(enum.Enum):
    minimize = "minimize"
    maximize = "maximize"


DirectionName = Literal["minimize", "maximize"]  # a Direction's value, as optuna takes it


@dataclass
class TPESamplerConf:
    seed: int | None = None  # offset by the trials already in the study, see _search.py
    n_startup_trials: int = 10  # random trials before TPE models the results


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.tunixrt_optuna.sweeper.TunixrtOptunaSweeper"
    n_trials: int = 10  # COMPLETE trials the study should hold; a restart runs the rest
    n_jobs: int = 1  # trials launched together (in parallel with a parallel launcher)
    # null: the direction that is better for optimized_metric (loss: minimize,
    # eval/accuracy: maximize)
    direction: Direction | None = None
    # null: "tunixrt-<hparams_search preset>-<hash of the command-line overrides>"
    study_name: str | None = None
    # null: beside the run registry (registry.url); else any SQLAlchemy URL
    storage: str | None = None
    # failed trials one invocation tolerates; one more stops it (null: n_trials)
    max_failures: int | None = None
    # seconds between heartbeats of running trials; a RUNNING trial without one for two
    # intervals belongs to a sweeper that died and is failed by the next search
    heartbeat_s: int = 30
    sampler: TPESamplerConf = field(default_factory=TPESamplerConf)
    # key -> "float(lo, hi)", "log_float(lo, hi)", "int(lo, hi)", "log_int(lo, hi)",
    # "choice(a, b, ...)"; see _space.py
    params: dict[str, Any] = field(default_factory=dict)


ConfigStore.instance().store(
    group="hydra/sweeper", name="tunixrt_optuna", node=OptunaSweeperConf, provider="tunixrt"
)


@dataclass(frozen=True)
class SearchSettings:
    """The user's `hydra.sweeper` settings, checked once when the sweeper is built, as
    plain values: a search reads these and never the sweeper."""

    n_trials: int
    n_jobs: int
    direction: DirectionName | None
    study_name: str | None
    storage: str | None
    max_failures: int | None
    heartbeat_s: int
    seed: int | None
    n_startup_trials: int
    params: dict[str, Any]

    def __post_init__(self) -> None:
        for key, value in (
            ("n_trials", self.n_trials),
            ("n_jobs", self.n_jobs),
            ("heartbeat_s", self.heartbeat_s),
        ):
            if value < 1:
                raise ValueError(f"hydra.sweeper.{key}={value}: expected a positive integer")
        if self.max_failures is not None and self.max_failures < 0:
            raise ValueError(
                f"hydra.sweeper.max_failures={self.max_failures}: expected >= 0 or null"
            )
        if self.direction is not None:
            Direction(self.direction)  # any other string: a ValueError that names it

    def direction_for(self, metric: str) -> DirectionName:
        """The study's direction: as set, else the better one for `metric`; a set
        direction that works against a known metric is refused."""
        from tunixrt.config import METRIC_MODES

        mode = METRIC_MODES.get(metric)
        better: DirectionName | None = {"min": "minimize", "max": "maximize", None: None}[mode]
        if self.direction is None:
            return better or "minimize"
        if better is not None and self.direction != better:
            raise ValueError(
                f"hydra.sweeper.direction={self.direction} works against "
                f"optimized_metric={metric}, which is better when it is {mode}imal; "
                "drop the direction or set it to "
                f"{better}"
            )
        return self.direction

    @classmethod
    def from_hydra(
        cls,
        *,
        n_trials: int,
        n_jobs: int,
        direction: Direction | str | None,
        study_name: str | None,
        storage: str | None,
        max_failures: int | None,
        heartbeat_s: int,
        sampler: Any,
        params: Any,
    ) -> Self:
        """From OptunaSweeperConf's fields as Hydra instantiates them: the direction as
        the enum or its string, the sampler and params as DictConfig nodes."""
        return cls(
            n_trials=n_trials,
            n_jobs=n_jobs,
            direction=cast(DirectionName | None, getattr(direction, "value", direction)),
            study_name=study_name,
            storage=storage,
            max_failures=max_failures,
            heartbeat_s=heartbeat_s,
            seed=sampler.seed,
            n_startup_trials=sampler.n_startup_trials,
            params=_plain(params),
        )


def _plain(params: Any) -> dict[str, Any]:
    if isinstance(params, DictConfig):
        params = OmegaConf.to_container(params, resolve=True)
    return dict(params or {})
