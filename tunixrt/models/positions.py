"""Where a token is: rotary embeddings (with linear and llama3 scaling) and the
attention masks (causal within packed segments, sliding windows, cache slots).

Shape letters: b batch, s / q / k sequence (query / key), t cache slots, e head width.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from tunixrt.config import RopeScaling
from tunixrt.models.decoder_config import DecoderConfig


def rope_inv_freq(cfg: DecoderConfig) -> jax.Array:
    """Rotary frequencies [e/2] in radians per position, float32.

    Frequency i is theta ** (-2i / head_dim). "linear" divides all of them by the
    factor; "llama3" divides only long wavelengths (above original / low_freq_factor),
    keeps short ones (below original / high_freq_factor) and blends in between.
    """
    exponents = jnp.arange(0, cfg.head_dim, 2, dtype=jnp.float32) / cfg.head_dim  # [e/2]
    inv_freq = cfg.rope_theta**-exponents
    if cfg.rope_scaling is RopeScaling.linear:
        return inv_freq / cfg.rope_factor
    if cfg.rope_scaling is RopeScaling.llama3:
        factor, low, high = cfg.rope_factor, cfg.rope_low_freq_factor, cfg.rope_high_freq_factor
        original = cfg.rope_original_max_len
        wavelen = 2 * math.pi / inv_freq  # tokens per turn
        scaled = jnp.where(wavelen > original / low, inv_freq / factor, inv_freq)
        smooth = (original / wavelen - low) / (high - low)  # 0 at the long end, 1 at the short
        blended = (1 - smooth) * scaled / factor + smooth * scaled
        middle = (wavelen >= original / high) & (wavelen <= original / low)
        return jnp.where(middle, blended, scaled)
    return inv_freq


def rope_angles(positions: jax.Array, inv_freq: jax.Array) -> tuple[jax.Array, jax.Array]:
    """cos and sin [b, s, e] for integer positions [b, s], in float32.

    Both halves of the head use the same frequencies, matching `_rotate_half`.
    """
    angles = positions.astype(jnp.float32)[..., None] * inv_freq  # [b, s, e/2]
    angles = jnp.concatenate([angles, angles], axis=-1)  # [b, s, e]
    return jnp.cos(angles), jnp.sin(angles)


def _rotate_half(x: jax.Array) -> jax.Array:
    x1, x2 = jnp.split(x, 2, axis=-1)
    return jnp.concatenate([-x2, x1], axis=-1)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotate x [b, s, heads, e] by angles cos, sin [b, s, e] (Llama / HF half layout)."""
    cos, sin = cos[:, :, None, :], sin[:, :, None, :]  # broadcast over heads
    x32 = x.astype(jnp.float32)
    return (x32 * cos + _rotate_half(x32) * sin).astype(x.dtype)


def attention_mask(segment_ids: jax.Array | None, seq_len: int) -> jax.Array:
    """Boolean [b or 1, 1, q, k]: causal, and within the same segment when packed.

    The diagonal is always allowed, so no query row is fully masked (padding, segment 0,
    attends to earlier padding and stays finite).
    """
    idx = jnp.arange(seq_len)
    mask = (idx[:, None] >= idx[None, :])[None, None]  # [1, 1, q, k]
    same = segment_mask(segment_ids)
    return mask if same is None else mask & same


def segment_mask(segment_ids: jax.Array | None) -> jax.Array | None:
    """Boolean [b, 1, q, k]: query and key in the same packed segment; None unpacked."""
    if segment_ids is None:
        return None
    return (segment_ids[:, :, None] == segment_ids[:, None, :])[:, None]


def window_band(seq_len: int, window: int) -> jax.Array:
    """Boolean [1, 1, q, k]: key fewer than `window` tokens before the query (as HF).

    Within one packed segment, index distance equals position distance.
    """
    idx = jnp.arange(seq_len)
    return (idx[:, None] - idx[None, :] < window)[None, None]


def cache_mask(positions: jax.Array, cache_len: int, window: int | None) -> jax.Array:
    """Boolean [b, 1, s, t] over cache slots: a query sees slots at or before its position.

    Slot j of a row holds the key at position j, so this is `attention_mask` (and,
    with a window, `window_band`) in positions rather than indices. Slots past a row's
    position hold padding or nothing yet and stay masked.
    """
    slots = jnp.arange(cache_len)[None, None, None, :]  # [1, 1, 1, t]
    query = positions[:, None, :, None]  # [b, 1, s, 1]
    mask = slots <= query
    if window is not None:
        mask = mask & (query - slots < window)
    return mask


Rope = tuple[jax.Array, jax.Array] | None  # cos, sin [b, s, e]; None for learned positions
