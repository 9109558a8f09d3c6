"""Decoder-only transformer (Llama layout) in Flax NNX.

Reads top-down: the config and its analytic size/cost, then the blocks (norm, rotary
embedding, attention, MLP, residual block), then the model.

Shape letters in comments: b batch, s / q / k sequence (query / key), d model width,
h query heads, g kv heads, e head width, f MLP hidden width, v vocabulary.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

_DTYPES = ("float32", "bfloat16")

# Added to masked attention scores. Finite, so a row whose keys are all masked stays
# finite instead of producing NaN; far enough below any real score that exp() is 0.
_MASK_VALUE = -1e30


# ---------------------------------------------------------------------------- config


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
    vocab_size: int
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    ffn_dim: int  # SwiGLU hidden width
    max_seq_len: int
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = False
    dtype: str = "float32"  # compute dtype of activations
    param_dtype: str = "float32"  # storage dtype of parameters
    init_std: float = 0.02

    def __post_init__(self):
        sizes = ("vocab_size", "dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim", "max_seq_len")
        for name in sizes:
            _require(getattr(self, name) > 0, f"{name} must be positive, got {getattr(self, name)}")
        _require(
            self.dim % self.n_heads == 0,
            f"dim={self.dim} is not divisible by n_heads={self.n_heads}",
        )
        _require(
            self.n_heads % self.n_kv_heads == 0,
            f"n_heads={self.n_heads} is not divisible by n_kv_heads={self.n_kv_heads}",
        )
        _require(
            self.head_dim % 2 == 0,
            f"head_dim={self.head_dim} (dim / n_heads) must be even for rotary embeddings",
        )
        for name in ("dtype", "param_dtype"):
            _require(
                getattr(self, name) in _DTYPES,
                f"{name}={getattr(self, name)!r} is not one of {_DTYPES}",
            )

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(f"DecoderConfig: {message}")


def _layer_matmul_params(cfg: DecoderConfig) -> int:
    """Weights of one block's projections (q, k, v, o, gate, up, down)."""
    q_and_o = 2 * cfg.dim * cfg.n_heads * cfg.head_dim
    k_and_v = 2 * cfg.dim * cfg.n_kv_heads * cfg.head_dim
    mlp = 3 * cfg.dim * cfg.ffn_dim
    return q_and_o + k_and_v + mlp


def num_params(cfg: DecoderConfig) -> int:
    """Exact number of parameters `Decoder(cfg)` holds."""
    per_layer = _layer_matmul_params(cfg) + 2 * cfg.dim  # + two RMSNorm scales
    embed = cfg.vocab_size * cfg.dim
    head = 0 if cfg.tie_embeddings else cfg.vocab_size * cfg.dim
    return embed + cfg.n_layers * per_layer + cfg.dim + head


def flops_per_token(cfg: DecoderConfig, seq_len: int) -> int:
    """Training FLOPs per token: forward + backward = 3 x forward (2 FLOPs per MAC).

    6 * N counts every matmul weight once per token: the blocks' projections and the
    output head (vocab x dim, counted even when tied, since the matmul still runs); the
    input embedding lookup and the norm scales do no matmul and are left out. The
    attention term 12 * layers * heads * head_dim * seq_len covers q.k^T and p.v over
    the full (unmasked) sequence, as in the PaLM paper's MFU estimate.
    """
    matmul_params = cfg.n_layers * _layer_matmul_params(cfg) + cfg.vocab_size * cfg.dim
    attention = 12 * cfg.n_layers * cfg.n_heads * cfg.head_dim * seq_len
    return 6 * matmul_params + attention


# ---------------------------------------------------------------------------- blocks


def _normal(cfg: DecoderConfig):
    return nnx.initializers.normal(stddev=cfg.init_std)


def _linear(cfg: DecoderConfig, d_in: int, d_out: int, rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(
        d_in,
        d_out,
        use_bias=False,
        dtype=jnp.dtype(cfg.dtype),
        param_dtype=jnp.dtype(cfg.param_dtype),
        kernel_init=_normal(cfg),
        rngs=rngs,
    )


class RMSNorm(nnx.Module):
    """x / rms(x) * scale, with the statistic and the scaling in float32."""

    def __init__(self, cfg: DecoderConfig):
        self.eps = cfg.norm_eps
        self.scale = nnx.Param(jnp.ones((cfg.dim,), jnp.dtype(cfg.param_dtype)))

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        mean_sq = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)  # [..., 1]
        y = x32 * jax.lax.rsqrt(mean_sq + self.eps) * self.scale[...].astype(jnp.float32)
        return y.astype(x.dtype)


def rope_angles(positions: jax.Array, head_dim: int, theta: float) -> tuple[jax.Array, jax.Array]:
    """cos and sin [b, s, e] for integer positions [b, s], in float32.

    Frequency i (of head_dim / 2) is theta ** (-2i / head_dim); both halves of the head
    use the same frequencies, matching `rotate_half`.
    """
    exponents = jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim  # [e/2]
    inv_freq = theta**-exponents
    angles = positions.astype(jnp.float32)[..., None] * inv_freq  # [b, s, e/2]
    angles = jnp.concatenate([angles, angles], axis=-1)  # [b, s, e]
    return jnp.cos(angles), jnp.sin(angles)


def _rotate_half(x: jax.Array) -> jax.Array:
    x1, x2 = jnp.split(x, 2, axis=-1)
    return jnp.concatenate([-x2, x1], axis=-1)


def apply_rope(x: jax.Array, positions: jax.Array, theta: float) -> jax.Array:
    """Rotate x [b, s, heads, e] by its positions [b, s] (Llama / HF half layout)."""
    cos, sin = rope_angles(positions, x.shape[-1], theta)
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
    if segment_ids is not None:
        same = segment_ids[:, :, None] == segment_ids[:, None, :]  # [b, q, k]
        mask = mask & same[:, None]
    return mask


class Attention(nnx.Module):
    """Causal grouped-query attention: n_heads query heads share n_kv_heads kv heads."""

    def __init__(self, cfg: DecoderConfig, *, rngs: nnx.Rngs):
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.rope_theta = cfg.rope_theta
        self.q_proj = _linear(cfg, cfg.dim, cfg.n_heads * cfg.head_dim, rngs)
        self.k_proj = _linear(cfg, cfg.dim, cfg.n_kv_heads * cfg.head_dim, rngs)
        self.v_proj = _linear(cfg, cfg.dim, cfg.n_kv_heads * cfg.head_dim, rngs)
        self.o_proj = _linear(cfg, cfg.n_heads * cfg.head_dim, cfg.dim, rngs)

    def __call__(self, x: jax.Array, positions: jax.Array, mask: jax.Array) -> jax.Array:
        b, s, _ = x.shape
        q = self.q_proj(x).reshape(b, s, self.n_heads, self.head_dim)  # [b, s, h, e]
        k = self.k_proj(x).reshape(b, s, self.n_kv_heads, self.head_dim)  # [b, s, g, e]
        v = self.v_proj(x).reshape(b, s, self.n_kv_heads, self.head_dim)  # [b, s, g, e]
        q = apply_rope(q, positions, self.rope_theta)
        k = apply_rope(k, positions, self.rope_theta)
        # Query head i reads kv head i // (h / g), as in HF `repeat_kv`.
        groups = self.n_heads // self.n_kv_heads
        k = jnp.repeat(k, groups, axis=2)  # [b, s, h, e]
        v = jnp.repeat(v, groups, axis=2)  # [b, s, h, e]

        scores = jnp.einsum("bqhe,bkhe->bhqk", q, k, preferred_element_type=jnp.float32)
        scores = scores / jnp.sqrt(jnp.float32(self.head_dim))
        scores = scores + jnp.where(mask, 0.0, _MASK_VALUE)  # [b, h, q, k], float32
        probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
        out = jnp.einsum("bhqk,bkhe->bqhe", probs, v)  # [b, s, h, e]
        return self.o_proj(out.reshape(b, s, self.n_heads * self.head_dim))


class MLP(nnx.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, cfg: DecoderConfig, *, rngs: nnx.Rngs):
        self.gate_proj = _linear(cfg, cfg.dim, cfg.ffn_dim, rngs)
        self.up_proj = _linear(cfg, cfg.dim, cfg.ffn_dim, rngs)
        self.down_proj = _linear(cfg, cfg.ffn_dim, cfg.dim, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        hidden = jax.nn.silu(self.gate_proj(x)) * self.up_proj(x)  # [b, s, f]
        return self.down_proj(hidden)


class Block(nnx.Module):
    """Pre-norm residual block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, cfg: DecoderConfig, *, rngs: nnx.Rngs):
        self.attn_norm = RMSNorm(cfg)
        self.attn = Attention(cfg, rngs=rngs)
        self.mlp_norm = RMSNorm(cfg)
        self.mlp = MLP(cfg, rngs=rngs)

    def __call__(self, x: jax.Array, positions: jax.Array, mask: jax.Array) -> jax.Array:
        x = x + self.attn(self.attn_norm(x), positions, mask)
        return x + self.mlp(self.mlp_norm(x))


# ---------------------------------------------------------------------------- model


class Decoder(nnx.Module):
    """Token ids [b, s] -> float32 logits [b, s, v]."""

    def __init__(self, cfg: DecoderConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.embed = nnx.Embed(
            cfg.vocab_size,
            cfg.dim,
            dtype=jnp.dtype(cfg.dtype),
            param_dtype=jnp.dtype(cfg.param_dtype),
            embedding_init=_normal(cfg),
            rngs=rngs,
        )
        self.layers = nnx.List([Block(cfg, rngs=rngs) for _ in range(cfg.n_layers)])
        self.final_norm = RMSNorm(cfg)
        self.lm_head = None if cfg.tie_embeddings else _linear(cfg, cfg.dim, cfg.vocab_size, rngs)

    def __call__(
        self,
        tokens: jax.Array,
        *,
        positions: jax.Array | None = None,
        segment_ids: jax.Array | None = None,
    ) -> jax.Array:
        """tokens, positions, segment_ids: int32 [b, s]. Segment 0 marks padding.

        Packed rows pass per-token segment ids and positions that restart at 0 for
        each segment; a token attends to earlier-or-equal tokens of its own segment.
        """
        b, s = tokens.shape
        if s > self.cfg.max_seq_len:
            raise ValueError(
                f"sequence length {s} exceeds DecoderConfig.max_seq_len={self.cfg.max_seq_len}"
            )
        if positions is None:
            positions = jnp.broadcast_to(jnp.arange(s, dtype=jnp.int32), (b, s))
        mask = attention_mask(segment_ids, s)

        x = self.embed(tokens)  # [b, s, d]
        for layer in self.layers:
            x = layer(x, positions, mask)
        x = self.final_norm(x)
        logits = self.embed.attend(x) if self.lm_head is None else self.lm_head(x)
        return logits.astype(jnp.float32)  # [b, s, v]
