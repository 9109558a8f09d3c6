"""Training: `train(cfg, run_dir)` and what it is built from (the pure step, the run's
lifecycle, the loop, throughput metrics and progress display)."""

from tunixrt.train.context import RunContext
from tunixrt.train.loop import TrainResult, train

__all__ = ["RunContext", "TrainResult", "train"]
