"""`hydra/sweeper=tunixrt_optuna`: an Optuna search whose trials are Hydra jobs.

Usage: `tunixrt-train -m hparams_search=lr_optuna` (conf/hparams_search/lr_optuna.yaml),
or `hydra/sweeper=tunixrt_optuna` with `hydra.sweeper.params`. Each trial runs the task
through the configured launcher (basic, joblib, submitit) and reports its return value,
the run's `optimized_metric`, to optuna.
"""

from __future__ import annotations

from typing import Any

from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from .config import SearchSettings


class TunixrtOptunaSweeper(Sweeper):
    def __init__(self, **settings: Any) -> None:
        # hydra.sweeper's keys (OptunaSweeperConf), checked here so a bad setting fails
        # when Hydra builds the sweeper, before setup.
        self.settings = SearchSettings.from_hydra(**settings)
        self.hydra_context: HydraContext | None = None
        self.config: DictConfig | None = None
        self.launcher: Launcher | None = None

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

        # Hydra calls setup() before sweep().
        assert self.hydra_context is not None and self.config is not None
        assert self.launcher is not None
        return run_search(
            self.settings,
            config=self.config,
            loader=self.hydra_context.config_loader,
            launcher=self.launcher,
            arguments=arguments,
        )
