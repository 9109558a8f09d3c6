"""Orbax checkpoints of a run: array state (model and optimizer) plus JSON metadata.

Each step folder holds two items:
  state  the model's and the optimizer's arrays (orbax StandardSave, no pickle); under
         LoRA only what training changes (adapters), see `tunixrt.lora_base`
  meta   JSON: step, data iterator position, loop state, config and its hash, versions,
         and the LoRA base reference

Orbax writes a step into a temporary folder and renames it when complete, so a save cut
short by a kill never shows up as a step. A step folder damaged afterwards (a missing,
truncated or garbled file) is renamed to corrupt-STEP on resume, with a warning, and
the run resumes from the step before it and writes that step again. Any other failure
to read (permission denied, out of memory, an I/O error) raises.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import jax
import orbax.checkpoint as ocp
from flax import nnx
from flax.nnx import filterlib
from orbax.checkpoint import checkpoint_managers as policies

from tunixrt.models.lora import FROZEN_BASE

log = logging.getLogger(__name__)
T = TypeVar("T")

ITEMS = ("state", "meta")
BASE_FOLDER = "base"  # beside the step folders: a LoRA run's base weights, when saved
# tensorstore raises ValueError("CODE: ...") when it cannot read an array. These codes
# are what truncated, zeroed or deleted array, index and manifest files give; others
# (PERMISSION_DENIED, RESOURCE_EXHAUSTED for out of memory, UNAVAILABLE for EIO) are
# not damage.
_DAMAGE_CODES = ("DATA_LOSS", "OUT_OF_RANGE", "FAILED_PRECONDITION", "NOT_FOUND")


def _model_variables(adapters_only: bool) -> filterlib.Filter:
    return nnx.Not(FROZEN_BASE) if adapters_only else ...


def train_state(
    model: nnx.Module, optimizer: nnx.Optimizer, *, adapters_only: bool = False
) -> dict[str, Any]:
    """The arrays a checkpoint stores, as a plain nested dict: the whole model, or with
    `adapters_only` all of it but the frozen LoRA base."""
    return {
        "model": model_state(model, adapters_only=adapters_only),
        "optimizer": nnx.to_pure_dict(nnx.state(optimizer)),
    }


def model_state(model: nnx.Module, *, adapters_only: bool = False) -> dict[str, Any]:
    """The model's part of `train_state`."""
    return nnx.to_pure_dict(nnx.state(model, _model_variables(adapters_only)))


def load_train_state(
    model: nnx.Module,
    optimizer: nnx.Optimizer | None,
    arrays: dict[str, Any],
    *,
    adapters_only: bool = False,
) -> None:
    """Put restored arrays (shaped like `train_state`) back into the live objects."""
    for obj, key, which in (
        (model, "model", _model_variables(adapters_only)),
        (optimizer, "optimizer", ...),
    ):
        if obj is None:
            continue
        state = nnx.state(obj, which)
        nnx.replace_by_pure_dict(state, arrays[key])
        nnx.update(obj, state)


def damage(err: BaseException) -> str | None:
    """Why the files a read failed on are damaged, judged by what the read raised; None
    when the failure is not damage (and must not be skipped)."""
    while type(err) is Exception and err.__cause__ is not None:
        err = err.__cause__  # orbax wraps a failed read into jax arrays in a bare Exception
    if isinstance(err, json.JSONDecodeError | UnicodeDecodeError):
        return f"garbled JSON: {err}"  # UnicodeDecodeError: binary bytes in a JSON file
    if isinstance(err, FileNotFoundError):
        return f"missing file: {err}"
    if isinstance(err, ValueError) and str(err).split(":", 1)[0] in _DAMAGE_CODES:
        return str(err)
    return None


@dataclass
class Restored:
    step: int
    arrays: dict[str, Any]
    meta: dict[str, Any]


class CheckpointDamaged(RuntimeError):
    """No complete checkpoint in the folder could be read."""


class StepDamaged(Exception):
    """The files of one step are damaged: missing, truncated or garbled."""

    def __init__(self, step: int, reason: str) -> None:
        super().__init__(f"checkpoint step {step} is damaged: {reason}")
        self.step, self.reason = step, reason


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
        self.best_metric = best_metric
        self.read_only = read_only
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
        # A step saved without the best metric (evaluated at another cadence) competes
        # only as one of the newest.
        if self.best_metric is not None and metrics and self.best_metric not in metrics:
            metrics = None
        self._manager.save(step, args=args, metrics=metrics, force=True)
        return time.perf_counter() - start

    def steps(self) -> list[int]:
        self._manager.reload()
        return sorted(self._manager.all_steps())

    def read_meta(self, step: int) -> dict[str, Any]:
        restored = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return dict(restored.meta)

    def restore(self, step: int, target: dict[str, Any]) -> Restored:
        """Arrays shaped and placed like `target`, and the metadata, of `step`. Each
        array is read straight into `target`'s sharding, whatever mesh saved it."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        args = ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
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
        """The newest step whose metadata reads back, setting damaged ones aside."""
        for step in reversed(self.steps()):
            try:
                return step, self.checked(step, partial(self.read_meta, step))
            except StepDamaged as err:
                self.set_aside(err)
        return None

    def restore_newest(self, target: dict[str, Any], *, at_most: int | None = None) -> Restored:
        """The newest complete checkpoint (at or before `at_most`), setting damaged
        ones aside."""
        for step in reversed(self.steps()):
            if at_most is not None and step > at_most:
                continue
            try:
                return self.checked(step, partial(self.restore, step, target))
            except StepDamaged as err:
                self.set_aside(err)
        raise CheckpointDamaged(f"{self.directory}: no checkpoint could be restored")

    def checked(self, step: int, read: Callable[[], T]) -> T:
        """`read()` of `step`, raising StepDamaged when its files are damaged; any other
        error passes through."""
        folder = self.directory / str(step)
        missing = [item for item in ITEMS if not (folder / item).is_dir()]
        if missing:
            raise StepDamaged(step, f"missing item folder(s) {missing}")
        try:
            return read()
        except Exception as err:  # judged by `damage`; raised again unless damage
            reason = damage(err)
            if reason is None:
                raise
            raise StepDamaged(step, reason) from err

    def set_aside(self, err: StepDamaged) -> None:
        """Rename a damaged step folder to corrupt-STEP, which orbax does not list as a
        step, so training writes that step again. A read-only checkpointer only skips it."""
        folder = self.directory / str(err.step)
        if self.read_only:
            log.warning("%s; skipping %s", err, folder)
            return
        aside = self.directory / f"corrupt-{err.step}"
        copies = 1
        while aside.exists():  # the same step damaged again after a rewrite
            copies += 1
            aside = self.directory / f"corrupt-{err.step}.{copies}"
        folder.rename(aside)
        self._manager.reload()
        log.warning("%s; moved it to %s and trying the step before it", err, aside)

    def save_base(self, arrays: dict[str, Any], folder: str = BASE_FOLDER) -> Path:
        """Write weights the whole run refers to once into `folder` (replacing any),
        synchronously: a LoRA run's frozen base (BASE_FOLDER), or GRPO's reference."""
        path = self.directory / folder
        with ocp.StandardCheckpointer() as writer:
            writer.save(path, arrays, force=True)
            writer.wait_until_finished()
        return path

    def restore_base(self, target: dict[str, Any], folder: str = BASE_FOLDER) -> dict[str, Any]:
        """The weights `save_base` wrote into `folder`, shaped (and placed) like
        `target`. There is no other copy, so damage raises CheckpointDamaged."""
        path = self.directory / folder
        try:
            with ocp.StandardCheckpointer() as reader:
                return dict(reader.restore(path, target))
        except Exception as err:  # judged by `damage`; raised again unless damage
            reason = damage(err)
            if reason is None:
                raise
            raise CheckpointDamaged(
                f"{path}: the saved {folder} weights are damaged: {reason}"
            ) from err

    def wait(self) -> float:
        """Block until pending saves are on disk; returns the seconds waited."""
        start = time.perf_counter()
        self._manager.wait_until_finished()
        return time.perf_counter() - start

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()
