"""What the training loop asks of a post-training algorithm (algorithm=grpo, dpo): one
optimizer step at a time, its own resume state and reference, and held-out metrics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from flax import nnx

from tunixrt.algorithms.prompts import PromptOrder
from tunixrt.algorithms.reference import Reference
from tunixrt.checkpoint import Checkpointer
from tunixrt.config import TrainConfig
from tunixrt.devices import Devices
from tunixrt.evaluation.generate import Tokenizer
from tunixrt.models import Decoder


@dataclass(frozen=True)
class Context:
    """What an algorithm's step works on, built by the loop's setup."""

    cfg: TrainConfig
    model: Decoder  # the policy, placed on the mesh
    optimizer: nnx.Optimizer
    tokenizer: Tokenizer
    wrt: type[nnx.Variable]  # what the optimizer updates: nnx.Param, or nnx.LoRAParam
    # the mesh: batches built on the host go on it through devices.put_batch
    devices: Devices


@dataclass
class StepResult:
    metrics: dict[str, Any]  # loss, grad_norm, finite, and the algorithm's own scalars
    tokens: int  # tokens trained on (in the loss)


class AlgorithmStep(Protocol):
    def step(self, n: int) -> StepResult:
        """Optimizer step n (1-based): its data depends on n and the saved state only."""
        ...

    def state(self) -> dict[str, int]: ...  # saved in every checkpoint's meta

    def restore(self, state: dict[str, Any]) -> None: ...

    def start_reference(self, ck: Checkpointer | None) -> None: ...  # a fresh start

    def restore_reference(self, ck: Checkpointer) -> None: ...  # a resume

    def evaluate(self) -> dict[str, float]:
        """Held-out metrics, at the loop's eval cadence ({} when there are none)."""
        ...


class OrderedStep:
    """What GRPO and DPO share: an order over their items (prompts, pairs), saved with
    each checkpoint, and an optional reference (None: the algorithm needs none)."""

    order: PromptOrder
    reference: Reference | None

    def start_reference(self, ck: Checkpointer | None) -> None:
        if self.reference is not None:
            self.reference.start(ck)

    def restore_reference(self, ck: Checkpointer) -> None:
        if self.reference is not None:
            self.reference.restore(ck)

    def state(self) -> dict[str, int]:
        return self.order.state()

    def restore(self, state: dict[str, Any]) -> None:
        self.order.restore(state)
