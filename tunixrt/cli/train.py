"""`tunixrt-train`: compose the Hydra config and call `train(cfg)`; nothing else."""

from __future__ import annotations

import logging

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from tunixrt.config import register_configs, repo_path
from tunixrt.errors import InputError

register_configs()
log = logging.getLogger("tunixrt")


def _resume_hint(run_dir: str) -> str:
    task = [o for o in HydraConfig.get().overrides.task if not o.startswith("hydra.run.dir=")]
    named = any(o.startswith("run.name=") for o in task)
    where = [] if named else [f"hydra.run.dir={run_dir}"]
    return " ".join(["tunixrt-train", *task, *where])


@hydra.main(version_base="1.3", config_path=str(repo_path("conf")), config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Train; return the final `optimized_metric` for sweepers (None when the job failed
    in a sweep, so the other jobs go on and the sweep's summary names the failure)."""
    from tunixrt.train.loop import NonFiniteError, train
    from tunixrt.train.signals import Preempted

    sweeping = HydraConfig.get().mode == RunMode.MULTIRUN
    # Each expected failure is one line naming what went wrong; a traceback would bury it.
    try:
        return train(cfg).metric(cfg.optimized_metric)
    except (InputError, NonFiniteError) as err:
        log.error("%s", err)
        if sweeping:
            return None
        raise SystemExit(2 if isinstance(err, InputError) else 1) from None
    except Preempted as stop:
        log.error("%s; checkpoint saved. Resume with: %s", stop, _resume_hint(stop.run_dir))
        raise SystemExit(stop.exit_code) from None
    except Exception:
        if not sweeping:
            raise
        log.exception("job failed")
        return None


if __name__ == "__main__":
    main()
