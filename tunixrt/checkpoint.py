"""Orbax checkpoints of a run: array state (model and optimizer) plus JSON metadata.

Each step folder holds two items:
  state  the model's and the optimizer's arrays (orbax StandardSave, no pickle)
  meta   JSON: step, data iterator position, config hash, package versions, ...
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import orbax.checkpoint as ocp
from flax import nnx

log = logging.getLogger(__name__)


def train_state(model: nnx.Module, optimizer: nnx.Optimizer) -> dict[str, Any]:
    """The arrays a checkpoint stores, as a plain nested dict."""
    return {
        "model": nnx.to_pure_dict(nnx.state(model)),
        "optimizer": nnx.to_pure_dict(nnx.state(optimizer)),
    }


class Checkpointer:
    """Periodic, asynchronous saves into `directory`, keeping the newest `keep`."""

    def __init__(self, directory: str | Path, *, every_steps: int, keep: int) -> None:
        self.directory = Path(directory).resolve()
        self.every_steps = every_steps
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, enable_async_checkpointing=True
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "meta")
        )

    def due(self, step: int) -> bool:
        return self.every_steps > 0 and step % self.every_steps == 0

    def save(self, step: int, state: dict[str, Any], meta: dict[str, Any]) -> None:
        """Start writing `step`; the arrays are copied first, so training may go on."""
        if step in self._manager.all_steps():
            return
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
        self._manager.save(step, args=args)
        log.debug("checkpoint of step %d started", step)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def restore(self, step: int, target: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Arrays shaped like `target` and the metadata of `step`."""
        args = ocp.args.Composite(
            state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()
        )
        restored = self._manager.restore(step, args=args)
        return restored.state, restored.meta

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()
