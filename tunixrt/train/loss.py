"""Token cross-entropy of a decoder, whole or a chunk of tokens at a time.

Whole: the model's float32 logits [rows, seq, vocab] exist at once (4 bytes x tokens x
vocab: 8 GiB for 8 x 1024 tokens of Gemma's 262,144 ids, and the gradient needs as much
again). Chunked: the head runs on a few positions of every row at a time inside a
rematerialised scan, so the forward and the backward pass each hold one chunk's
logits [rows, chunk, vocab].
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from tunixrt.models.decoder import Decoder

Batch = dict[str, jax.Array]  # inputs, positions, segment_ids, targets, weights: [rows, seq]


def loss_sums(model: Decoder, batch: Batch, chunk_tokens: int = 0) -> tuple[jax.Array, jax.Array]:
    """Sum of token cross-entropies over weighted targets, and the weight total.
    chunk_tokens > 0 applies the output head to about that many tokens at a time."""
    inputs = dict(positions=batch["positions"], segment_ids=batch["segment_ids"])
    targets, weights = batch["targets"], batch["weights"]
    if chunk_tokens <= 0:
        logits = model(batch["inputs"], **inputs)  # [rows, seq, vocab] float32
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
        return jnp.sum(ce * weights), jnp.sum(weights)
    hidden = model.hidden_states(batch["inputs"], **inputs)  # [rows, seq, d]
    per_row = max(1, chunk_tokens // targets.shape[0])  # positions of every row per chunk
    total = chunked_cross_entropy(model.head, hidden, targets, weights, per_row)
    return total, jnp.sum(weights)


def chunked_cross_entropy(
    head: Callable[[jax.Array], jax.Array],
    hidden: jax.Array,
    targets: jax.Array,
    weights: jax.Array,
    chunk: int,
) -> jax.Array:
    """Sum over tokens of weights * cross-entropy(head(hidden), targets), `chunk`
    positions of every row at a time: hidden [r, s, d], targets and weights [r, s]; head
    maps [r, c, d] to float32 logits [r, c, vocab]. Chunks cut the sequence, not the
    rows, so rows split over devices stay split. The last chunk is padded with weight 0.
    """
    r, s, d = hidden.shape
    chunk = min(chunk, s)
    pad = -s % chunk
    n = (s + pad) // chunk

    def chunks(x: jax.Array) -> jax.Array:
        """[r, s, ...] -> [n, r, chunk, ...]: the scanned axis first."""
        x = jnp.pad(x, [(0, 0), (0, pad)] + [(0, 0)] * (x.ndim - 2))
        return jnp.moveaxis(x.reshape(r, n, chunk, *x.shape[2:]), 1, 0)

    # Saves only its inputs: the backward pass recomputes this chunk's logits.
    @jax.checkpoint
    def chunk_sum(h: jax.Array, t: jax.Array, w: jax.Array) -> jax.Array:
        ce = optax.softmax_cross_entropy_with_integer_labels(head(h), t)  # [r, chunk]
        return jnp.sum(ce * w)

    def step(
        total: jax.Array, xs: tuple[jax.Array, jax.Array, jax.Array]
    ) -> tuple[jax.Array, None]:
        return total + chunk_sum(*xs), None

    xs = (chunks(hidden), chunks(targets), chunks(weights))
    total, _ = jax.lax.scan(step, jnp.zeros((), jnp.float32), xs)
    return total
