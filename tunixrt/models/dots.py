"""Matrix products of bf16 operands that return float32 before rounding to bf16.

XLA:CPU runs a bf16 x bf16 product whose result is float32 about twice as fast as the
same product with a bf16 result (measured 207 against 88 GFLOP/s at 2048^3 on a 2-core
AMD EPYC; PyTorch's bf16 matmul 175): for a bf16 result it converts both operands to
float32 and multiplies those. The projections (nnx.Linear, LoRA's base) therefore
compute in float32 results and round to bf16 after, in the forward pass and in both
products of the backward pass, so the activations and their gradients stay bf16 as
`device.precision=bf16` asks; the output head (tied to the embedding or not) keeps its
float32 logits, and its backward products take the logits' gradient in bf16.

fp32 projections on a CPU go through the same product for its backward pass: the
weight gradient is one product over the rows flattened to [tokens, in] and
[tokens, out], where the gradient JAX derives contracts batch and sequence axes
separately and XLA:CPU copies each layer's [batch, seq, out] gradient into a
transposed layout first (a quarter of a small model's step; measured 63 against 27 ms
for an MLP block's forward and backward at 4096 tokens x 128 x 384, 2-core Xeon).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
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


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def project(x: jax.Array, w: jax.Array, out_dtype: str) -> jax.Array:
    """x [..., in] @ w [in, out] (both bf16) accumulated in float32, returned as
    `out_dtype`: bf16 between layers, float32 for logits. Its gradients take a bf16
    cotangent (as PyTorch's autocast does) through float32 results as well."""
    return _dot(x, w, (-1, 0)).astype(out_dtype)


def _forward(
    x: jax.Array, w: jax.Array, out_dtype: str
) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    return project(x, w, out_dtype), (x, w)


def _backward(
    out_dtype: str, res: tuple[jax.Array, jax.Array], g: jax.Array
) -> tuple[jax.Array, jax.Array]:
    x, w = res
    g = g.astype(x.dtype)
    dx = _dot(g, w, (-1, 1)).astype(x.dtype)  # g [..., out] . w^T -> [..., in]
    rows_x, rows_g = x.reshape(-1, x.shape[-1]), g.reshape(-1, g.shape[-1])
    dw = _dot(rows_x, rows_g, (0, 0)).astype(w.dtype)  # x^T . g -> [in, out]
    return dx, dw


project.defvjp(_forward, _backward)


def linear_f32_result(x: jax.Array, w: jax.Array) -> jax.Array:
    """x [..., in] @ w [in, out] in x's dtype, through a float32 result."""
    return project(x, w, x.dtype.name)


def logits_f32(x: jax.Array, w: jax.Array) -> jax.Array:
    """x [..., in] @ w [in, out] as float32 (an output head's logits), unrounded."""
    return project(x, w, "float32")


def tied_logits_f32(x: jax.Array, table: jax.Array) -> jax.Array:
    """Logits of a head tied to the embedding `table` [vocab, dim]: x . table^T."""
    return logits_f32(x, table.astype(x.dtype).T)


def _through(product: Callable[[jax.Array, jax.Array], jax.Array]) -> Callable[..., jax.Array]:
    def dot_general(
        lhs: jax.Array,
        rhs: jax.Array,
        dimension_numbers: Any,
        precision: Any = None,
        preferred_element_type: Any = None,
        **kwargs: Any,
    ) -> jax.Array:
        """jax.lax.dot_general's signature (what nnx.Linear calls): a projection's
        product of two bf16 or two float32 operands goes through `product`; anything
        else is left to lax."""
        if (
            lhs.dtype == rhs.dtype
            and lhs.dtype in (jnp.bfloat16, jnp.float32)
            and preferred_element_type is None
            and _contracts_last(lhs, rhs, dimension_numbers)
        ):
            return product(lhs, rhs)
        return _lax_dot_general(
            lhs, rhs, dimension_numbers, precision, preferred_element_type, **kwargs
        )

    return dot_general


def _lax_dot_general(
    lhs: jax.Array,
    rhs: jax.Array,
    dimension_numbers: Any,
    precision: Any,
    preferred_element_type: Any,
    **kwargs: Any,
) -> jax.Array:
    return jax.lax.dot_general(
        lhs,
        rhs,
        dimension_numbers,
        precision=precision,
        preferred_element_type=preferred_element_type,
        **kwargs,
    )


# nnx.Linear's dot_general for the layers' projections and for an untied output head
dot_general_f32_result = _through(linear_f32_result)
dot_general_f32_logits = _through(logits_f32)


def use_f32_results(model: nnx.Module) -> int:
    """Have every projection of `model` (nnx.Linear, and LoRA's base product) compute
    through float32 results, rounded to bf16 between layers and left float32 for the
    output head's logits (tied to the embedding or not); returns how many projections.
    Parameters are untouched."""
    count = 0
    heads = set()
    for _, module in nnx.iter_modules(model):
        if hasattr(module, "tied_head"):  # the Decoder
            if (head := getattr(module, "lm_head", None)) is None:
                module.tied_head = tied_logits_f32
            else:
                heads.add(id(head))
    for _, module in nnx.iter_modules(model):
        if hasattr(module, "dot_general"):
            head = id(module) in heads
            module.dot_general = dot_general_f32_logits if head else dot_general_f32_result
            count += 1
    return count
