"""The frozen reference of a post-training run: the weights it started from.

With LoRA it is the model with its adapters off (their product is zero when lora_b is
zero), so no second copy of the weights exists. Without LoRA it is a copy of the
starting weights, saved once into the checkpoints folder (`reference/`) since a resumed
run holds later weights.
"""

from __future__ import annotations

from typing import Any

import jax
from flax import nnx

from tunixrt.algorithms.grpo_update import frozen_copy, logprobs, logprobs_without_adapters
from tunixrt.checkpoint import Checkpointer
from tunixrt.models import Decoder

REFERENCE_FOLDER = "reference"  # beside the step folders: a full-weight run's reference


class Reference:
    def __init__(self, model: Decoder, *, lora: bool) -> None:
        self.model, self.lora = model, lora
        self._copy: Decoder | None = None  # without LoRA, once started or restored

    def start(self, ck: Checkpointer | None) -> None:
        """At a fresh start: the current weights are the reference, saved into `ck`'s
        folder for resumes (None: kept in memory only, as the benchmark does)."""
        if not self.lora:
            self._copy = frozen_copy(self.model)
            if ck is not None:
                ck.save_base(_params(self._copy), folder=REFERENCE_FOLDER)

    def restore(self, ck: Checkpointer) -> None:
        """On resume: the reference the run saved when it started."""
        if not self.lora:
            self._copy = frozen_copy(self.model)
            state = nnx.state(self._copy, nnx.Param)
            nnx.replace_by_pure_dict(state, ck.restore_base(_params(self._copy), REFERENCE_FOLDER))
            nnx.update(self._copy, state)

    def logprobs(self, inputs: jax.Array, targets: jax.Array) -> jax.Array:
        """log p(target) under the reference: [rows, seq]."""
        if self.lora:
            return logprobs_without_adapters(self.model, inputs, targets)
        assert self._copy is not None, "start or restore the reference first"
        return logprobs(self._copy, inputs, targets)


def _params(model: nnx.Module) -> dict[str, Any]:
    return nnx.to_pure_dict(nnx.state(model, nnx.Param))
