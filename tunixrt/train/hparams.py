"""The hyper-parameters a run shows in TensorBoard's HParams table: the keys its
command line overrides (what a sweep varies), then a fixed set of key config values."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tunixrt.dotted import flatten

# Config values every run shows in TensorBoard's HParams table, beside the swept keys.
KEY_HPARAMS = (
    "seed",
    "dataset.name",
    "model.name",
    "model.dim",
    "model.n_layers",
    "optimizer.name",
    "optimizer.lr",
    "optimizer.schedule",
    "optimizer.warmup_steps",
    "optimizer.weight_decay",
    "trainer.max_steps",
    "trainer.batch_size",
    "trainer.seq_len",
    "trainer.grad_accum",
)


def hparams(config: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Dotted key -> value: the keys this job overrides, then `KEY_HPARAMS`."""
    flat = flatten(config)
    swept = [o.split("=", 1)[0].lstrip("+~") for o in overrides if "=" in o]
    keys = [k for k in swept if k in flat] + [k for k in KEY_HPARAMS if k not in swept]
    return {k: flat[k] for k in keys if k in flat}
