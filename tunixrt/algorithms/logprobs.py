"""Log-probabilities a model gives the tokens of a completion."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def token_logprobs(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """log p(target) at every position: logits [rows, seq, vocab], targets [rows, seq]
    int -> [rows, seq] float32 (the softmax in float32 whatever the logits' dtype)."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]


def sequence_logprobs(token_logp: jax.Array, mask: jax.Array) -> jax.Array:
    """Sum of the masked token log-probabilities of each row: [rows, seq] -> [rows]."""
    return jnp.sum(token_logp * mask, axis=-1)
