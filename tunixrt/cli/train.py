"""`tunixrt-train`: compose the Hydra config, gather what Hydra knows about the job into
a `RunContext`, and call `train(cfg, context)`; errors become one line and an exit code."""

from __future__ import annotations

import logging

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from tunixrt.composition import register_configs
from tunixrt.errors import InputError
from tunixrt.paths import repo_path

register_configs()
log = logging.getLogger("tunixrt")


@hydra.main(version_base="1.3", config_path=str(repo_path("conf")), config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Train; return the final `optimized_metric` for sweepers (None when the job failed
    in a sweep, so the other jobs go on and the sweep's summary names the failure)."""
    from tunixrt.cli.hydra_run import mask_hydra_files, resume_hint, run_context
    from tunixrt.logs import mask_secrets_in_logs, quiet_libraries
    from tunixrt.train.loop import NonFiniteError, train
    from tunixrt.train.signals import Preempted, hand_back

    quiet_libraries()
    mask_secrets_in_logs()
    context = run_context()
    mask_hydra_files(context.run_dir)
    sweeping = HydraConfig.get().mode == RunMode.MULTIRUN
    # Each expected failure is one line naming what went wrong; a traceback would bury it.
    try:
        return train(cfg, context).metric(cfg.optimized_metric)
    except (InputError, NonFiniteError) as err:
        log.error("%s", err)
        if sweeping:
            return None
        raise SystemExit(2 if isinstance(err, InputError) else 1) from None
    except Preempted as stop:
        log.error("%s; checkpoint saved. Resume with: %s", stop, resume_hint(context))
        hand_back(stop)  # SIGUSR2: submitit requeues the job, which resumes
        raise SystemExit(stop.exit_code) from None
    except Exception:
        if not sweeping:
            raise
        log.exception("job failed")
        return None


if __name__ == "__main__":
    main()
