"""Decoder-only transformer in Flax NNX: one layout with per-family switches.

The defaults are the Llama layout (RMSNorm, RoPE, SwiGLU, no biases). The switches in
`DecoderConfig` cover Mistral, Qwen2/2.5, Qwen3, Gemma, Gemma 2 and GPT-2; each field
names the family that needs it. `tunixrt.models.hf` maps Hugging Face configs and
tensors onto this layout.

Reads top-down: the config and its analytic size/cost, then the blocks (norm, rotary
embedding, masks, attention, MLP, residual block), then the model.

Shape letters in comments: b batch, s / q / k sequence (query / key), d model width,
h query heads, g kv heads, e head width, f MLP hidden width, v vocabulary.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from tunixrt.config import Activation, NormKind, PositionKind, RopeScaling

_DTYPES = ("float32", "bfloat16")
_ACTIVATIONS: dict[Activation, Callable[[jax.Array], jax.Array]] = {
    Activation.silu: jax.nn.silu,
    Activation.gelu: functools.partial(jax.nn.gelu, approximate=False),
    Activation.gelu_tanh: functools.partial(jax.nn.gelu, approximate=True),
}
# Fields holding a choice, turned into their enum when a DecoderConfig is built.
_CHOICES: dict[str, type[enum.StrEnum]] = {
    "norm": NormKind,
    "activation": Activation,
    "position": PositionKind,
    "rope_scaling": RopeScaling,
}

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
    ffn_dim: int  # MLP hidden width
    max_seq_len: int  # longest accepted input; rows of the learned position table
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = False
    dtype: str = "float32"  # compute dtype of activations
    param_dtype: str = "float32"  # storage dtype of parameters
    init_std: float = 0.02
    remat: bool = False  # recompute each block's activations in the backward pass

    # Family switches. The defaults give the Llama layout.
    family: str = "llama"  # Hugging Face model_type the weights export as
    explicit_head_dim: int | None = None  # head width when it is not dim / n_heads (Gemma, Qwen3)
    norm: NormKind = NormKind.rms  # or layer: LayerNorm with a bias (GPT-2)
    norm_offset: float = 0.0  # applied scale = offset + weight (Gemma: 1, weights stored as w - 1)
    sandwich_norm: bool = False  # also normalise attn and MLP outputs before the residual (Gemma 2)
    qk_norm: bool = False  # RMSNorm over each head of q and k before RoPE (Qwen3)
    activation: Activation = Activation.silu
    gated_mlp: bool = True  # down(act(gate(x)) * up(x)); False: down(act(up(x))) (GPT-2)
    qkv_bias: bool = False  # biases on q, k, v projections (Qwen2, GPT-2)
    out_bias: bool = False  # bias on the attention output projection (GPT-2)
    mlp_bias: bool = False  # biases on the MLP projections (GPT-2)
    position: PositionKind = PositionKind.rope  # or learned absolute positions (GPT-2)
    rope_scaling: RopeScaling = RopeScaling.none
    rope_factor: float = 1.0  # frequencies divided by this (linear; llama3's low band)
    rope_low_freq_factor: float = 1.0  # llama3: wavelengths above original / this are scaled
    rope_high_freq_factor: float = 4.0  # llama3: wavelengths below original / this are kept
    rope_original_max_len: int = 8192  # llama3: pretraining context length
    embed_scale: bool = False  # multiply input embeddings by sqrt(dim) (Gemma)
    query_scale: float | None = None  # scores / sqrt(this) instead of sqrt(head_dim) (Gemma 2)
    attn_softcap: float | None = None  # scores -> cap * tanh(scores / cap) (Gemma 2)
    final_softcap: float | None = None  # same on the output logits (Gemma 2)
    sliding_window: int | None = None  # a query sees keys less than this many tokens back
    sliding_layers: tuple[int, ...] | None = None  # layers using the window; None: all

    def __post_init__(self) -> None:
        for name, choice in _CHOICES.items():
            value = getattr(self, name)
            allowed = tuple(c.value for c in choice)
            _require(value in allowed, f"{name}={value!r} is not one of {allowed}")
            object.__setattr__(self, name, choice(value))
        if self.sliding_layers is not None:
            # Frozen and hashable (the config is static in jit), even when built from JSON lists.
            object.__setattr__(self, "sliding_layers", tuple(self.sliding_layers))
        sizes = ("vocab_size", "dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim", "max_seq_len")
        for name in sizes:
            _require(getattr(self, name) > 0, f"{name} must be positive, got {getattr(self, name)}")
        if self.explicit_head_dim is None:
            _require(
                self.dim % self.n_heads == 0,
                f"dim={self.dim} is not divisible by n_heads={self.n_heads}",
            )
        else:
            _require(self.explicit_head_dim > 0, "explicit_head_dim must be positive")
        _require(
            self.n_heads % self.n_kv_heads == 0,
            f"n_heads={self.n_heads} is not divisible by n_kv_heads={self.n_kv_heads}",
        )
        if self.position == "rope":
            _require(
                self.head_dim % 2 == 0,
                f"head_dim={self.head_dim} must be even for rotary embeddings",
            )
        for name in ("dtype", "param_dtype"):
            value = getattr(self, name)
            _require(value in _DTYPES, f"{name}={value!r} is not one of {_DTYPES}")
        for name in ("query_scale", "attn_softcap", "final_softcap", "sliding_window"):
            value = getattr(self, name)
            _require(value is None or value > 0, f"{name} must be positive or None, got {value}")
        _require(self.rope_factor > 0, f"rope_factor must be positive, got {self.rope_factor}")
        if self.rope_scaling is RopeScaling.llama3:
            _require(
                self.rope_high_freq_factor > self.rope_low_freq_factor,
                "rope_high_freq_factor must exceed rope_low_freq_factor",
            )
        bad = [i for i in self.sliding_layers or () if not 0 <= i < self.n_layers]
        _require(not bad, f"sliding_layers {bad} are not layers of a {self.n_layers}-layer model")

    @property
    def head_dim(self) -> int:
        return self.explicit_head_dim or self.dim // self.n_heads

    def is_sliding(self, layer: int) -> bool:
        """Whether `layer` attends within the sliding window."""
        if self.sliding_window is None:
            return False
        return self.sliding_layers is None or layer in self.sliding_layers


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(f"DecoderConfig: {message}")


def _layer_matmul_params(cfg: DecoderConfig) -> int:
    """Weights of one block's projections (q, k, v, o, and gate, up, down)."""
    q_and_o = 2 * cfg.dim * cfg.n_heads * cfg.head_dim
    k_and_v = 2 * cfg.dim * cfg.n_kv_heads * cfg.head_dim
    mlp = (3 if cfg.gated_mlp else 2) * cfg.dim * cfg.ffn_dim
    return q_and_o + k_and_v + mlp


def _layer_vector_params(cfg: DecoderConfig) -> int:
    """Biases and norm weights of one block."""
    norm = cfg.dim * (2 if cfg.norm is NormKind.layer else 1)
    n_norms = 4 if cfg.sandwich_norm else 2
    qk_norms = 2 * cfg.head_dim if cfg.qk_norm else 0
    qkv_bias = (cfg.n_heads + 2 * cfg.n_kv_heads) * cfg.head_dim if cfg.qkv_bias else 0
    out_bias = cfg.dim if cfg.out_bias else 0
    mlp_bias = (2 if cfg.gated_mlp else 1) * cfg.ffn_dim + cfg.dim if cfg.mlp_bias else 0
    return n_norms * norm + qk_norms + qkv_bias + out_bias + mlp_bias


def num_params(cfg: DecoderConfig) -> int:
    """Exact number of parameters `Decoder(cfg)` holds."""
    per_layer = _layer_matmul_params(cfg) + _layer_vector_params(cfg)
    embed = cfg.vocab_size * cfg.dim
    positions = cfg.max_seq_len * cfg.dim if cfg.position is PositionKind.learned else 0
    final_norm = cfg.dim * (2 if cfg.norm is NormKind.layer else 1)
    head = 0 if cfg.tie_embeddings else cfg.vocab_size * cfg.dim
    return embed + positions + cfg.n_layers * per_layer + final_norm + head


def flops_per_token(cfg: DecoderConfig, seq_len: int) -> int:
    """Training FLOPs per token: forward + backward = 3 x forward (2 FLOPs per MAC).

    6 * N counts every matmul weight once per token: the blocks' projections and the
    output head (vocab x dim, counted even when tied, since the matmul still runs); the
    embedding lookups, biases and norm scales do no matmul and are left out. The
    attention term 12 * layers * heads * head_dim * seq_len covers q.k^T and p.v over
    the full (unmasked, unwindowed) sequence, as in the PaLM paper's MFU estimate.
    """
    matmul_params = cfg.n_layers * _layer_matmul_params(cfg) + cfg.vocab_size * cfg.dim
    attention = 12 * cfg.n_layers * cfg.n_heads * cfg.head_dim * seq_len
    return 6 * matmul_params + attention


# ---------------------------------------------------------------------------- blocks


def _normal(cfg: DecoderConfig) -> nnx.Initializer:
    return nnx.initializers.normal(stddev=cfg.init_std)


def _embed(cfg: DecoderConfig, rows: int, rngs: nnx.Rngs) -> nnx.Embed:
    """A [rows, dim] table: token embeddings (rows = vocab) or learned positions."""
    return nnx.Embed(
        rows,
        cfg.dim,
        dtype=jnp.dtype(cfg.dtype),
        param_dtype=jnp.dtype(cfg.param_dtype),
        embedding_init=_normal(cfg),
        rngs=rngs,
    )


def _linear(
    cfg: DecoderConfig, d_in: int, d_out: int, rngs: nnx.Rngs, *, bias: bool = False
) -> nnx.Linear:
    return nnx.Linear(
        d_in,
        d_out,
        use_bias=bias,
        dtype=jnp.dtype(cfg.dtype),
        param_dtype=jnp.dtype(cfg.param_dtype),
        kernel_init=_normal(cfg),
        rngs=rngs,
    )


class Norm(nnx.Module):
    """RMSNorm, or LayerNorm with a bias, over the last axis; statistics in float32.

    The applied scale is `offset + scale`: Gemma stores its weights minus one, so its
    scale starts at zero.
    """

    def __init__(self, cfg: DecoderConfig, width: int | None = None, kind: NormKind | None = None):
        width = width or cfg.dim
        pdtype = jnp.dtype(cfg.param_dtype)
        self.kind = kind or cfg.norm
        self.eps, self.offset = cfg.norm_eps, cfg.norm_offset
        init = jnp.zeros if self.offset else jnp.ones
        self.scale = nnx.Param(init((width,), pdtype))
        self.bias = nnx.Param(jnp.zeros((width,), pdtype)) if self.kind is NormKind.layer else None

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        if self.kind is NormKind.layer:
            x32 = x32 - jnp.mean(x32, axis=-1, keepdims=True)
        mean_sq = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)  # [..., 1]
        scale = self.scale[...].astype(jnp.float32)
        if self.offset:
            scale = scale + self.offset
        y = x32 * jax.lax.rsqrt(mean_sq + self.eps) * scale
        if self.bias is not None:
            y = y + self.bias[...].astype(jnp.float32)
        return y.astype(x.dtype)


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
    if segment_ids is not None:
        same = segment_ids[:, :, None] == segment_ids[:, None, :]  # [b, q, k]
        mask = mask & same[:, None]
    return mask


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


class KVCache(NamedTuple):
    """One layer's keys and values by position: slot j of row b holds position j."""

    k: jax.Array  # [b, t, g, e]
    v: jax.Array  # [b, t, g, e]

    def write(self, k: jax.Array, v: jax.Array, positions: jax.Array) -> KVCache:
        """Store k, v [b, s, g, e] at each row's own positions [b, s]."""
        rows = jnp.arange(k.shape[0])[:, None]  # [b, 1]
        return KVCache(
            self.k.at[rows, positions].set(k.astype(self.k.dtype)),
            self.v.at[rows, positions].set(v.astype(self.v.dtype)),
        )


class Attention(nnx.Module):
    """Causal grouped-query attention: n_heads query heads share n_kv_heads kv heads."""

    def __init__(self, cfg: DecoderConfig, *, rngs: nnx.Rngs):
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.score_divisor_sq = cfg.query_scale or cfg.head_dim  # scores / sqrt(this)
        self.softcap = cfg.attn_softcap
        q_width, kv_width = cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
        self.q_proj = _linear(cfg, cfg.dim, q_width, rngs, bias=cfg.qkv_bias)
        self.k_proj = _linear(cfg, cfg.dim, kv_width, rngs, bias=cfg.qkv_bias)
        self.v_proj = _linear(cfg, cfg.dim, kv_width, rngs, bias=cfg.qkv_bias)
        self.o_proj = _linear(cfg, q_width, cfg.dim, rngs, bias=cfg.out_bias)
        self.q_norm = Norm(cfg, cfg.head_dim, NormKind.rms) if cfg.qk_norm else None
        self.k_norm = Norm(cfg, cfg.head_dim, NormKind.rms) if cfg.qk_norm else None

    def __call__(self, x: jax.Array, rope: Rope, mask: jax.Array) -> jax.Array:
        q, k, v = self._project(x, rope)
        return self._attend(q, k, v, mask)

    def cached(
        self, x: jax.Array, rope: Rope, mask: jax.Array, cache: KVCache, positions: jax.Array
    ) -> tuple[jax.Array, KVCache]:
        """Attend from x [b, s, d] at `positions` [b, s] over the cache plus x's own keys."""
        q, k, v = self._project(x, rope)
        cache = cache.write(k, v, positions)
        return self._attend(q, cache.k, cache.v, mask), cache

    def _project(self, x: jax.Array, rope: Rope) -> tuple[jax.Array, jax.Array, jax.Array]:
        b, s, _ = x.shape
        q = self.q_proj(x).reshape(b, s, self.n_heads, self.head_dim)  # [b, s, h, e]
        k = self.k_proj(x).reshape(b, s, self.n_kv_heads, self.head_dim)  # [b, s, g, e]
        v = self.v_proj(x).reshape(b, s, self.n_kv_heads, self.head_dim)  # [b, s, g, e]
        if self.q_norm is not None and self.k_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        return q, k, v

    def _attend(self, q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array) -> jax.Array:
        """q [b, q, h, e] over k, v [b, k, g, e] -> [b, q, d]."""
        b, s = q.shape[:2]
        # Query head i reads kv head i // (h / g), as in HF `repeat_kv`.
        groups = self.n_heads // self.n_kv_heads
        k = jnp.repeat(k, groups, axis=2)  # [b, k, h, e]
        v = jnp.repeat(v, groups, axis=2)  # [b, k, h, e]

        scores = jnp.einsum("bqhe,bkhe->bhqk", q, k, preferred_element_type=jnp.float32)
        scores = scores / jnp.sqrt(jnp.float32(self.score_divisor_sq))
        if self.softcap is not None:
            scores = self.softcap * jnp.tanh(scores / self.softcap)
        scores = scores + jnp.where(mask, 0.0, _MASK_VALUE)  # [b, h, q, k], float32
        probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
        out = jnp.einsum("bhqk,bkhe->bqhe", probs, v)  # [b, s, h, e]
        return self.o_proj(out.reshape(b, s, self.n_heads * self.head_dim))


class MLP(nnx.Module):
    """Gated: down(act(gate(x)) * up(x)) (SwiGLU, GeGLU); plain: down(act(up(x)))."""

    def __init__(self, cfg: DecoderConfig, *, rngs: nnx.Rngs):
        self.activation = cfg.activation
        d, f, bias = cfg.dim, cfg.ffn_dim, cfg.mlp_bias
        self.gate_proj = _linear(cfg, d, f, rngs, bias=bias) if cfg.gated_mlp else None
        self.up_proj = _linear(cfg, d, f, rngs, bias=bias)
        self.down_proj = _linear(cfg, f, d, rngs, bias=bias)

    def __call__(self, x: jax.Array) -> jax.Array:
        act = _ACTIVATIONS[self.activation]
        if self.gate_proj is None:
            hidden = act(self.up_proj(x))  # [b, s, f]
        else:
            hidden = act(self.gate_proj(x)) * self.up_proj(x)  # [b, s, f]
        return self.down_proj(hidden)


class Block(nnx.Module):
    """Pre-norm residual block: x + attn(norm(x)), then x + mlp(norm(x)).

    With sandwich norms each branch output is normalised again before the add.
    """

    def __init__(self, cfg: DecoderConfig, *, sliding: bool, rngs: nnx.Rngs):
        self.sliding = sliding
        self.attn_norm = Norm(cfg)
        self.attn = Attention(cfg, rngs=rngs)
        self.post_attn_norm = Norm(cfg) if cfg.sandwich_norm else None
        self.mlp_norm = Norm(cfg)
        self.mlp = MLP(cfg, rngs=rngs)
        self.post_mlp_norm = Norm(cfg) if cfg.sandwich_norm else None

    def __call__(self, x: jax.Array, rope: Rope, mask: jax.Array) -> jax.Array:
        return self._finish(x, self.attn(self.attn_norm(x), rope, mask))

    def cached(
        self, x: jax.Array, rope: Rope, mask: jax.Array, cache: KVCache, positions: jax.Array
    ) -> tuple[jax.Array, KVCache]:
        h, cache = self.attn.cached(self.attn_norm(x), rope, mask, cache, positions)
        return self._finish(x, h), cache

    def _finish(self, x: jax.Array, h: jax.Array) -> jax.Array:
        """The residual adds around the attention output h [b, s, d], and the MLP."""
        if self.post_attn_norm is not None:
            h = self.post_attn_norm(h)
        x = x + h
        h = self.mlp(self.mlp_norm(x))
        if self.post_mlp_norm is not None:
            h = self.post_mlp_norm(h)
        return x + h


@nnx.remat
def _remat_block(block: Block, x: jax.Array, rope: Rope, mask: jax.Array) -> jax.Array:
    """The block, keeping only its input for the backward pass."""
    return block(x, rope, mask)


# ---------------------------------------------------------------------------- model


class Decoder(nnx.Module):
    """Token ids [b, s] -> float32 logits [b, s, v]."""

    def __init__(self, cfg: DecoderConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.embed = _embed(cfg, cfg.vocab_size, rngs)
        self.pos_embed = (
            _embed(cfg, cfg.max_seq_len, rngs) if cfg.position is PositionKind.learned else None
        )
        self.layers = nnx.List(
            [Block(cfg, sliding=cfg.is_sliding(i), rngs=rngs) for i in range(cfg.n_layers)]
        )
        self.final_norm = Norm(cfg)
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
        cfg = self.cfg
        b, s = tokens.shape
        if s > cfg.max_seq_len:
            raise ValueError(
                f"sequence length {s} exceeds DecoderConfig.max_seq_len={cfg.max_seq_len}"
            )
        if positions is None:
            positions = jnp.broadcast_to(jnp.arange(s, dtype=jnp.int32), (b, s))
        mask = attention_mask(segment_ids, s)
        local = mask if cfg.sliding_window is None else mask & window_band(s, cfg.sliding_window)
        x, rope = self._inputs(tokens, positions)
        for layer in self.layers:
            layer_mask = local if layer.sliding else mask
            x = (
                _remat_block(layer, x, rope, layer_mask)
                if cfg.remat
                else layer(x, rope, layer_mask)
            )
        return self._logits(x)

    def init_cache(self, batch: int, length: int) -> list[KVCache]:
        """Empty per-layer caches of `length` positions, for `extend`."""
        cfg = self.cfg
        shape = (batch, length, cfg.n_kv_heads, cfg.head_dim)  # [b, t, g, e]
        zeros = jnp.zeros(shape, jnp.dtype(cfg.dtype))
        return [KVCache(zeros, zeros) for _ in self.layers]

    def extend(
        self, tokens: jax.Array, positions: jax.Array, caches: list[KVCache]
    ) -> tuple[jax.Array, list[KVCache]]:
        """Run tokens [b, s] at positions [b, s] against the caches; logits [b, s, v].

        Each row's keys and values are written at its own positions, and each token
        attends to the cached positions at or before its own, so a prompt (s tokens
        from position 0) and then one token at a time give the logits of `__call__`.
        """
        cfg = self.cfg
        cache_len = caches[0].k.shape[1]
        if cache_len > cfg.max_seq_len:
            raise ValueError(
                f"cache length {cache_len} exceeds DecoderConfig.max_seq_len={cfg.max_seq_len}"
            )
        mask = cache_mask(positions, cache_len, None)
        local = cache_mask(positions, cache_len, cfg.sliding_window)
        x, rope = self._inputs(tokens, positions)
        updated = []
        for layer, cache in zip(self.layers, caches, strict=True):
            x, cache = layer.cached(x, rope, local if layer.sliding else mask, cache, positions)
            updated.append(cache)
        return self._logits(x), updated

    def _inputs(self, tokens: jax.Array, positions: jax.Array) -> tuple[jax.Array, Rope]:
        """Embeddings [b, s, d] of tokens [b, s], and the rotary angles of positions."""
        cfg = self.cfg
        x = self.embed(tokens)  # [b, s, d]
        if cfg.embed_scale:
            x = x * jnp.asarray(math.sqrt(cfg.dim), x.dtype)  # HF rounds sqrt(d) to this dtype
        if self.pos_embed is not None:
            return x + self.pos_embed(positions), None
        return x, rope_angles(positions, rope_inv_freq(cfg))

    def _logits(self, x: jax.Array) -> jax.Array:
        """Final norm and output head: x [b, s, d] -> float32 logits [b, s, v]."""
        cfg = self.cfg
        x = self.final_norm(x)
        logits = self.embed.attend(x) if self.lm_head is None else self.lm_head(x)
        logits = logits.astype(jnp.float32)  # [b, s, v]
        if cfg.final_softcap is not None:
            logits = cfg.final_softcap * jnp.tanh(logits / cfg.final_softcap)
        return logits
