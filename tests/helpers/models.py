"""Tiny decoder configs: tens of thousands of parameters, quick to build and run on a CPU."""

from __future__ import annotations

from typing import Any

from tunixrt.models import DecoderConfig


def tiny_decoder_config(
    *,
    vocab_size: int = 64,
    dim: int = 32,
    n_layers: int = 2,
    n_heads: int = 4,
    n_kv_heads: int = 2,  # fewer than n_heads, so grouped-query attention is exercised
    ffn_dim: int = 64,
    max_seq_len: int = 64,
    **overrides: Any,
) -> DecoderConfig:
    """A Llama-layout DecoderConfig with small sizes; `overrides` set any other field.
    Fields not given keep DecoderConfig's own defaults."""
    return DecoderConfig(
        vocab_size=vocab_size,
        dim=dim,
        n_layers=n_layers,
        n_heads=n_heads,
        n_kv_heads=n_kv_heads,
        ffn_dim=ffn_dim,
        max_seq_len=max_seq_len,
        **overrides,
    )


# A config per family layout; the HF tests check each against transformers.
VARIANTS = {
    "gpt2": dict(
        norm="layer",
        activation="gelu_tanh",
        gated_mlp=False,
        qkv_bias=True,
        out_bias=True,
        mlp_bias=True,
        position="learned",
        tie_embeddings=True,
    ),
    "gemma2": dict(
        explicit_head_dim=16,
        norm_offset=1.0,
        sandwich_norm=True,
        activation="gelu_tanh",
        embed_scale=True,
        query_scale=24.0,
        attn_softcap=5.0,
        final_softcap=8.0,
        sliding_window=4,
        sliding_layers=[0],
    ),
    "qwen3": dict(explicit_head_dim=12, qk_norm=True, rope_scaling="llama3", rope_factor=8.0),
    "qwen2": dict(qkv_bias=True, sliding_window=3),
}
