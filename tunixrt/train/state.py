"""The loop's own state and the JSON metadata stored beside each checkpoint."""

from __future__ import annotations

import datetime
from dataclasses import asdict, dataclass
from typing import Any

import jax
from flax import nnx

from tunixrt.registry import package_versions
from tunixrt.train.resume import identity_hash


@dataclass
class LoopState:
    step: int = 0  # optimizer steps done
    tokens_seen: int = 0  # real (non-padding) tokens trained on
    schedule_steps: int = 0  # length of the lr schedule, fixed at the first start
    last_eval_loss: float | None = None
    best_eval_loss: float | None = None
    last_eval_accuracy: float | None = None  # answer evaluation (eval.*)

    def record_eval(self, loss: float) -> None:
        self.last_eval_loss = loss
        if self.best_eval_loss is None or loss < self.best_eval_loss:
            self.best_eval_loss = loss

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LoopState:
        # Checkpoints written before a field existed lack it: it keeps its default.
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def param_shapes(model: nnx.Module) -> dict[str, list[int]]:
    flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
    return {".".join(map(str, path)): list(v.get_value().shape) for path, v in flat}


def checkpoint_meta(
    loop: LoopState,
    data_state: dict[str, int],
    config: dict[str, Any],
    model: nnx.Module,
    *,
    base: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`base`: the LoRA base reference (tunixrt.lora_base); None when the checkpoint
    holds the whole model."""
    return {
        "step": loop.step,
        "loop": asdict(loop),
        "data": data_state,
        "config": config,
        "identity_hash": identity_hash(config),
        "param_shapes": param_shapes(model),
        "base": base,
        "versions": package_versions(),
        "backend": jax.default_backend(),
        "saved_at": datetime.datetime.now(datetime.UTC).isoformat(),
    }
