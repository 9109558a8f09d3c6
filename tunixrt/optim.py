"""Optax optimizers and learning-rate schedules built from `OptimizerConfig`."""

from __future__ import annotations

import jax
import optax

from tunixrt.config import OptimizerConfig, OptimizerName, Schedule


def make_schedule(cfg: OptimizerConfig, total_steps: int) -> optax.Schedule:
    """Linear warmup from 0 to `lr`, then constant, linear or cosine decay to
    `lr * min_lr_ratio` at `total_steps`."""
    warmup = min(cfg.warmup_steps, total_steps)
    decay_steps = max(total_steps - warmup, 1)
    end = cfg.lr * cfg.min_lr_ratio
    if cfg.schedule is Schedule.constant:
        after: optax.Schedule = optax.constant_schedule(cfg.lr)
    elif cfg.schedule is Schedule.linear:
        after = optax.linear_schedule(cfg.lr, end, decay_steps)
    else:
        after = optax.cosine_decay_schedule(cfg.lr, decay_steps, alpha=cfg.min_lr_ratio)
    if warmup == 0:
        return after
    return optax.join_schedules([optax.linear_schedule(0.0, cfg.lr, warmup), after], [warmup])


def decay_mask(params: optax.Params) -> optax.Params:
    """Weight decay applies to matrices only, not to norm scales or biases (ndim < 2)."""
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def _base(cfg: OptimizerConfig, lr: optax.Schedule) -> optax.GradientTransformation:
    wd = cfg.weight_decay
    if cfg.name is OptimizerName.adamw:
        return optax.adamw(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=wd, mask=decay_mask)
    if cfg.name is OptimizerName.lion:
        return optax.lion(lr, b1=cfg.b1, b2=cfg.b2, weight_decay=wd, mask=decay_mask)
    if cfg.name is OptimizerName.adafactor:
        return optax.adafactor(lr, weight_decay_rate=wd or None, weight_decay_mask=decay_mask)
    return optax.chain(
        optax.add_decayed_weights(wd, mask=decay_mask),
        optax.sgd(lr, momentum=cfg.momentum or None, nesterov=cfg.nesterov),
    )


def make_optimizer(
    cfg: OptimizerConfig, total_steps: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The gradient transformation and its schedule (for logging the lr).

    Clipping comes first. The whole chain sits inside `apply_if_finite`: a step whose
    gradients hold a NaN or an inf changes neither the parameters nor the optimizer's
    moments, so the last good state is what remains to be saved.
    """
    schedule = make_schedule(cfg, cfg.decay_steps or total_steps)
    parts = [optax.clip_by_global_norm(cfg.grad_clip)] if cfg.grad_clip > 0 else []
    tx = optax.chain(*parts, _base(cfg, schedule))
    return optax.apply_if_finite(tx, max_consecutive_errors=2**31 - 1), schedule
