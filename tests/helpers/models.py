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
