"""Build a decoder from the model config and place its state on the device mesh."""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
from flax import nnx

from tunixrt.config import ConfigError, ModelConfig
from tunixrt.devices import Devices
from tunixrt.models.decoder import Decoder, DecoderConfig, num_params

log = logging.getLogger(__name__)


def decoder_config(cfg: ModelConfig, *, vocab_size: int, dtype: jnp.dtype) -> DecoderConfig:
    """`model.vocab_size` (if set) must hold every id the tokenizer produces."""
    vocab = cfg.vocab_size if cfg.vocab_size is not None else vocab_size
    if vocab < vocab_size:
        raise ConfigError(
            f"model.vocab_size={vocab} is smaller than the tokenizer's vocabulary ({vocab_size})"
        )
    return DecoderConfig(
        vocab_size=vocab,
        dim=cfg.dim,
        n_layers=cfg.n_layers,
        n_heads=cfg.n_heads,
        n_kv_heads=cfg.n_kv_heads,
        ffn_dim=cfg.ffn_dim,
        max_seq_len=cfg.max_seq_len,
        rope_theta=cfg.rope_theta,
        norm_eps=cfg.norm_eps,
        tie_embeddings=cfg.tie_embeddings,
        dtype=jnp.dtype(dtype).name,
        init_std=cfg.init_std,
    )


def build_model(
    cfg: ModelConfig, *, vocab_size: int, dtype: jnp.dtype, seed: int, devices: Devices
) -> Decoder:
    """A freshly initialised decoder, its parameters replicated over the mesh."""
    dcfg = decoder_config(cfg, vocab_size=vocab_size, dtype=dtype)
    with jax.default_device(devices.devices[0]):
        model = Decoder(dcfg, rngs=nnx.Rngs(params=seed))
    state = nnx.state(model)
    nnx.update(model, jax.device_put(state, devices.replicated))
    log.info("model %s: %.2fM parameters", cfg.name, num_params(dcfg) / 1e6)
    return model
