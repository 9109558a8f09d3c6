"""A bare jitted train step of a setup's model: plain `jax.jit` of `value_and_grad` and
the optax update on a pytree of parameters, with none of the loop's machinery (no
nnx graph traversal, no micro-batch scan, no metrics, no input pipeline). The
benchmark times it beside the real step, so the loop's overhead shows."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from tunixrt.models.factory import trainable
from tunixrt.optim import make_optimizer
from tunixrt.train.loss import Batch, loss_sums
from tunixrt.train.setup import Setup

BareStep = Callable[[], jax.Array]  # one step on the next fixed batch; returns the loss


def bare_step(s: Setup, batches: list[Batch]) -> BareStep:
    """Updates of a copy of the model's trainable weights, cycling over `batches`
    ([rows, seq] arrays: the whole optimizer batch at once, so grad_accum > 1 needs more
    memory here than in the real step, for the same FLOPs). The copy leaves the setup's
    model as it was."""
    # flax types nnx.split's filters as one overload per count; a Variable type followed
    # by `...` (the rest) matches none of them, though it is a documented call
    graphdef, params, rest = nnx.split(s.model, trainable(s.cfg.model), ...)  # type: ignore[misc]
    params = jax.tree.map(jnp.copy, params)
    tx, _ = make_optimizer(s.cfg.optimizer, s.cfg.trainer.max_steps)
    chunk = s.cfg.trainer.loss_chunk_tokens

    def loss(p: Any, b: Batch) -> jax.Array:
        total, count = loss_sums(nnx.merge(graphdef, p, rest), b, chunk)
        return total / jnp.maximum(count, 1.0)

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(p: Any, opt_state: Any, b: Batch) -> tuple[Any, Any, jax.Array]:
        value, grads = jax.value_and_grad(loss)(p, b)
        updates, opt_state = tx.update(grads, opt_state, p)
        return optax.apply_updates(p, updates), opt_state, value

    state = [params, tx.init(params)]
    calls = [0]

    def run() -> jax.Array:
        batch = batches[calls[0] % len(batches)]
        calls[0] += 1
        state[0], state[1], value = step(state[0], state[1], batch)
        return value

    return run
