"""Build what training computes with, from a validated config: devices, data, model,
optimizer and the train step that fits them. Shared by the training loop and the
benchmark, so both run the same compiled step."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
import optax
from flax import nnx
from jax.experimental.compilation_cache import compilation_cache
from jax.sharding import NamedSharding

from tunixrt.algorithms.dpo_online import OnPolicyDpoTrainer
from tunixrt.algorithms.dpo_trainer import DpoTrainer
from tunixrt.algorithms.grpo_trainer import GrpoTrainer
from tunixrt.algorithms.trainer import AlgorithmStep, Context
from tunixrt.config import AlgorithmName, ConfigError, TrainConfig
from tunixrt.data.batching import HostBatch
from tunixrt.data.pipeline import Data, load_data
from tunixrt.data.prefetch import Ready
from tunixrt.devices import Devices, setup_devices
from tunixrt.models.decoder import Decoder
from tunixrt.models.factory import build_model, trainable
from tunixrt.optim import make_optimizer
from tunixrt.sharding import place, put_rows
from tunixrt.train.answers import AnswerEval, answer_eval, check_best_metric
from tunixrt.train.step import DeviceBatch, TrainStep, eval_step, make_train_step

log = logging.getLogger(__name__)


@dataclass
class Setup:
    cfg: TrainConfig
    devices: Devices
    data: Data
    model: Decoder
    optimizer: nnx.Optimizer
    schedule: optax.Schedule
    # The compiled step for what the optimizer updates (every weight, or LoRA adapters);
    # chosen once here, so the loop and the benchmark cannot disagree.
    train_step: TrainStep
    answers: AnswerEval | None = None  # answer evaluation (eval.*); None: off
    # algorithm=grpo or dpo: its step runs instead of train_step; None for sft
    algorithm: AlgorithmStep | None = None


def enable_compile_cache(folder: str | None) -> None:
    """JAX's persistent compilation cache in `folder` (None: off), so a restarted run
    loads its compiled step from disk instead of compiling again. JAX settles a
    process's cache at its first compilation and keeps it through later changes of the
    setting; a run in a process that compiled before (an earlier run, a sweep's previous
    job) resets it, so each run caches where its config says."""
    # JAX creates the folder when it first writes to it, so a run that fails on its
    # input leaves none behind
    path = None if folder is None else str(Path(folder).expanduser().resolve())
    # JAX adds its flags to jax.config as attributes at run time, unseen by mypy
    if path != jax.config.jax_compilation_cache_dir:  # type: ignore[attr-defined]
        jax.config.update("jax_compilation_cache_dir", path)
        compilation_cache.reset_cache()
    if path is not None:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def _check_rows(cfg: TrainConfig, devices: Devices) -> None:
    t = cfg.trainer
    rows = t.batch_size // t.grad_accum
    if rows % devices.batch_splits:
        raise ConfigError(
            f"trainer.batch_size/trainer.grad_accum = {rows} rows must split evenly over "
            f"device.mesh.data x device.mesh.fsdp = {devices.batch_splits} devices"
        )


def _check_seq_len(cfg: TrainConfig, model: Decoder) -> None:
    limit = model.cfg.max_seq_len
    if cfg.trainer.seq_len > limit:
        source = (
            f"{cfg.model.path}'s max_position_embeddings" if cfg.model.path else "model.max_seq_len"
        )
        raise ConfigError(
            f"invalid config value trainer.seq_len={cfg.trainer.seq_len}: expected at most "
            f"{limit} ({source}), the longest input the model accepts"
        )


def setup(
    cfg: TrainConfig, *, schedule_steps: int | None = None, devices: Devices | None = None
) -> Setup:
    """Load data and build the model: every input error surfaces here, before the first
    compilation. `schedule_steps` fixes the lr schedule's length (default max_steps)."""
    devices = devices or setup_devices(cfg.device)
    _check_rows(cfg, devices)
    answers = answer_eval(cfg)
    check_best_metric(cfg, answers)
    t = cfg.trainer
    data = load_data(
        cfg.dataset,
        model_path=cfg.model.path,
        rows=t.batch_size,
        seq_len=t.seq_len,
        eval_batches=t.eval_batches,
        seed=cfg.seed,
        shard=(jax.process_index(), jax.process_count()),  # this process's rows of a batch
    )
    model = build_model(
        cfg.model,
        vocab_size=data.tokenizer.vocab_size,
        dtype=devices.compute_dtype,
        seed=cfg.seed,
        devices=devices,
    )
    _check_seq_len(cfg, model)
    if answers is not None:
        answers.check_fits(model, data.tokenizer)
    tx, schedule = make_optimizer(cfg.optimizer, schedule_steps or t.max_steps)
    wrt = trainable(cfg.model)
    optimizer = nnx.Optimizer(model, tx, wrt=wrt)
    # Commit the optimizer state to the mesh like the parameters (each moment split as
    # its parameter): state left uncommitted would make the first step compile for
    # other shardings than every later step.
    place(optimizer, devices.mesh)
    step = make_train_step(wrt, t.loss_chunk_tokens, devices.mesh)
    # the prefetch thread puts each batch on the mesh while earlier steps run
    sharding = devices.micro_batch_sharding
    data.train.place_with(functools.partial(place_batch, accum=t.grad_accum, sharding=sharding))
    algorithm: AlgorithmStep | None = None
    if cfg.algorithm.name is not AlgorithmName.sft:
        context = Context(cfg, model, optimizer, data.tokenizer, wrt, devices)
        algorithm = _algorithm_step(cfg)(context)
    return Setup(cfg, devices, data, model, optimizer, schedule, step, answers, algorithm)


def _algorithm_step(cfg: TrainConfig) -> Callable[..., AlgorithmStep]:
    """GRPO's step; DPO's on algorithm.pairs, or on pairs sampled on policy without."""
    if cfg.algorithm.name is AlgorithmName.grpo:
        return GrpoTrainer
    return DpoTrainer if cfg.algorithm.pairs is not None else OnPolicyDpoTrainer


def place_batch(batch: HostBatch, *, accum: int, sharding: NamedSharding) -> DeviceBatch:
    """[rows, seq] host arrays (this process's rows) -> [accum, rows/accum, seq] arrays
    split over the mesh's batch axes."""
    return {k: put_rows(v.reshape(accum, -1, v.shape[-1]), sharding) for k, v in batch.items()}


def to_device(batch: HostBatch, s: Setup) -> DeviceBatch:
    return place_batch(
        batch, accum=s.cfg.trainer.grad_accum, sharding=s.devices.micro_batch_sharding
    )


def next_batch(s: Setup) -> Ready:
    """The next train batch, already on the mesh (placed on the prefetch thread), with
    its token counts; the data position advances past it."""
    return s.data.train.next_ready()


def evaluate(
    model: Decoder,
    batches: list[HostBatch],
    devices: Devices,
    micro_batches: int = 1,
    loss_chunk_tokens: int = 0,
) -> float | None:
    """Token-weighted mean loss over fixed held-out batches; None when there are none.
    Each [rows, seq] batch runs as `micro_batches` slices of rows/micro_batches rows,
    with the loss chunked as in training (trainer.grad_accum, trainer.loss_chunk_tokens),
    so evaluation never needs more memory than a training micro-batch."""
    if not batches:
        return None
    total, count = 0.0, 0.0
    for batch in batches:
        for micro in range(micro_batches):
            placed = {
                k: put_rows(np.split(v, micro_batches)[micro], devices.data_sharding)
                for k, v in batch.items()
            }
            loss_sum, n = jax.device_get(eval_step(model, placed, loss_chunk_tokens))
            total, count = total + float(loss_sum), count + float(n)
    return total / max(count, 1.0)
