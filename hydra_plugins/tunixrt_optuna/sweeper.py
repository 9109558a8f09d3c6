"""`hydra/sweeper=tunixrt_optuna`: an Optuna search whose trials are Hydra jobs.

Usage: `tunixrt-train -m hparams_search=lr_optuna` (conf/hparams_search/lr_optuna.yaml),
or `hydra/sweeper=tunixrt_optuna` with `hydra.sweeper.params`. Each trial runs the task
through the configured launcher (basic, joblib, submitit) and reports its return value,
the run's `optimized_metric`, to optuna.
"""

from __future__ import annotations

from typing import Any, Literal, cast

from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from .config import Direction


class TunixrtOptunaSweeper(Sweeper):
    def __init__(
        self,
        n_trials: int,
        n_jobs: int,
        direction: Direction | str,
        study_name: str | None,
        storage: str | None,
        max_failures: int | None,
        sampler: Any,
        params: Any,
    ) -> None:
        for key, value in (("n_trials", n_trials), ("n_jobs", n_jobs)):
            if value < 1:
                raise ValueError(f"hydra.sweeper.{key}={value}: expected a positive integer")
        if max_failures is not None and max_failures < 0:
            raise ValueError(f"hydra.sweeper.max_failures={max_failures}: expected >= 0 or null")
        self.n_trials, self.n_jobs, self.max_failures = n_trials, n_jobs, max_failures
        name = Direction(getattr(direction, "value", direction)).value
        self.direction = cast(Literal["minimize", "maximize"], name)
        self.study_name, self.storage = study_name, storage
        self.seed: int | None = sampler.seed
        self.n_startup_trials: int = sampler.n_startup_trials
        self.params: dict[str, Any] = _plain(params)
        self.hydra_context: HydraContext | None = None
        self.config: DictConfig | None = None
        self.launcher = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> list[JobReturn]:
        try:
            import optuna  # noqa: F401
        except ImportError as err:
            raise ImportError(
                f"the tunixrt_optuna sweeper needs optuna: pip install 'tunixrt[sweeps]' ({err})"
            ) from err
        from ._search import run_search

        return run_search(self, arguments)


def _plain(params: Any) -> dict[str, Any]:
    if isinstance(params, DictConfig):
        params = OmegaConf.to_container(params, resolve=True)
    return dict(params or {})
