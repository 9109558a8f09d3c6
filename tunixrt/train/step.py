"""The train and eval steps: compiled once, batch in, updated state and metrics out.

A train batch has a leading micro-batch axis: every leaf is [grad_accum, rows, seq].
Gradients of the summed token losses accumulate over the micro-batches and are divided
by the total number of loss tokens once, so every token weighs the same however the
tokens fall into micro-batches.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh

from tunixrt.models.decoder import Decoder
from tunixrt.sharding import constrain
from tunixrt.train.loss import loss_sums

DeviceBatch = dict[str, jax.Array]  # the same keys as data.HostBatch, placed on the mesh


def _accumulate(
    model: nnx.Module, batch: DeviceBatch, wrt: type[nnx.Variable], chunk_tokens: int
) -> tuple[Any, jax.Array, jax.Array]:
    """Summed gradients (of the `wrt` variables), loss and token count over the
    micro-batch axis."""
    # flax types nnx.split's filters as one overload per count; a Variable type followed
    # by `...` (the rest) matches none of them, though it is a documented call
    graphdef, params, rest = nnx.split(model, wrt, ...)  # type: ignore[misc]

    def micro(
        carry: tuple[Any, jax.Array, jax.Array], mb: DeviceBatch
    ) -> tuple[tuple[Any, jax.Array, jax.Array], None]:
        grad_sum, loss_sum, count = carry

        def f(p: Any) -> tuple[jax.Array, jax.Array]:
            return loss_sums(nnx.merge(graphdef, p, rest), mb, chunk_tokens)

        (loss, n), grads = jax.value_and_grad(f, has_aux=True)(params)
        grad_sum = jax.tree.map(jnp.add, grad_sum, grads)
        return (grad_sum, loss_sum + loss, count + n), None

    zeros = jax.tree.map(jnp.zeros_like, params)
    init = (zeros, jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32))
    (grad_sum, loss_sum, count), _ = jax.lax.scan(micro, init, batch)
    return grad_sum, loss_sum, count


# (model, optimizer, batch) -> metrics; model and optimizer are updated in place.
TrainStep = Callable[[nnx.Module, nnx.Optimizer, DeviceBatch], dict[str, jax.Array]]


@functools.cache
def make_train_step(
    wrt: type[nnx.Variable], loss_chunk_tokens: int = 0, mesh: Mesh | None = None
) -> TrainStep:
    """A compiled optimizer step that differentiates and updates the `wrt` variables only
    (nnx.Param: every weight; nnx.LoRAParam: the adapters), with the loss's output head
    applied `loss_chunk_tokens` tokens at a time (0: all at once). With a `mesh`, the
    gradients, the model and the optimizer state are held to `tunixrt.sharding`'s
    placement, so every step takes and returns its state split alike. One per argument
    tuple, so every caller shares its compilation cache."""

    @nnx.jit(donate_argnums=(0, 1))
    def step(
        model: nnx.Module, optimizer: nnx.Optimizer, batch: DeviceBatch
    ) -> dict[str, jax.Array]:
        grad_sum, loss_sum, count = _accumulate(model, batch, wrt, loss_chunk_tokens)
        denom = jnp.maximum(count, 1.0)
        grads = jax.tree.map(lambda g: g / denom, grad_sum)
        if mesh is not None:
            grads = constrain(grads, mesh)
        optimizer.update(model, grads)
        if mesh is not None:
            constrain(model, mesh)
            constrain(optimizer, mesh)
        loss, grad_norm = loss_sum / denom, optax.tree.norm(grads)
        # False when the loss or the gradients hold a NaN or an inf; the optimizer
        # (inside optax.apply_if_finite) then leaves the state as it was.
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        return {"loss": loss, "grad_norm": grad_norm, "tokens": count, "finite": finite}

    return step


@nnx.jit(static_argnames="loss_chunk_tokens")
def eval_step(
    model: Decoder, batch: DeviceBatch, loss_chunk_tokens: int = 0
) -> tuple[jax.Array, jax.Array]:
    """Summed loss and token count of one [rows, seq] batch, for a token-weighted mean."""
    return loss_sums(model, batch, loss_chunk_tokens)
