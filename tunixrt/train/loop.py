"""The training loop: `train(cfg)` starts or resumes a run, steps, logs, evaluates and
saves, and stops cleanly on SIGTERM or Ctrl-C."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import numpy as np
from omegaconf import DictConfig, OmegaConf

from tunixrt.checkpoint import Checkpointer, load_train_state, train_state
from tunixrt.config import FINAL_METRICS, TrainConfig, validate
from tunixrt.data.batching import IteratorState
from tunixrt.devices import Devices, setup_devices
from tunixrt.registry import RegistryWriter, RunRecorder, mask_config
from tunixrt.tensorboard import TensorBoardWriter, truncate_after
from tunixrt.train.metrics import Throughput
from tunixrt.train.progress import ProgressDisplay
from tunixrt.train.resume import check_compatible, check_policy
from tunixrt.train.setup import Setup, enable_compile_cache, evaluate, setup, to_device
from tunixrt.train.signals import Preempted, StopRequest
from tunixrt.train.state import LoopState, checkpoint_meta
from tunixrt.train.step import lora_train_step, train_step
from tunixrt.train.tracking import (
    hparams,
    hydra_overrides,
    mask_hydra_files,
    quiet_libraries,
    start_recording,
)
from tunixrt.writers import MetricWriter, MultiWriter

log = logging.getLogger(__name__)


class NonFiniteError(FloatingPointError):
    """A step produced a NaN or an infinite loss or gradient; nothing after it is saved."""


@dataclass
class TrainResult:
    run_dir: Path
    final_step: int
    final_eval_loss: float | None
    resumed_from: int | None = None
    train_losses: dict[int, float] = field(default_factory=dict)  # logged steps of this start

    def metric(self, name: str) -> float | None:
        """A final metric by its TensorBoard tag: eval/loss or train/loss."""
        if name == "eval/loss":
            return self.final_eval_loss
        if name == "train/loss" and self.train_losses:
            return self.train_losses[max(self.train_losses)]
        return None


@dataclass
class Run:
    """A setup plus its loop state and where results go."""

    setup: Setup
    run_dir: Path
    config: dict[str, Any]  # resolved, JSON-ready; stored in every checkpoint
    loop: LoopState
    writer: MetricWriter
    checkpointer: Checkpointer
    recorder: RunRecorder | None = None
    tb: TensorBoardWriter | None = None
    pending: list[tuple[int, dict[str, jax.Array]]] = field(default_factory=list)


def hydra_run_dir() -> Path:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def config_dict(cfg: TrainConfig) -> dict[str, Any]:
    out = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True, enum_to_str=True)
    assert isinstance(out, dict)
    return {str(k): v for k, v in out.items()}


def _check_finite(run: Run) -> None:
    """Raise at the first step since the last check whose loss or gradients were not
    finite. The optimizer skipped that step's update, so the state is still good, but
    nothing after it is saved."""
    flags = jax.device_get([m for _, m in run.pending])
    for (step, _), m in zip(run.pending, flags, strict=True):
        if not bool(m["finite"]):
            raise NonFiniteError(
                f"step {step}: non-finite training loss {float(m['loss'])} or gradient norm "
                f"{float(m['grad_norm'])}; the run stops here and the last checkpoint "
                f"(step {max(run.checkpointer.steps(), default=0)}) stays as it was"
            )
    run.pending.clear()


def _train_scalars(run: Run, step: int, throughput: Throughput) -> dict[str, float]:
    _, metrics = run.pending[-1]
    _check_finite(run)
    host = {k: float(v) for k, v in jax.device_get(metrics).items()}
    return {
        "train/loss": host["loss"],
        "train/grad_norm": host["grad_norm"],
        "train/lr": float(run.setup.schedule(step - 1)),
        **throughput.interval(step),
    }


def _eval(run: Run, step: int) -> float | None:
    _check_finite(run)
    loss = evaluate(run.setup)
    if loss is not None:
        run.loop.record_eval(loss)
        run.writer.write_scalars(step, {"eval/loss": loss})
        log.info("step %d: eval loss %.4f", step, loss)
    return loss


def _save(run: Run, step: int, eval_loss: float | None) -> None:
    _check_finite(run)
    s = run.setup
    meta = checkpoint_meta(run.loop, s.data.train.state.to_dict(), run.config, s.model)
    metrics = None if eval_loss is None else {"eval/loss": eval_loss}
    blocked = run.checkpointer.save(step, train_state(s.model, s.optimizer), meta, metrics)
    log.debug("checkpoint of step %d started; the loop waited %.3fs", step, blocked)
    if run.recorder is not None:
        run.recorder.checkpoint(step, str(run.checkpointer.directory / str(step)), metrics)


def _stop(run: Run, stop: StopRequest) -> None:
    """After a signal: save, flush, and leave with `Preempted`."""
    step = run.loop.step
    _save(run, step, None)
    run.checkpointer.wait()
    run.writer.flush()
    assert stop.requested is not None
    raise Preempted(stop.requested, step, str(run.run_dir))


def _one_step(run: Run, throughput: Throughput) -> dict[str, jax.Array]:
    s = run.setup
    batch = next(s.data.train)
    tokens = int(np.count_nonzero(batch["segment_ids"]))
    step_fn = lora_train_step if s.cfg.model.lora.rank > 0 else train_step
    metrics = step_fn(s.model, s.optimizer, to_device(batch, s))
    run.loop.step += 1
    run.loop.tokens_seen += tokens
    throughput.add_tokens(tokens)
    run.pending.append((run.loop.step, metrics))
    return metrics


def fit(run: Run, result: TrainResult) -> None:
    t = run.setup.cfg.trainer
    throughput = Throughput()
    first = run.loop.step + 1
    with StopRequest() as stop, ProgressDisplay(t.progress, t.max_steps, run.loop.step) as bar:
        while run.loop.step < t.max_steps:
            metrics = _one_step(run, throughput)
            step = run.loop.step
            if step == first:
                throughput.first_step_done(metrics)
            scalars = None
            if step == first or step % t.log_every == 0 or step == t.max_steps:
                scalars = _train_scalars(run, step, throughput)
                result.train_losses[step] = scalars["train/loss"]
                run.writer.write_scalars(step, scalars)
            bar.update(step, scalars)
            eval_loss = None
            if (t.eval_every and step % t.eval_every == 0) or step == t.max_steps:
                eval_loss = _eval(run, step)
            if run.checkpointer.due(step) or step == t.max_steps:
                _save(run, step, eval_loss)
            if stop.requested:
                _stop(run, stop)
    result.final_step = run.loop.step
    result.final_eval_loss = run.loop.last_eval_loss


def _resume_point(
    cfg: TrainConfig, config: dict[str, Any], ck: Checkpointer, folder: Path
) -> tuple[int, dict[str, Any]] | None:
    """The checkpoint step and metadata to resume from, or None to start fresh."""
    newest = ck.newest_readable_meta()
    if not check_policy(cfg.run.resume, None if newest is None else newest[0], str(folder)):
        return None
    assert newest is not None
    check_compatible(newest[1]["config"], config, str(folder))
    return newest


def _restore(run: Run, at_most: int) -> int:
    s = run.setup
    restored = run.checkpointer.restore_newest(train_state(s.model, s.optimizer), at_most=at_most)
    load_train_state(s.model, s.optimizer, restored.arrays)
    s.data.train.restore(IteratorState.from_dict(restored.meta["data"]))
    run.loop = LoopState.from_dict(restored.meta["loop"])
    dropped = truncate_after(run.run_dir / "tb", restored.step)
    log.info(
        "resumed from step %d (%s)%s",
        restored.step,
        run.checkpointer.directory,
        f"; dropped {dropped} TensorBoard events logged after it" if dropped else "",
    )
    return restored.step


def _checkpointer(cfg: TrainConfig, folder: Path) -> Checkpointer:
    ck = cfg.checkpoint
    return Checkpointer(
        folder / "checkpoints",
        every_steps=ck.every_steps,
        keep=ck.keep,
        best_metric=ck.keep_best_metric,
        best_mode=ck.best_mode.value,
    )


def _open(
    cfg: TrainConfig,
    folder: Path,
    config: dict[str, Any],
    devices: Devices,
    checkpointer: Checkpointer,
    newest: tuple[int, dict[str, Any]] | None,
) -> Run:
    """Build the setup and restore the checkpoint `newest` points at, if any."""
    horizon = newest[1]["loop"]["schedule_steps"] if newest else cfg.trainer.max_steps
    s = setup(cfg, schedule_steps=horizon, devices=devices)
    loop_state = LoopState(schedule_steps=horizon)
    run = Run(s, folder, config, loop_state, MultiWriter([]), checkpointer)
    if newest is not None:
        _restore(run, newest[0])
    return run


def _attach_writers(run: Run, fresh: bool) -> None:
    tb = TensorBoardWriter(run.run_dir / "tb")
    if fresh:
        tb.write_text(0, "config", "```\n" + OmegaConf.to_yaml(run.config) + "```")
        tb.write_hparams(hparams(run.config, hydra_overrides()), list(FINAL_METRICS))
    run.tb = tb
    writers: list[MetricWriter] = [tb]
    if run.recorder is not None:
        writers.append(RegistryWriter(run.recorder))
    run.writer = MultiWriter(writers)


def _finish(recorder: RunRecorder | None, status: str, step: int, error: str | None = None):
    if recorder is not None and not recorder.finish(status, error=error, last_step=step):
        log.warning("the registry could not record the end of this run (%s)", status)


def train(cfg: DictConfig | TrainConfig, run_dir: str | Path | None = None) -> TrainResult:
    """Train from a composed config, resuming from the run folder's newest checkpoint
    when `run.resume` allows; `run_dir` defaults to Hydra's output folder.

    The run is registered before anything compiles; whatever happens after that ends
    in the registry as completed, preempted (a signal) or failed (with the error).
    """
    folder = Path(run_dir) if run_dir is not None else hydra_run_dir()
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    quiet_libraries()
    mask_hydra_files(folder)
    typed = validate(cfg)
    enable_compile_cache(typed.device.compile_cache_dir)
    config = mask_config(config_dict(typed))
    devices = setup_devices(typed.device)
    checkpointer = _checkpointer(typed, folder)
    newest = _resume_point(typed, config, checkpointer, folder)
    resume_step = newest[0] if newest else None
    recorder = start_recording(typed, config, folder, devices, resume_step)
    run: Run | None = None
    try:
        run = _open(typed, folder, config, devices, checkpointer, newest)
        run.recorder = recorder
        _attach_writers(run, fresh=newest is None)
        resumed = run.loop.step if newest else None
        result = TrainResult(folder, run.loop.step, run.loop.last_eval_loss, resumed)
        if run.loop.step < typed.trainer.max_steps:
            fit(run, result)
            assert run.tb is not None
            run.tb.write_session_end(completed=True)
        else:
            log.info(
                "nothing to do: the run is at step %d of %d", run.loop.step, typed.trainer.max_steps
            )
    except Preempted as stop:
        _finish(recorder, "preempted", stop.step)
        raise
    except BaseException as err:
        _finish(recorder, "failed", run.loop.step if run else 0, f"{type(err).__name__}: {err}")
        raise
    finally:
        checkpointer.close()
        if run is not None:
            run.writer.close()
    _finish(recorder, "completed", result.final_step)
    _report(result, folder, checkpointer, time.perf_counter() - started)
    return result


def _report(result: TrainResult, folder: Path, ck: Checkpointer, seconds: float) -> None:
    loss = "n/a" if result.final_eval_loss is None else f"{result.final_eval_loss:.4f}"
    log.info("finished at step %d in %.1fs; final eval loss %s", result.final_step, seconds, loss)
    log.info("run folder:  %s", folder.resolve())
    log.info("tensorboard: tensorboard --logdir %s", (folder / "tb").resolve())
    log.info("checkpoints: %s", ck.directory)
