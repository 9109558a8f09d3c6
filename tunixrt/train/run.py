"""One start of a run, built whole: the setup, its loop state (fresh, or restored from
the newest readable checkpoint), the checkpointer, the metric writers and the registry
row. `open_run` opens them in order and closes them in reverse, whatever happens; the
registry row ends as completed, preempted or failed on the way out."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
from omegaconf import OmegaConf

from tunixrt.checkpoint import Checkpointer, load_train_state, train_state
from tunixrt.config import FINAL_METRICS, TrainConfig
from tunixrt.data.batching import IteratorState
from tunixrt.devices import is_primary, setup_devices
from tunixrt.lora_base import load_base, record_base
from tunixrt.registry import RegistryWriter, RunRecorder, mask_config
from tunixrt.tensorboard import TensorBoardWriter, truncate_after
from tunixrt.train.context import RunContext
from tunixrt.train.hparams import hparams
from tunixrt.train.init_from import find_origin, start_from
from tunixrt.train.lock import RunLock
from tunixrt.train.registration import Recording, start_recording
from tunixrt.train.resume import check_compatible, check_policy, with_defaults
from tunixrt.train.setup import Setup, setup
from tunixrt.train.state import LoopState
from tunixrt.writers import MetricWriter, MultiWriter

log = logging.getLogger(__name__)


@dataclass
class Run:
    setup: Setup
    context: RunContext
    config: dict[str, Any]  # resolved, masked, JSON-ready; stored in every checkpoint
    loop: LoopState
    checkpointer: Checkpointer
    tb: TensorBoardWriter | None  # None on every process but the primary
    writer: MetricWriter  # TensorBoard and the registry (the primary's; others write none)
    recorder: RunRecorder | None
    resumed_from: int | None  # the checkpoint step this start continued from
    # The LoRA base reference every checkpoint's meta stores (see tunixrt.lora_base);
    # None: checkpoints hold the whole model.
    base: dict[str, Any] | None
    # (step, metrics) of the steps since the last host read of their finite flags
    pending: list[tuple[int, dict[str, jax.Array]]] = field(default_factory=list)

    @property
    def run_dir(self) -> Path:
        return self.context.run_dir


def config_dict(cfg: TrainConfig) -> dict[str, Any]:
    out = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True, enum_to_str=True)
    assert isinstance(out, dict)
    return {str(k): v for k, v in out.items()}


@contextmanager
def open_run(cfg: TrainConfig, context: RunContext) -> Iterator[Run]:
    """Everything a start of the run computes with and writes to. Input errors about
    the folder's checkpoints surface before the registry hears of the run; every error
    after that is recorded as the run's failure.

    In a multi-process run (`device.distributed`) every process computes, restores and
    saves checkpoints together; only the primary (process 0) holds the folder's lock and
    writes TensorBoard and the registry."""
    folder = context.run_dir
    config = mask_config(config_dict(cfg))
    devices = setup_devices(cfg.device)
    primary = is_primary()
    with ExitStack() as stack:
        if primary:
            stack.enter_context(RunLock(folder))  # before reading what another run may write
        checkpointer = stack.enter_context(closing(_checkpointer(cfg, folder)))
        newest = _resume_point(cfg, config, checkpointer, folder)
        resume_step = newest[0] if newest else None
        origin = find_origin(cfg) if newest is None else None
        recording = stack.enter_context(
            start_recording(cfg, config, context, devices, resume_step, origin)
            if primary
            else Recording(None, None, resume_step)
        )
        horizon = newest[1]["loop"]["schedule_steps"] if newest else cfg.trainer.max_steps
        s = setup(cfg, schedule_steps=horizon, devices=devices)
        if newest is None:
            if origin is not None:
                start_from(origin, s.model, s.data.tokenizer)
            loop = LoopState(schedule_steps=horizon)
            base = _fresh_base(s, checkpointer, started_from=origin is not None)
            if s.algorithm is not None:
                s.algorithm.start_reference(checkpointer)
        else:
            loop, base = _restore(s, checkpointer, folder, newest, recording)
        recording.step = lambda: loop.step
        resumed_from = loop.step if resume_step is not None else None
        tb = stack.enter_context(closing(TensorBoardWriter(folder / "tb"))) if primary else None
        if tb is not None and resume_step is None:
            _describe(tb, config, context)
        writers: list[MetricWriter] = [] if tb is None else [tb]
        if recording.recorder is not None:
            writers.append(RegistryWriter(recording.recorder))
        writer = MultiWriter(writers)
        stack.callback(writer.flush)
        yield Run(
            s,
            context,
            config,
            loop,
            checkpointer,
            tb,
            writer,
            recording.recorder,
            resumed_from,
            base,
        )


def _checkpointer(cfg: TrainConfig, folder: Path) -> Checkpointer:
    ck = cfg.checkpoint
    return Checkpointer(
        folder / "checkpoints",
        every_steps=ck.every_steps,
        keep=ck.keep,
        best_metric=ck.keep_best_metric,
        best_mode=ck.mode,
    )


def _resume_point(
    cfg: TrainConfig, config: dict[str, Any], ck: Checkpointer, folder: Path
) -> tuple[int, dict[str, Any]] | None:
    """The checkpoint step and metadata to resume from, or None to start fresh."""
    newest = ck.newest_readable_meta()
    if not check_policy(cfg.run.resume, None if newest is None else newest[0], str(folder)):
        return None
    assert newest is not None
    check_compatible(with_defaults(newest[1]["config"]), config, str(folder))
    return newest


def _fresh_base(s: Setup, ck: Checkpointer, *, started_from: bool) -> dict[str, Any] | None:
    """A LoRA run's base reference (its base saved, unless it is model.path's weights
    as they are); None without LoRA."""
    if s.cfg.model.lora.rank == 0:
        return None
    return record_base(None if started_from else s.cfg.model.path, s.model, ck)


def _restore(
    s: Setup,
    ck: Checkpointer,
    folder: Path,
    newest: tuple[int, dict[str, Any]],
    recording: Recording,
) -> tuple[LoopState, dict[str, Any] | None]:
    """Put the newest readable checkpoint (at most step `newest[0]`, whose meta is
    `newest[1]`) into the setup, with the LoRA base it names; record the step restored
    in the registry and drop the TensorBoard events logged after it, so every step
    shows once. Returns the loop state and the base reference."""
    at_most, meta = newest
    base = meta.get("base")
    if base is not None:
        load_base(base, s.model, ck)
    adapters_only = base is not None
    target = train_state(s.model, s.optimizer, adapters_only=adapters_only)
    restored = ck.restore_newest(target, at_most=at_most)
    load_train_state(s.model, s.optimizer, restored.arrays, adapters_only=adapters_only)
    s.data.train.restore(IteratorState.from_dict(restored.meta["data"]))
    if s.algorithm is not None:
        s.algorithm.restore(restored.meta["algorithm"])
        s.algorithm.restore_reference(ck)
    recording.resumed_at(restored.step)
    dropped = truncate_after(folder / "tb", restored.step) if is_primary() else 0
    log.info(
        "resumed from step %d (%s)%s",
        restored.step,
        ck.directory,
        f"; dropped {dropped} TensorBoard events logged after it" if dropped else "",
    )
    return LoopState.from_dict(restored.meta["loop"]), base


def _describe(tb: TensorBoardWriter, config: dict[str, Any], context: RunContext) -> None:
    """The config as text and the HParams record, once per run (not per resume)."""
    tb.write_text(0, "config", "```\n" + OmegaConf.to_yaml(config) + "```")
    tb.write_hparams(hparams(config, context.overrides), list(FINAL_METRICS))
