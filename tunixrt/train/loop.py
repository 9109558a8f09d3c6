"""The training loop: `train(cfg)` sets a run up, steps, logs, evaluates and saves."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import jax
import numpy as np
import optax
from flax import nnx
from omegaconf import DictConfig, OmegaConf

from tunixrt.checkpoint import Checkpointer, train_state
from tunixrt.config import ConfigError, TrainConfig, validate
from tunixrt.data.batching import Batch
from tunixrt.data.pipeline import Data, load_data
from tunixrt.devices import Devices, setup_devices
from tunixrt.models.factory import build_model
from tunixrt.optim import make_optimizer
from tunixrt.tensorboard import TensorBoardWriter
from tunixrt.train.metrics import Throughput
from tunixrt.train.progress import ProgressDisplay
from tunixrt.train.step import eval_step, train_step
from tunixrt.writers import MetricWriter, MultiWriter

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_dir: Path
    final_step: int
    final_eval_loss: float | None
    train_losses: dict[int, float] = field(default_factory=dict)  # logged steps only


@dataclass
class Setup:
    """What training computes with: built by `setup`, shared by `train` and the bench."""

    cfg: TrainConfig
    devices: Devices
    data: Data
    model: nnx.Module
    optimizer: nnx.Optimizer
    schedule: optax.Schedule


@dataclass
class Run:
    """A setup plus where its results go."""

    setup: Setup
    run_dir: Path
    writer: MetricWriter
    checkpointer: Checkpointer


def _quiet_libraries() -> None:
    # orbax logs every file it writes at INFO through absl; jax logs each backend it
    # probes and does not find (TPU on every GPU or CPU machine)
    for name in ("absl", "jax._src.xla_bridge"):
        logging.getLogger(name).setLevel(logging.WARNING)


def hydra_run_dir() -> Path:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def _config_yaml(cfg: DictConfig | TrainConfig) -> str:
    return OmegaConf.to_yaml(
        OmegaConf.structured(cfg) if isinstance(cfg, TrainConfig) else cfg, resolve=True
    )


def setup(cfg: TrainConfig) -> Setup:
    """Load data and build the model: every input error surfaces here, before the
    first compilation."""
    devices = setup_devices(cfg.device)
    t = cfg.trainer
    if (t.batch_size // t.grad_accum) % len(devices.devices):
        raise ConfigError(
            f"trainer.batch_size/trainer.grad_accum = {t.batch_size // t.grad_accum}"
            f" rows must split evenly over {len(devices.devices)} devices"
        )
    data = load_data(
        cfg.dataset,
        rows=t.batch_size,
        seq_len=t.seq_len,
        eval_batches=t.eval_batches,
        seed=cfg.seed,
    )
    model = build_model(
        cfg.model,
        vocab_size=data.tokenizer.vocab_size,
        dtype=devices.compute_dtype,
        seed=cfg.seed,
        devices=devices,
    )
    tx, schedule = make_optimizer(cfg.optimizer, t.max_steps)
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    return Setup(cfg, devices, data, model, optimizer, schedule)


def open_run(s: Setup, raw_cfg: DictConfig | TrainConfig, run_dir: Path) -> Run:
    tb = TensorBoardWriter(run_dir / "tb")
    tb.write_text(0, "config", "```\n" + _config_yaml(raw_cfg) + "```")
    ck = s.cfg.checkpoint
    checkpointer = Checkpointer(run_dir / "checkpoints", every_steps=ck.every_steps, keep=ck.keep)
    return Run(s, run_dir, MultiWriter([tb]), checkpointer)


def to_device(batch: Batch, s: Setup) -> dict[str, jax.Array]:
    """[rows, seq] host arrays -> [accum, rows/accum, seq] arrays split over devices."""
    sharding = s.devices.micro_batch_sharding
    accum = s.cfg.trainer.grad_accum
    return {
        k: jax.device_put(v.reshape(accum, -1, v.shape[-1]), sharding) for k, v in batch.items()
    }


def evaluate(s: Setup) -> float | None:
    """Token-weighted mean loss over the fixed held-out batches."""
    if not s.data.eval_batches:
        return None
    total, count = 0.0, 0.0
    for batch in s.data.eval_batches:
        placed = {k: jax.device_put(v, s.devices.data_sharding) for k, v in batch.items()}
        loss_sum, n = jax.device_get(eval_step(s.model, placed))
        total, count = total + float(loss_sum), count + float(n)
    return total / max(count, 1.0)


def _meta(s: Setup, step: int) -> dict[str, object]:
    return {
        "step": step,
        "data": s.data.train.state.to_dict(),
        "config": OmegaConf.to_container(
            OmegaConf.structured(s.cfg), resolve=True, enum_to_str=True
        ),
    }


def _save(run: Run, step: int) -> None:
    s = run.setup
    run.checkpointer.save(step, train_state(s.model, s.optimizer), _meta(s, step))


def _log_eval(run: Run, step: int) -> float | None:
    loss = evaluate(run.setup)
    if loss is not None:
        run.writer.write_scalars(step, {"eval/loss": loss})
        log.info("step %d: eval loss %.4f", step, loss)
    return loss


def fit(run: Run) -> TrainResult:
    s = run.setup
    t = s.cfg.trainer
    throughput = Throughput()
    result = TrainResult(run.run_dir, 0, None)
    with ProgressDisplay(t.progress, t.max_steps) as progress:
        for step in range(1, t.max_steps + 1):
            batch = next(s.data.train)
            throughput.add_tokens(int(np.count_nonzero(batch["segment_ids"])))
            metrics = train_step(s.model, s.optimizer, to_device(batch, s))
            if step == 1:
                throughput.first_step_done(metrics)
            scalars = None
            if step == 1 or step % t.log_every == 0 or step == t.max_steps:
                scalars = _train_scalars(s, step, metrics, throughput)
                result.train_losses[step] = scalars["train/loss"]
                run.writer.write_scalars(step, scalars)
            progress.update(step, scalars)
            if t.eval_every and step % t.eval_every == 0 and step < t.max_steps:
                _log_eval(run, step)
            if run.checkpointer.due(step):
                _save(run, step)
        result.final_step = t.max_steps
    result.final_eval_loss = _log_eval(run, t.max_steps)
    _save(run, t.max_steps)
    return result


def _train_scalars(
    s: Setup, step: int, metrics: dict[str, jax.Array], throughput: Throughput
) -> dict[str, float]:
    host = {k: float(v) for k, v in jax.device_get(metrics).items()}
    if not math.isfinite(host["loss"]):
        raise FloatingPointError(f"step {step}: the training loss is {host['loss']}")
    return {
        "train/loss": host["loss"],
        "train/grad_norm": host["grad_norm"],
        "train/lr": float(s.schedule(step - 1)),
        **throughput.interval(step),
    }


def train(cfg: DictConfig | TrainConfig, run_dir: str | Path | None = None) -> TrainResult:
    """Train from a composed config; `run_dir` defaults to Hydra's output folder."""
    folder = Path(run_dir) if run_dir is not None else hydra_run_dir()
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    _quiet_libraries()
    run = open_run(setup(validate(cfg)), cfg, folder)
    try:
        result = fit(run)
    finally:
        run.checkpointer.close()
        run.writer.close()
    log.info(
        "finished %d steps in %.1fs; final eval loss %s",
        result.final_step,
        time.perf_counter() - started,
        "n/a" if result.final_eval_loss is None else f"{result.final_eval_loss:.4f}",
    )
    log.info("run folder:  %s", folder.resolve())
    log.info("tensorboard: tensorboard --logdir %s", (folder / "tb").resolve())
    log.info("checkpoints: %s", run.checkpointer.directory)
    return result
