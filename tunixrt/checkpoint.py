"""Orbax checkpoints of a run: array state (model and optimizer) plus JSON metadata.

Each step folder holds two items:
  state  the model's and the optimizer's arrays (orbax StandardSave, no pickle)
  meta   JSON: step, data iterator position, loop state, config and its hash, versions

Orbax writes a step into a temporary folder and renames it when complete, so a save cut
short by a kill never shows up as a step; a step folder damaged afterwards is skipped
on restore in favour of the one before it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orbax.checkpoint as ocp
from flax import nnx
from orbax.checkpoint import checkpoint_managers as policies

log = logging.getLogger(__name__)


def train_state(model: nnx.Module, optimizer: nnx.Optimizer) -> dict[str, Any]:
    """The arrays a checkpoint stores, as a plain nested dict."""
    return {
        "model": nnx.to_pure_dict(nnx.state(model)),
        "optimizer": nnx.to_pure_dict(nnx.state(optimizer)),
    }


def load_train_state(
    model: nnx.Module, optimizer: nnx.Optimizer | None, arrays: dict[str, Any]
) -> None:
    """Put restored arrays (shaped like `train_state`) back into the live objects."""
    for obj, key in ((model, "model"), (optimizer, "optimizer")):
        if obj is None:
            continue
        state = nnx.state(obj)
        nnx.replace_by_pure_dict(state, arrays[key])
        nnx.update(obj, state)


@dataclass
class Restored:
    step: int
    arrays: dict[str, Any]
    meta: dict[str, Any]


class CheckpointDamaged(RuntimeError):
    """No complete checkpoint in the folder could be read."""


def _preservation(keep: int, best_metric: str | None, best_mode: str) -> Any:
    latest = policies.LatestN(n=keep)
    if best_metric is None:
        return latest
    best = policies.BestN(
        get_metric_fn=lambda metrics: metrics[best_metric],
        reverse=best_mode == "min",  # sorted descending, so the last (kept) one is the lowest
        n=1,
        keep_checkpoints_without_metrics=False,
    )
    return policies.AnyPreservationPolicy([latest, best])


class Checkpointer:
    """Periodic, asynchronous saves into `directory`, keeping the newest `keep` (and the
    best by `best_metric` when set)."""

    def __init__(
        self,
        directory: str | Path,
        *,
        every_steps: int,
        keep: int,
        best_metric: str | None = None,
        best_mode: str = "min",
        read_only: bool = False,
    ) -> None:
        self.directory = Path(directory).resolve()
        self.every_steps = every_steps
        options = ocp.CheckpointManagerOptions(
            create=not read_only,
            read_only=read_only,
            enable_async_checkpointing=True,
            preservation_policy=_preservation(keep, best_metric, best_mode),
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "meta")
        )

    def due(self, step: int) -> bool:
        return self.every_steps > 0 and step % self.every_steps == 0

    def save(
        self,
        step: int,
        state: dict[str, Any],
        meta: dict[str, Any],
        metrics: dict[str, float] | None = None,
    ) -> float:
        """Start writing `step` and return the seconds the caller was blocked: orbax
        copies the arrays to host memory, then writes them in a background thread."""
        if step in self._manager.all_steps():
            return 0.0
        start = time.perf_counter()
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
        self._manager.save(step, args=args, metrics=metrics, force=True)
        return time.perf_counter() - start

    def steps(self) -> list[int]:
        self._manager.reload()
        return sorted(self._manager.all_steps())

    def read_meta(self, step: int) -> dict[str, Any]:
        restored = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return dict(restored.meta)

    def restore(self, step: int, target: dict[str, Any]) -> Restored:
        """Arrays shaped (and placed) like `target`, and the metadata, of `step`."""
        args = ocp.args.Composite(
            state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()
        )
        restored = self._manager.restore(step, args=args)
        return Restored(step, restored.state, dict(restored.meta))

    def restore_model(self, step: int, target: dict[str, Any]) -> dict[str, Any]:
        """Only the model's arrays of `step` (no optimizer state), shaped like `target`."""
        item = {"model": target}
        restore_args = ocp.checkpoint_utils.construct_restore_args(item)
        args = ocp.args.Composite(
            state=ocp.args.PyTreeRestore(item, restore_args=restore_args, partial_restore=True)
        )
        return dict(self._manager.restore(step, args=args).state["model"])

    def newest_readable_meta(self) -> tuple[int, dict[str, Any]] | None:
        """The newest step whose metadata reads back, skipping damaged ones."""
        for step in reversed(self.steps()):
            try:
                return step, self.read_meta(step)
            except Exception as err:  # orbax raises many types for a broken folder
                log.warning("checkpoint %d is unreadable (%s); trying the one before", step, err)
        return None

    def restore_newest(self, target: dict[str, Any], *, at_most: int | None = None) -> Restored:
        """The newest complete checkpoint (at or before `at_most`), falling back past
        damaged ones."""
        for step in reversed(self.steps()):
            if at_most is not None and step > at_most:
                continue
            try:
                return self.restore(step, target)
            except Exception as err:  # orbax raises many types for a broken folder
                log.warning("checkpoint %d is unreadable (%s); trying the one before", step, err)
        raise CheckpointDamaged(f"{self.directory}: no checkpoint could be restored")

    def wait(self) -> float:
        """Block until pending saves are on disk; returns the seconds waited."""
        start = time.perf_counter()
        self._manager.wait_until_finished()
        return time.perf_counter() - start

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()
