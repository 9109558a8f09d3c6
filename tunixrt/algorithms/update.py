"""The optimizer update both post-training steps share, inside their jitted step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import optax
from flax import nnx

Aux = TypeVar("Aux")


def descend(
    model: nnx.Module,
    optimizer: nnx.Optimizer,
    wrt: type[nnx.Variable],
    objective: Callable[[nnx.Module], tuple[jax.Array, Aux]],
) -> tuple[Aux, dict[str, jax.Array]]:
    """Differentiate objective(model) -> (loss, aux) in the `wrt` variables and update
    them; returns aux and {loss, grad_norm, finite} (finite False: a NaN or inf, and the
    optimizer, inside optax.apply_if_finite, skipped the update)."""
    graphdef, params, rest = nnx.split(model, wrt, ...)  # type: ignore[misc]

    def f(p: Any) -> tuple[jax.Array, Aux]:
        return objective(nnx.merge(graphdef, p, rest))

    (loss, aux), grads = jax.value_and_grad(f, has_aux=True)(params)
    optimizer.update(model, grads)
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    return aux, {"loss": loss, "grad_norm": grad_norm, "finite": finite}
