"""`tunixrt-train`: compose the Hydra config and call `train(cfg)`; nothing else."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from tunixrt.config import register_configs, repo_path

register_configs()


@hydra.main(version_base="1.3", config_path=str(repo_path("conf")), config_name="train")
def main(cfg: DictConfig) -> float | None:
    from tunixrt.train.loop import train

    return train(cfg).final_eval_loss


if __name__ == "__main__":
    main()
