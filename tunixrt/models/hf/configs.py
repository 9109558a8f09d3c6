"""Hugging Face `config.json` <-> `DecoderConfig`, one reader and one writer per family.

A reader turns a config dict into DecoderConfig fields; a writer does the reverse.
`hf_config` checks that reading its output gives the model's config back, so an
export never silently drops a switch the family cannot express.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from tunixrt.errors import InputError
from tunixrt.models.decoder import DecoderConfig

HFConfig = Mapping[str, Any]

ARCHITECTURES = {
    "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
    "gemma": "GemmaForCausalLM",
    "gemma2": "Gemma2ForCausalLM",
    "gpt2": "GPT2LMHeadModel",
}
SUPPORTED = tuple(sorted(ARCHITECTURES))

# HF activation names -> DecoderConfig.activation ("gelu_new" is GPT-2's tanh form).
_ACTIVATIONS = {
    "silu": "silu",
    "swish": "silu",
    "gelu": "gelu",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_new": "gelu_tanh",
}
_HF_ACTIVATION = {"silu": "silu", "gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh"}

# Fields that say how to compute, not what the checkpoint holds; never compared on export.
_RUNTIME_FIELDS = ("dtype", "param_dtype", "init_std", "remat", "scan_layers", "attention")


class CheckpointError(InputError, ValueError):
    """A Hugging Face folder that tunixrt cannot read or write, with the reason."""


# ---------------------------------------------------------------------------- reading


def model_type(hf: HFConfig, source: str) -> str:
    """The family of a config: its model_type, else the one its architectures name."""
    arch = hf.get("architectures") or []
    family = hf.get("model_type")
    if family is None:
        by_arch = {name: family for family, name in ARCHITECTURES.items()}
        family = next((by_arch[a] for a in arch if a in by_arch), None)
    if family not in ARCHITECTURES:
        raise CheckpointError(
            f"{source}: model_type {family!r} (architectures {arch}) is not supported; "
            f"supported model_types: {', '.join(SUPPORTED)}"
        )
    return family


def decoder_config(
    hf: HFConfig,
    *,
    dtype: str = "float32",
    param_dtype: str | None = None,
    attention: str = "auto",
    source: str,
) -> DecoderConfig:
    """The DecoderConfig of a Hugging Face config dict; `source` names it in errors.
    dtype, param_dtype and attention say how to compute (DecoderConfig's fields)."""
    family = model_type(hf, source)
    fields = _READERS[family](_Reader(hf, source))
    fields.update(family=family, dtype=dtype, param_dtype=param_dtype or dtype, attention=attention)
    try:
        return DecoderConfig(**fields)
    except ValueError as err:
        raise CheckpointError(f"{source}: {err}") from None


class _Reader:
    """Config lookups that name the file and key when a required key is missing."""

    def __init__(self, hf: HFConfig, source: str):
        self.hf, self.source = hf, source

    def req(self, key: str) -> Any:
        if self.hf.get(key) is None:
            raise CheckpointError(f"{self.source}: missing required key {key!r}")
        return self.hf[key]

    def get(self, key: str, default: Any = None) -> Any:
        value = self.hf.get(key)
        return default if value is None else value

    def raw(self, key: str, default: Any) -> Any:
        """The value as written, null included; `default` (HF's class default) when absent."""
        return self.hf.get(key, default)

    def fail(self, message: str) -> CheckpointError:
        return CheckpointError(f"{self.source}: {message}")

    def activation(self, key: str, default: str) -> str:
        name = self.get(key, default)
        if name not in _ACTIVATIONS:
            raise self.fail(f"{key}={name!r} is not supported (supported: {sorted(_ACTIVATIONS)})")
        return _ACTIVATIONS[name]


def _rope(r: _Reader) -> dict[str, Any]:
    """RoPE fields from transformers 5 `rope_parameters` or the older rope_theta/rope_scaling."""
    params = r.get("rope_parameters", {})
    legacy = r.get("rope_scaling", {})
    spec = params if "rope_type" in params or "type" in params else legacy
    theta = params.get("rope_theta", r.get("rope_theta", 10000.0))
    kind = spec.get("rope_type", spec.get("type", "default"))
    if spec.get("partial_rotary_factor", r.get("partial_rotary_factor", 1.0)) != 1.0:
        raise r.fail("partial_rotary_factor other than 1.0 is not supported")
    fields: dict[str, Any] = {"rope_theta": float(theta)}

    def need(key: str) -> float:
        if spec.get(key) is None:
            raise r.fail(f"rope type {kind!r} needs {key!r} in its rope parameters")
        return float(spec[key])

    if kind == "default":
        return fields
    if kind == "linear":
        return fields | {"rope_scaling": "linear", "rope_factor": need("factor")}
    if kind == "llama3":
        original = spec.get("original_max_position_embeddings", r.get("max_position_embeddings"))
        return fields | {
            "rope_scaling": "llama3",
            "rope_factor": need("factor"),
            "rope_low_freq_factor": need("low_freq_factor"),
            "rope_high_freq_factor": need("high_freq_factor"),
            "rope_original_max_len": int(original or 8192),
        }
    raise r.fail(f"rope type {kind!r} is not supported (supported: default, linear, llama3)")


def _sliding_layers(r: _Reader, n_layers: int, default: list[str]) -> tuple[int, ...] | None:
    """Indices of "sliding_attention" layers (HF `layer_types`, else `default`); None: all."""
    types = r.get("layer_types", default)
    if len(types) != n_layers:
        raise r.fail(f"layer_types has {len(types)} entries for {n_layers} layers")
    sliding = tuple(i for i, t in enumerate(types) if t == "sliding_attention")
    return None if len(sliding) == n_layers else sliding


def _llama_like(r: _Reader, *, tie_default: bool) -> dict[str, Any]:
    dim, heads = int(r.req("hidden_size")), int(r.req("num_attention_heads"))
    head_dim = int(r.get("head_dim", dim // heads))
    attention_bias = bool(r.get("attention_bias", False))
    return {
        "vocab_size": int(r.req("vocab_size")),
        "dim": dim,
        "n_layers": int(r.req("num_hidden_layers")),
        "n_heads": heads,
        "n_kv_heads": int(r.get("num_key_value_heads", heads)),
        "ffn_dim": int(r.req("intermediate_size")),
        "max_seq_len": int(r.get("max_position_embeddings", 2048)),
        "norm_eps": float(r.get("rms_norm_eps", 1e-6)),
        "tie_embeddings": bool(r.get("tie_word_embeddings", tie_default)),
        "explicit_head_dim": None if head_dim * heads == dim else head_dim,
        "qkv_bias": attention_bias,
        "out_bias": attention_bias,
        "activation": r.activation("hidden_act", "silu"),
        **_rope(r),
    }


def _read_llama(r: _Reader) -> dict[str, Any]:
    return _llama_like(r, tie_default=False) | {"mlp_bias": bool(r.get("mlp_bias", False))}


def _read_mistral(r: _Reader) -> dict[str, Any]:
    # Mistral's attention uses config.sliding_window on every layer, whatever layer_types says.
    fields = _llama_like(r, tie_default=False)
    window = r.raw("sliding_window", 4096)
    return fields | {"qkv_bias": False, "out_bias": False, "sliding_window": window}


def _read_qwen(r: _Reader, *, qk_norm: bool) -> dict[str, Any]:
    fields = _llama_like(r, tie_default=False)
    if qk_norm:
        fields["qk_norm"] = True
    else:
        fields |= {"qkv_bias": True, "out_bias": False}
    # As HF: the window applies only with use_sliding_window, on layers >= max_window_layers
    # unless layer_types lists them.
    if r.get("use_sliding_window", False) and r.get("sliding_window") is not None:
        n = fields["n_layers"]
        first = int(r.get("max_window_layers", n))
        default = ["sliding_attention" if i >= first else "full_attention" for i in range(n)]
        sliding = _sliding_layers(r, n, default)
        if sliding != ():
            fields |= {"sliding_window": int(r.hf["sliding_window"]), "sliding_layers": sliding}
    return fields


def _read_gemma(r: _Reader) -> dict[str, Any]:
    fields = _llama_like(r, tie_default=True)
    activation = r.activation("hidden_act", "gelu_pytorch_tanh")
    return fields | {
        "norm_offset": 1.0,
        "embed_scale": True,
        # HF maps Gemma's legacy "gelu" to the tanh form it was trained with.
        "activation": "gelu_tanh" if activation == "gelu" else activation,
    }


def _read_gemma2(r: _Reader) -> dict[str, Any]:
    if r.get("use_bidirectional_attention", False):
        raise r.fail("use_bidirectional_attention is not supported")
    fields = _llama_like(r, tie_default=True)
    n, window = fields["n_layers"], r.raw("sliding_window", 4096)
    alternate = ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(n)]
    return fields | {
        "norm_offset": 1.0,
        "embed_scale": True,
        "sandwich_norm": True,
        "activation": r.activation("hidden_activation", "gelu_pytorch_tanh"),
        # Absent keys take Gemma2Config's defaults; explicit nulls switch a feature off.
        "query_scale": float(r.get("query_pre_attn_scalar", 256)),
        "attn_softcap": r.raw("attn_logit_softcapping", 50.0),
        "final_softcap": r.raw("final_logit_softcapping", 30.0),
        "sliding_window": window,
        "sliding_layers": None if window is None else _sliding_layers(r, n, alternate),
    }


def _read_gpt2(r: _Reader) -> dict[str, Any]:
    if r.get("scale_attn_by_inverse_layer_idx", False):
        raise r.fail("scale_attn_by_inverse_layer_idx is not supported")
    if r.get("add_cross_attention", False):
        raise r.fail("add_cross_attention is not supported (decoder-only models)")
    dim = int(r.req("n_embd"))
    return {
        "vocab_size": int(r.req("vocab_size")),
        "dim": dim,
        "n_layers": int(r.req("n_layer")),
        "n_heads": int(r.req("n_head")),
        "n_kv_heads": int(r.req("n_head")),
        "ffn_dim": int(r.get("n_inner", 4 * dim)),
        "max_seq_len": int(r.req("n_positions")),
        "norm": "layer",
        "norm_eps": float(r.get("layer_norm_epsilon", 1e-5)),
        "tie_embeddings": bool(r.get("tie_word_embeddings", True)),
        "activation": r.activation("activation_function", "gelu_new"),
        "gated_mlp": False,
        "qkv_bias": True,
        "out_bias": True,
        "mlp_bias": True,
        "position": "learned",
        "query_scale": None if r.get("scale_attn_weights", True) else 1.0,
    }


_READERS: dict[str, Callable[[_Reader], dict[str, Any]]] = {
    "llama": _read_llama,
    "mistral": _read_mistral,
    "qwen2": lambda r: _read_qwen(r, qk_norm=False),
    "qwen3": lambda r: _read_qwen(r, qk_norm=True),
    "gemma": _read_gemma,
    "gemma2": _read_gemma2,
    "gpt2": _read_gpt2,
}


# ---------------------------------------------------------------------------- writing


def _write_rope(cfg: DecoderConfig) -> dict[str, Any]:
    params: dict[str, Any] = {"rope_type": "default", "rope_theta": cfg.rope_theta}
    if cfg.rope_scaling == "linear":
        params |= {"rope_type": "linear", "factor": cfg.rope_factor}
    elif cfg.rope_scaling == "llama3":
        params |= {
            "rope_type": "llama3",
            "factor": cfg.rope_factor,
            "low_freq_factor": cfg.rope_low_freq_factor,
            "high_freq_factor": cfg.rope_high_freq_factor,
            "original_max_position_embeddings": cfg.rope_original_max_len,
        }
    return {"rope_parameters": params}


def _layer_types(cfg: DecoderConfig) -> list[str]:
    return [
        "sliding_attention" if cfg.is_sliding(i) else "full_attention" for i in range(cfg.n_layers)
    ]


def _write_llama_like(cfg: DecoderConfig) -> dict[str, Any]:
    return {
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.dim,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "head_dim": cfg.head_dim,
        "intermediate_size": cfg.ffn_dim,
        "max_position_embeddings": cfg.max_seq_len,
        "rms_norm_eps": cfg.norm_eps,
        "tie_word_embeddings": cfg.tie_embeddings,
        "hidden_act": _HF_ACTIVATION[cfg.activation],
        **_write_rope(cfg),
    }


def _write_llama(cfg: DecoderConfig) -> dict[str, Any]:
    return _write_llama_like(cfg) | {"attention_bias": cfg.qkv_bias, "mlp_bias": cfg.mlp_bias}


def _write_mistral(cfg: DecoderConfig) -> dict[str, Any]:
    return _write_llama_like(cfg) | {"sliding_window": cfg.sliding_window}


def _write_qwen(cfg: DecoderConfig) -> dict[str, Any]:
    fields = _write_llama_like(cfg) | {
        "use_sliding_window": cfg.sliding_window is not None,
        "sliding_window": cfg.sliding_window,
        "max_window_layers": cfg.n_layers,
        "layer_types": _layer_types(cfg),
    }
    if cfg.family == "qwen3":
        fields["attention_bias"] = cfg.qkv_bias
    return fields


def _write_gemma(cfg: DecoderConfig) -> dict[str, Any]:
    return _write_llama_like(cfg) | {"attention_bias": cfg.qkv_bias}


def _write_gemma2(cfg: DecoderConfig) -> dict[str, Any]:
    fields = _write_gemma(cfg)
    return fields | {
        "hidden_activation": fields.pop("hidden_act"),
        "query_pre_attn_scalar": _int_if_whole(cfg.query_scale),
        "attn_logit_softcapping": cfg.attn_softcap,
        "final_logit_softcapping": cfg.final_softcap,
        "sliding_window": cfg.sliding_window,
        "layer_types": _layer_types(cfg),
    }


def _int_if_whole(value: float | None) -> float | int | None:
    """transformers' strict config types want ints where the Gemma 2 config has ints."""
    return int(value) if value is not None and float(value).is_integer() else value


def _write_gpt2(cfg: DecoderConfig) -> dict[str, Any]:
    return {
        "vocab_size": cfg.vocab_size,
        "n_embd": cfg.dim,
        "n_layer": cfg.n_layers,
        "n_head": cfg.n_heads,
        "n_inner": cfg.ffn_dim,
        "n_positions": cfg.max_seq_len,
        "layer_norm_epsilon": cfg.norm_eps,
        "tie_word_embeddings": cfg.tie_embeddings,
        "activation_function": "gelu_new" if cfg.activation == "gelu_tanh" else cfg.activation,
        "scale_attn_weights": cfg.query_scale is None,
    }


_WRITERS: dict[str, Callable[[DecoderConfig], dict[str, Any]]] = {
    "llama": _write_llama,
    "mistral": _write_mistral,
    "qwen2": _write_qwen,
    "qwen3": _write_qwen,
    "gemma": _write_gemma,
    "gemma2": _write_gemma2,
    "gpt2": _write_gpt2,
}


def hf_config(cfg: DecoderConfig) -> dict[str, Any]:
    """The config.json dict of `cfg` as its family (architectures, model_type, sizes).

    Raises CheckpointError when the family cannot express one of cfg's switches (for
    example qk_norm on a llama): reading the dict back must give cfg again.
    """
    if cfg.family not in _WRITERS:
        raise CheckpointError(
            f"family {cfg.family!r} has no Hugging Face export; supported: {', '.join(SUPPORTED)}"
        )
    hf = {
        "architectures": [ARCHITECTURES[cfg.family]],
        "model_type": cfg.family,
        **_WRITERS[cfg.family](cfg),
    }
    back = decoder_config(hf, dtype=cfg.dtype, param_dtype=cfg.param_dtype, source="export")
    lost = [
        f"{f.name}={getattr(cfg, f.name)!r} (would load as {getattr(back, f.name)!r})"
        for f in dataclasses.fields(cfg)
        if f.name not in _RUNTIME_FIELDS and getattr(cfg, f.name) != getattr(back, f.name)
    ]
    if lost:
        raise CheckpointError(
            f"a {cfg.family} checkpoint cannot hold this model's {', '.join(lost)}; "
            "set DecoderConfig.family to a family that has these features"
        )
    return hf
