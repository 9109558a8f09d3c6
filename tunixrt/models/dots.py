"""Matrix products of bf16 operands that return float32 before rounding to bf16.

XLA:CPU runs a bf16 x bf16 product whose result is float32 about twice as fast as the
same product with a bf16 result (measured 207 against 88 GFLOP/s at 2048^3 on a 2-core
AMD EPYC; PyTorch's bf16 matmul 175): the bf16-result product takes a slow path. The
projections (nnx.Linear, LoRA's base) therefore compute in float32 results and round
to bf16 after, in the forward pass and in both products of the backward pass, so the
activations and their gradients stay bf16 as `device.precision=bf16` asks.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx


def _contracts_last(x: jax.Array, w: jax.Array, dimension_numbers: Any) -> bool:
    """Whether the product is x [..., in] . W [in, out], the one projections make."""
    (lc, rc), (lb, rb) = dimension_numbers
    return tuple(lc) == (x.ndim - 1,) and tuple(rc) == (0,) and not lb and not rb and w.ndim == 2


def _dot(a: jax.Array, b: jax.Array, contract: tuple[int, int]) -> jax.Array:
    """a . b over a's axis contract[0] and b's contract[1], accumulated and returned in
    float32."""
    dims = (((contract[0] % a.ndim,), (contract[1] % b.ndim,)), ((), ()))
    return jax.lax.dot_general(a, b, dims, preferred_element_type=jnp.float32)


@jax.custom_vjp
def linear_f32_result(x: jax.Array, w: jax.Array) -> jax.Array:
    """x [..., in] @ w [in, out] in x's dtype, through a float32 result."""
    return _dot(x, w, (-1, 0)).astype(x.dtype)


def _forward(x: jax.Array, w: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    return linear_f32_result(x, w), (x, w)


def _backward(res: tuple[jax.Array, jax.Array], g: jax.Array) -> tuple[jax.Array, jax.Array]:
    x, w = res
    dx = _dot(g, w, (-1, 1)).astype(x.dtype)  # g [..., out] . w^T -> [..., in]
    rows_x, rows_g = x.reshape(-1, x.shape[-1]), g.reshape(-1, g.shape[-1])
    dw = _dot(rows_x, rows_g, (0, 0)).astype(w.dtype)  # x^T . g -> [in, out]
    return dx, dw


linear_f32_result.defvjp(_forward, _backward)


def dot_general_f32_result(
    lhs: jax.Array,
    rhs: jax.Array,
    dimension_numbers: Any,
    precision: Any = None,
    preferred_element_type: Any = None,
    **kwargs: Any,
) -> jax.Array:
    """jax.lax.dot_general's signature (what nnx.Linear calls): a projection's bf16
    product goes through `linear_f32_result`; anything else is left to lax."""
    if (
        lhs.dtype == jnp.bfloat16
        and rhs.dtype == jnp.bfloat16
        and preferred_element_type is None
        and _contracts_last(lhs, rhs, dimension_numbers)
    ):
        return linear_f32_result(lhs, rhs)
    return jax.lax.dot_general(
        lhs,
        rhs,
        dimension_numbers,
        precision=precision,
        preferred_element_type=preferred_element_type,
        **kwargs,
    )


def use_f32_results(model: nnx.Module) -> int:
    """Have every projection of `model` (nnx.Linear, and LoRA's base product) compute
    through `dot_general_f32_result`; returns how many. Parameters are untouched."""
    count = 0
    for _, module in nnx.iter_modules(model):
        if hasattr(module, "dot_general"):
            module.dot_general = dot_general_f32_result
            count += 1
    return count
