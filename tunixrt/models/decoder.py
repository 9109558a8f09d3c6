"""Decoder-only transformer in Flax NNX: one layout with per-family switches.

The defaults are the Llama layout (RMSNorm, RoPE, SwiGLU, no biases). The switches in
`DecoderConfig` cover Mistral, Qwen2/2.5, Qwen3, Gemma, Gemma 2 and GPT-2; each field
names the family that needs it. `tunixrt.models.hf` maps Hugging Face configs and
tensors onto this layout.

Reads top-down: the blocks (norm, attention with its KV cache, MLP, residual block),
the layer stack as one scan (`DecoderConfig.scan_layers`), then the model. The config
and its analytic size/cost live in `decoder_config.py`, rotary embeddings and attention
masks in `positions.py`; both are re-exported here.

Shape letters in comments: b batch, s / q / k sequence (query / key), d model width,
h query heads, g kv heads, e head width, f MLP hidden width, v vocabulary.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from tunixrt.config import Activation, NormKind, PositionKind
from tunixrt.models.decoder_config import DecoderConfig, flops_per_token, num_params
from tunixrt.models.positions import (
    Rope,
    apply_rope,
    attention_mask,
    cache_mask,
    rope_angles,
    rope_inv_freq,
    segment_mask,
    window_band,
)

__all__ = [
    "Decoder",
    "DecoderConfig",
    "KVCache",
    "apply_rope",
    "flops_per_token",
    "num_params",
    "rope_angles",
    "rope_inv_freq",
]

log = logging.getLogger(__name__)

_ACTIVATIONS: dict[Activation, Callable[[jax.Array], jax.Array]] = {
    Activation.silu: jax.nn.silu,
    Activation.gelu: functools.partial(jax.nn.gelu, approximate=False),
    Activation.gelu_tanh: functools.partial(jax.nn.gelu, approximate=True),
}

# Added to masked attention scores. Finite, so a row whose keys are all masked stays
# finite instead of producing NaN; far enough below any real score that exp() is 0.
_MASK_VALUE = -1e30

# Fewest queries in a block of `Attention._fused_blocks`: smaller blocks add more
# products than they save (learn_check's 512-token rows are fastest in 8 blocks of 64).
MIN_QUERY_BLOCK = 64


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


class KVCache(NamedTuple):
    """One layer's keys and values by position: slot j of row b holds position j. Heads
    come before positions, so a decode step's products read each row's kv head as one
    contiguous [t, e] block (XLA:CPU transposed a [b, t, g, e] cache every step)."""

    k: jax.Array  # [b, g, t, e]
    v: jax.Array  # [b, g, t, e]

    def write(self, k: jax.Array, v: jax.Array, positions: jax.Array) -> KVCache:
        """Store k, v [b, s, g, e] at each row's own positions [b, s]."""
        rows = jnp.arange(k.shape[0])[:, None]  # [b, 1]
        # the two index arrays around a slice index [b, s] first: the update is [b, s, g, e]
        return KVCache(
            self.k.at[rows, :, positions].set(k.astype(self.k.dtype)),
            self.v.at[rows, :, positions].set(v.astype(self.v.dtype)),
        )


class Attention(nnx.Module):
    """Causal grouped-query attention: n_heads query heads share n_kv_heads kv heads.

    Fused (`DecoderConfig.fused_attention`) through jax.nn.dot_product_attention, which
    reads kv head i // (h / g) for query head i without repeating k and v; otherwise
    the reference einsums, which also apply Gemma 2's score soft-cap. Fused on a CPU,
    block by block over the queries (`use_query_blocks`). Over a KV cache
    (generation) both take the same grouped einsums (`_over_cache`).
    """

    def __init__(self, cfg: DecoderConfig, *, window: int | None, rngs: nnx.Rngs):
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.score_divisor_sq = cfg.query_scale or cfg.head_dim  # scores / sqrt(this)
        self.softcap = cfg.attn_softcap
        self.window = window  # keys fewer than this many tokens back; None: every earlier key
        self.fused = cfg.fused_attention
        # Fused attention in up to this many query blocks (`use_query_blocks`); 1: one product.
        self.query_blocks = 1
        q_width, kv_width = cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
        self.q_proj = _linear(cfg, cfg.dim, q_width, rngs, bias=cfg.qkv_bias)
        self.k_proj = _linear(cfg, cfg.dim, kv_width, rngs, bias=cfg.qkv_bias)
        self.v_proj = _linear(cfg, cfg.dim, kv_width, rngs, bias=cfg.qkv_bias)
        self.o_proj = _linear(cfg, q_width, cfg.dim, rngs, bias=cfg.out_bias)
        self.q_norm = Norm(cfg, cfg.head_dim, NormKind.rms) if cfg.qk_norm else None
        self.k_norm = Norm(cfg, cfg.head_dim, NormKind.rms) if cfg.qk_norm else None

    def __call__(self, x: jax.Array, rope: Rope, segment_ids: jax.Array | None) -> jax.Array:
        """x [b, s, d], causal within the packed segments of segment_ids [b, s] (None:
        one sequence per row), within the window if any -> [b, s, d]."""
        q, k, v = self._project(x, rope)
        if self.fused and self.query_blocks > 1:
            out = self._fused_blocks(q, k, v, segment_mask(segment_ids))
        elif self.fused:
            out = self._fused(q, k, v, segment_mask(segment_ids))
        else:
            mask = attention_mask(segment_ids, x.shape[1])
            if self.window is not None:
                mask = mask & window_band(x.shape[1], self.window)
            out = self._reference(q, k, v, mask)
        return self._output(out)

    def cached(
        self, x: jax.Array, rope: Rope, mask: jax.Array, cache: KVCache, positions: jax.Array
    ) -> tuple[jax.Array, KVCache]:
        """Attend from x [b, s, d] at `positions` [b, s] over the cache plus x's own keys;
        `mask` [b, 1, s, t] (`cache_mask`) already holds causality and the window."""
        q, k, v = self._project(x, rope)
        cache = cache.write(k, v, positions)
        return self._output(self._over_cache(q, cache, mask)), cache

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

    def _fused(self, q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None) -> jax.Array:
        """q [b, q, h, e] over k, v [b, k, g, e] -> [b, q, h, e]; `mask` [b, 1, q, k] or
        None. Causal and windowed by index, as `attention_mask` and `window_band` are: a
        key at most window - 1 tokens back, none ahead."""
        window = (self.window - 1, 0) if self.window is not None else None
        return jax.nn.dot_product_attention(
            q,
            k,
            v,
            mask=mask,
            scale=1.0 / math.sqrt(self.score_divisor_sq),
            is_causal=True,
            local_window_size=window,
        )

    def _fused_blocks(
        self, q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None
    ) -> jax.Array:
        """`_fused` computed block by block over the queries: the queries [start, end)
        attend to the keys [lo, end) only, lo the first key the window lets them reach
        (0 without a window), so the products and the softmax skip the keys causality
        masks anyway, about half of them, and each block's scores stay in cache. The
        same result as `_fused` up to float32 rounding; mask [b, 1, q, k] or None."""
        t = q.shape[1]
        n = min(self.query_blocks, max(1, t // MIN_QUERY_BLOCK))
        cuts = [i * t // n for i in range(n + 1)]
        outs = []
        for start, end in zip(cuts, cuts[1:], strict=False):
            lo = 0 if self.window is None else max(0, start - self.window + 1)
            query, key = jnp.arange(start, end)[:, None], jnp.arange(lo, end)[None, :]
            allowed = key <= query  # [q, k] of this block
            if self.window is not None:
                allowed = allowed & (query - key < self.window)
            allowed = allowed[None, None]  # [1, 1, q, k]
            if mask is not None:
                allowed = allowed & mask[:, :, start:end, lo:end]
            out = jax.nn.dot_product_attention(
                q[:, start:end],
                k[:, lo:end],
                v[:, lo:end],
                mask=allowed,
                scale=1.0 / math.sqrt(self.score_divisor_sq),
            )
            outs.append(out)
        return jnp.concatenate(outs, axis=1)

    def _over_cache(self, q: jax.Array, cache: KVCache, mask: jax.Array) -> jax.Array:
        """q [b, s, h, e] over the cache's k, v [b, g, t, e] -> [b, s, h, e]; `mask`
        [b, 1, s, t]. Query head i reads kv head i // r (r = h / g) by splitting h into
        [g, r], with no repeated k or v; the soft-cap as `_reference`."""
        b, s, _, e = q.shape
        g = self.n_kv_heads
        q = q.reshape(b, s, g, self.n_heads // g, e)  # [b, s, g, r, e]
        scores = jnp.einsum("bsgre,bgte->bgrst", q, cache.k, preferred_element_type=jnp.float32)
        scores = scores / jnp.sqrt(jnp.float32(self.score_divisor_sq))
        if self.softcap is not None:
            scores = self.softcap * jnp.tanh(scores / self.softcap)
        scores = scores + jnp.where(mask[:, :, None], 0.0, _MASK_VALUE)  # [b, g, r, s, t]
        probs = jax.nn.softmax(scores, axis=-1).astype(cache.v.dtype)
        out = jnp.einsum("bgrst,bgte->bsgre", probs, cache.v)
        return out.reshape(b, s, self.n_heads, e)

    def _reference(self, q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array) -> jax.Array:
        """q [b, q, h, e] over k, v [b, k, g, e] -> [b, q, h, e]; `mask` [b, 1, q, k]."""
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
        return jnp.einsum("bhqk,bkhe->bqhe", probs, v)

    def _output(self, out: jax.Array) -> jax.Array:
        """Heads [b, s, h, e] -> [b, s, d]."""
        b, s = out.shape[:2]
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
        self.attn = Attention(cfg, window=cfg.sliding_window if sliding else None, rngs=rngs)
        self.post_attn_norm = Norm(cfg) if cfg.sandwich_norm else None
        self.mlp_norm = Norm(cfg)
        self.mlp = MLP(cfg, rngs=rngs)
        self.post_mlp_norm = Norm(cfg) if cfg.sandwich_norm else None

    def __call__(self, x: jax.Array, rope: Rope, segment_ids: jax.Array | None) -> jax.Array:
        return self._finish(x, self.attn(self.attn_norm(x), rope, segment_ids))

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
def _remat_block(
    block: Block, x: jax.Array, rope: Rope, segment_ids: jax.Array | None
) -> jax.Array:
    """The block, keeping only its input for the backward pass."""
    return block(x, rope, segment_ids)


# ----------------------------------------------------------------------- scanned stack


_LayerKind = tuple[nnx.GraphDef[Block], tuple[tuple[tuple[int, ...], jnp.dtype], ...]]


def _layer_kind(block: Block) -> _LayerKind:
    """What must match for two blocks to share a scanned body: the module structure
    with its static fields (the window, LoRA adapters), and every weight's shape and dtype."""
    graphdef, state = nnx.split(block)
    return graphdef, tuple((leaf.shape, leaf.dtype) for leaf in jax.tree.leaves(state))


def scan_period(layers: list[Block]) -> int | None:
    """The smallest p dividing n_layers, and less than it (unless there is one layer),
    such that every layer i is built like layer i + p (1: all alike; 2: Gemma 2's
    alternating windows); None if there is none."""
    kinds = [_layer_kind(layer) for layer in layers]
    n = len(kinds)
    for p in range(1, max(n, 2)):  # one layer: a scan of one step
        if n % p == 0 and all(kinds[i] == kinds[i + p] for i in range(n - p)):
            return p
    labels = {kind: chr(ord("A") + i) for i, kind in enumerate(dict.fromkeys(kinds))}
    _log_once(
        f"model.scan_layers: the layer kinds {''.join(labels[k] for k in kinds)} repeat with "
        f"no period shorter than the {n} layers that divides them; the layers run unrolled"
    )
    return None


@functools.cache
def _log_once(message: str) -> None:
    log.info(message)


def _scanned(
    layers: list[Block],
    period: int,
    x: jax.Array,
    rope: Rope,
    segment_ids: jax.Array | None,
    *,
    remat: bool,
) -> jax.Array:
    """x [b, s, d] through the layers as n_layers / period steps of one jax.lax.scan,
    each step running `period` consecutive layers: one compiled body, not n_layers.

    Step j runs layers j * period + k for k < period, layer j * period + k with row j of
    a stack [n_layers / period, ...] of the weights of the layers at offset k, built
    here from the layers' own Params, so gradients flow back through the stack to each
    layer's weights. With remat a step keeps only its input x for the backward pass,
    as `_remat_block` does.
    """
    graphdefs, stacks = [], []
    for k in range(period):
        split = [nnx.split(layer) for layer in layers[k::period]]
        graphdefs.append(split[0][0])
        stacks.append(jax.tree.map(lambda *w: jnp.stack(w), *(state for _, state in split)))

    def step(x: jax.Array, weights: list[nnx.State]) -> tuple[jax.Array, None]:
        for graphdef, w in zip(graphdefs, weights, strict=True):
            x = nnx.merge(graphdef, w)(x, rope, segment_ids)
        return x, None

    if remat:
        step = jax.checkpoint(step, prevent_cse=False)  # a scan keeps steps apart already
    x, _ = jax.lax.scan(step, x, stacks)
    return x


# ---------------------------------------------------------------------------- model


class Decoder(nnx.Module):
    """Token ids [b, s] -> float32 logits [b, s, v]: `head(hidden_states(tokens))`."""

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
        # x [..., d], embedding [v, d] -> logits [..., v] of a tied head; None: embed.attend
        # (tunixrt.models.dots.use_f32_results sets a float32-result product)
        self.tied_head: Callable[[jax.Array, jax.Array], jax.Array] | None = None

    def __call__(
        self,
        tokens: jax.Array,
        *,
        positions: jax.Array | None = None,
        segment_ids: jax.Array | None = None,
    ) -> jax.Array:
        """tokens, positions, segment_ids: int32 [b, s] -> float32 logits [b, s, v].

        Segment 0 marks padding. Packed rows pass per-token segment ids and positions
        that restart at 0 for each segment; a token attends to earlier-or-equal tokens
        of its own segment.
        """
        return self.head(self.hidden_states(tokens, positions=positions, segment_ids=segment_ids))

    def hidden_states(
        self,
        tokens: jax.Array,
        *,
        positions: jax.Array | None = None,
        segment_ids: jax.Array | None = None,
    ) -> jax.Array:
        """What `head` turns into logits: the last block's output after the final norm,
        [b, s, d]. A loss can apply the head to a few tokens at a time."""
        cfg = self.cfg
        b, s = tokens.shape
        if s > cfg.max_seq_len:
            raise ValueError(
                f"sequence length {s} exceeds DecoderConfig.max_seq_len={cfg.max_seq_len}"
            )
        if positions is None:
            positions = jnp.broadcast_to(jnp.arange(s, dtype=jnp.int32), (b, s))
        x, rope = self._inputs(tokens, positions)
        layers = list(self.layers)
        period = scan_period(layers) if cfg.scan_layers else None
        if period is not None:
            return self.final_norm(_scanned(layers, period, x, rope, segment_ids, remat=cfg.remat))
        for layer in layers:
            if cfg.remat:
                x = _remat_block(layer, x, rope, segment_ids)
            else:
                x = layer(x, rope, segment_ids)
        return self.final_norm(x)

    def head(self, x: jax.Array) -> jax.Array:
        """Output head of final-normed x [..., d]: float32 logits [..., v], soft-capped
        for Gemma 2."""
        cfg = self.cfg
        if self.lm_head is not None:
            logits = self.lm_head(x)
        elif self.tied_head is not None:
            logits = self.tied_head(x, self.embed.embedding[...])
        else:
            logits = self.embed.attend(x)
        logits = logits.astype(jnp.float32)
        if cfg.final_softcap is not None:
            logits = cfg.final_softcap * jnp.tanh(logits / cfg.final_softcap)
        return logits

    def init_cache(self, batch: int, length: int) -> list[KVCache]:
        """Empty per-layer caches of `length` positions, for `extend`."""
        cfg = self.cfg
        shape = (batch, cfg.n_kv_heads, length, cfg.head_dim)  # [b, g, t, e]
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
        cache_len = caches[0].k.shape[2]
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
        return self.head(self.final_norm(x)), updated

    def _inputs(self, tokens: jax.Array, positions: jax.Array) -> tuple[jax.Array, Rope]:
        """Embeddings [b, s, d] of tokens [b, s], and the rotary angles of positions."""
        cfg = self.cfg
        x = self.embed(tokens)  # [b, s, d]
        if cfg.embed_scale:
            x = x * jnp.asarray(math.sqrt(cfg.dim), x.dtype)  # HF rounds sqrt(d) to this dtype
        if self.pos_embed is not None:
            return x + self.pos_embed(positions), None
        return x, rope_angles(positions, rope_inv_freq(cfg))


def use_query_blocks(model: nnx.Module, blocks: int = 8) -> int:
    """Have every fused attention of `model` run in up to `blocks` query blocks
    (`Attention._fused_blocks`); returns how many attentions. XLA:CPU's attention over
    learn_check's 8 x 512 tokens, forward and backward, took 151 ms in one product and
    79 ms in 8 blocks; llama_small's 2048 tokens 1,063 ms and 405 ms (2-core EPYC)."""
    count = 0
    for _, module in nnx.iter_modules(model):
        if isinstance(module, Attention) and module.fused:
            module.query_blocks = blocks
            count += 1
    return count
