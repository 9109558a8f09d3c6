"""`tunixrt-train`: compose the Hydra config and call `train(cfg)`; nothing else."""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

from tunixrt.config import register_configs, repo_path
from tunixrt.errors import InputError

register_configs()
log = logging.getLogger("tunixrt")


@hydra.main(version_base="1.3", config_path=str(repo_path("conf")), config_name="train")
def main(cfg: DictConfig) -> float | None:
    from tunixrt.train.loop import train

    try:
        return train(cfg).final_eval_loss
    except InputError as err:
        # The message names the file, line or key; a traceback would only bury it.
        log.error("%s", err)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
