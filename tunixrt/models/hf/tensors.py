"""Hugging Face tensor names <-> Decoder parameter paths, and their layouts.

Each `TensorSpec` is one tensor of a checkpoint: its HF name, the NNX parameter path(s)
it fills, and how the layouts differ:

  same    identical layout (norm weights, biases, embeddings, GPT-2 Conv1D kernels,
          which are already [in, out])
  linear  torch Linear weight [out, in] = NNX kernel [in, out] transposed
  split3  GPT-2's fused c_attn: q | k | v concatenated along the last axis
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tunixrt.models.decoder import DecoderConfig

Path = tuple[str | int, ...]


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    name: str
    paths: tuple[Path, ...]
    layout: str  # "same", "linear" or "split3"


def to_nnx(spec: TensorSpec, array: np.ndarray) -> list[np.ndarray]:
    """The parameter values, in the order of spec.paths, held by an HF tensor."""
    if spec.layout == "linear":
        return [array.T]
    if spec.layout == "split3":
        return np.split(array, 3, axis=-1)
    return [array]


def to_hf(spec: TensorSpec, arrays: list[np.ndarray]) -> np.ndarray:
    """The HF tensor made of the parameter values (the inverse of `to_nnx`)."""
    if spec.layout == "linear":
        return np.ascontiguousarray(arrays[0].T)
    if spec.layout == "split3":
        return np.concatenate(arrays, axis=-1)
    return arrays[0]


def hf_shape(spec: TensorSpec, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
    """The HF tensor's shape given its parameters' shapes."""
    if spec.layout == "linear":
        return tuple(reversed(shapes[0]))
    if spec.layout == "split3":
        return (*shapes[0][:-1], sum(s[-1] for s in shapes))
    return tuple(shapes[0])


def tensor_specs(cfg: DecoderConfig) -> list[TensorSpec]:
    """Every tensor a checkpoint of cfg's family holds, in a stable order."""
    return _gpt2(cfg) if cfg.family == "gpt2" else _llama_like(cfg)


def _same(name: str, *path: str | int) -> TensorSpec:
    return TensorSpec(name, (path,), "same")


def _linear(name: str, *path: str | int) -> TensorSpec:
    return TensorSpec(name, (path,), "linear")


def _split3(name: str, attn: Path, leaf: str) -> TensorSpec:
    paths = tuple((*attn, proj, leaf) for proj in ("q_proj", "k_proj", "v_proj"))
    return TensorSpec(name, paths, "split3")


def _llama_like(cfg: DecoderConfig) -> list[TensorSpec]:
    specs = [_same("model.embed_tokens.weight", "embed", "embedding")]
    for i in range(cfg.n_layers):
        hf, nnx = f"model.layers.{i}.", ("layers", i)
        specs.append(_same(hf + "input_layernorm.weight", *nnx, "attn_norm", "scale"))
        biases = {"q_proj": cfg.qkv_bias, "k_proj": cfg.qkv_bias, "v_proj": cfg.qkv_bias}
        for proj, bias in (biases | {"o_proj": cfg.out_bias}).items():
            specs.append(_linear(hf + f"self_attn.{proj}.weight", *nnx, "attn", proj, "kernel"))
            if bias:
                specs.append(_same(hf + f"self_attn.{proj}.bias", *nnx, "attn", proj, "bias"))
        if cfg.qk_norm:
            specs.append(_same(hf + "self_attn.q_norm.weight", *nnx, "attn", "q_norm", "scale"))
            specs.append(_same(hf + "self_attn.k_norm.weight", *nnx, "attn", "k_norm", "scale"))
        if cfg.sandwich_norm:
            # Gemma 2 names: post_attention_layernorm is the attention branch's output norm.
            specs += [
                _same(hf + "post_attention_layernorm.weight", *nnx, "post_attn_norm", "scale"),
                _same(hf + "pre_feedforward_layernorm.weight", *nnx, "mlp_norm", "scale"),
                _same(hf + "post_feedforward_layernorm.weight", *nnx, "post_mlp_norm", "scale"),
            ]
        else:
            specs.append(_same(hf + "post_attention_layernorm.weight", *nnx, "mlp_norm", "scale"))
        for proj in ("gate_proj", "up_proj", "down_proj"):
            specs.append(_linear(hf + f"mlp.{proj}.weight", *nnx, "mlp", proj, "kernel"))
            if cfg.mlp_bias:
                specs.append(_same(hf + f"mlp.{proj}.bias", *nnx, "mlp", proj, "bias"))
    specs.append(_same("model.norm.weight", "final_norm", "scale"))
    if not cfg.tie_embeddings:
        specs.append(_linear("lm_head.weight", "lm_head", "kernel"))
    return specs


def _gpt2(cfg: DecoderConfig) -> list[TensorSpec]:
    specs = [
        _same("transformer.wte.weight", "embed", "embedding"),
        _same("transformer.wpe.weight", "pos_embed", "embedding"),
    ]
    for i in range(cfg.n_layers):
        hf, nnx = f"transformer.h.{i}.", ("layers", i)
        attn, mlp = (*nnx, "attn"), (*nnx, "mlp")
        specs += [
            _same(hf + "ln_1.weight", *nnx, "attn_norm", "scale"),
            _same(hf + "ln_1.bias", *nnx, "attn_norm", "bias"),
            _split3(hf + "attn.c_attn.weight", attn, "kernel"),
            _split3(hf + "attn.c_attn.bias", attn, "bias"),
            _same(hf + "attn.c_proj.weight", *attn, "o_proj", "kernel"),
            _same(hf + "attn.c_proj.bias", *attn, "o_proj", "bias"),
            _same(hf + "ln_2.weight", *nnx, "mlp_norm", "scale"),
            _same(hf + "ln_2.bias", *nnx, "mlp_norm", "bias"),
            _same(hf + "mlp.c_fc.weight", *mlp, "up_proj", "kernel"),
            _same(hf + "mlp.c_fc.bias", *mlp, "up_proj", "bias"),
            _same(hf + "mlp.c_proj.weight", *mlp, "down_proj", "kernel"),
            _same(hf + "mlp.c_proj.bias", *mlp, "down_proj", "bias"),
        ]
    specs += [
        _same("transformer.ln_f.weight", "final_norm", "scale"),
        _same("transformer.ln_f.bias", "final_norm", "bias"),
    ]
    if not cfg.tie_embeddings:
        specs.append(_linear("lm_head.weight", "lm_head", "kernel"))
    return specs
