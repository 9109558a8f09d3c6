"""Build the model a config asks for: a decoder trained from scratch, or a pretrained
Hugging Face checkpoint; then LoRA adapters, remat and scanned layers, placed on the
device mesh."""

from __future__ import annotations

import dataclasses
import logging

import jax
import jax.numpy as jnp
from flax import nnx

from tunixrt.config import ConfigError, ModelConfig
from tunixrt.devices import Devices
from tunixrt.models.decoder import Decoder, DecoderConfig, num_params, use_query_blocks
from tunixrt.models.dots import use_f32_results
from tunixrt.models.hf import load_pretrained
from tunixrt.models.lora import apply_lora
from tunixrt.sharding import place

log = logging.getLogger(__name__)


# DecoderConfig fields that do not come from ModelConfig: the vocabulary comes from the
# tokenizer (or model.vocab_size), the dtypes from the device's precision.
_FROM_RUN = ("vocab_size", "dtype", "param_dtype", "family", "explicit_head_dim")


def decoder_config(cfg: ModelConfig, *, vocab_size: int, dtype: jnp.dtype) -> DecoderConfig:
    """The DecoderConfig of a model trained from scratch: every layout key of
    `model.*` by its name. `model.vocab_size` (if set) must hold every id the tokenizer
    produces."""
    vocab = cfg.vocab_size if cfg.vocab_size is not None else vocab_size
    if vocab < vocab_size:
        raise ConfigError(
            f"model.vocab_size={vocab} is smaller than the tokenizer's vocabulary ({vocab_size})"
        )
    layout = {
        f.name: getattr(cfg, f.name)
        for f in dataclasses.fields(DecoderConfig)
        if f.name not in _FROM_RUN
    }
    try:
        return DecoderConfig(
            **layout,
            vocab_size=vocab,
            dtype=jnp.dtype(dtype).name,
            family=cfg.family or "llama",
            explicit_head_dim=cfg.head_dim,
        )
    except ValueError as err:
        raise ConfigError(f"model {cfg.name}: {err}") from None


def _pretrained(
    cfg: ModelConfig, *, vocab_size: int, dtype: jnp.dtype, devices: Devices
) -> Decoder:
    assert cfg.path is not None
    model = load_pretrained(
        cfg.path,
        dtype=jnp.dtype(dtype).name,
        param_dtype="float32",
        sharding=devices.replicated,
        attention=cfg.attention,
    )
    found = model.cfg.family
    if cfg.family is not None and found != cfg.family:
        raise ConfigError(f"model.family={cfg.family!r} but {cfg.path} holds a {found!r} model")
    if model.cfg.vocab_size < vocab_size:
        raise ConfigError(
            f"{cfg.path}: the tokenizer has {vocab_size} ids but the model "
            f"embeds only {model.cfg.vocab_size}"
        )
    # How the layers run, not what they hold: these apply to a checkpoint's model too.
    model.cfg = dataclasses.replace(model.cfg, remat=cfg.remat, scan_layers=cfg.scan_layers)
    return model


def build_model(
    cfg: ModelConfig, *, vocab_size: int, dtype: jnp.dtype, seed: int, devices: Devices
) -> Decoder:
    """The model on the mesh, its weights split by `tunixrt.sharding`'s rules; LoRA
    adapters when model.lora.rank > 0, initialised from `seed`."""
    if cfg.path is not None:
        model = _pretrained(cfg, vocab_size=vocab_size, dtype=dtype, devices=devices)
    else:
        dcfg = decoder_config(cfg, vocab_size=vocab_size, dtype=dtype)
        with jax.default_device(devices.local[0]):
            model = Decoder(dcfg, rngs=nnx.Rngs(params=seed))
    if cfg.lora.rank > 0:
        apply_lora(
            model,
            rank=cfg.lora.rank,
            alpha=cfg.lora.alpha,
            targets=tuple(cfg.lora.targets),
            rngs=nnx.Rngs(params=seed),
        )
    if devices.f32_matmul_output:
        use_f32_results(model)
    if devices.platform == "cpu":
        use_query_blocks(model)
    place(model, devices.mesh)
    _log_size(cfg, model)
    return model


def trainable(cfg: ModelConfig) -> type[nnx.Variable]:
    """The variables the optimizer updates: the adapters under LoRA, else every Param."""
    return nnx.LoRAParam if cfg.lora.rank > 0 else nnx.Param


def _log_size(cfg: ModelConfig, model: Decoder) -> None:
    total = num_params(model.cfg)
    if cfg.lora.rank > 0:
        adapters = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.LoRAParam)))
        log.info(
            "model %s: %.2fM parameters, %.3fM LoRA parameters train (%.2f%%)",
            cfg.name,
            total / 1e6,
            adapters / 1e6,
            100 * adapters / (total + adapters),
        )
    else:
        log.info("model %s: %.2fM parameters", cfg.name, total / 1e6)
