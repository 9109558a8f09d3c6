"""The model section: a decoder from scratch (its layout and family switches) or a
pretrained Hugging Face checkpoint, and LoRA adapters."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from omegaconf import MISSING

from tunixrt.config._checks import _require


# Decoder layout choices, shared with `tunixrt.models.decoder.DecoderConfig`.
class NormKind(enum.StrEnum):
    rms = "rms"
    layer = "layer"  # LayerNorm with a bias (GPT-2)


class PositionKind(enum.StrEnum):
    rope = "rope"
    learned = "learned"  # absolute positions added to the input (GPT-2)


class RopeScaling(enum.StrEnum):
    none = "none"
    linear = "linear"
    llama3 = "llama3"  # Llama 3.1+


class Activation(enum.StrEnum):
    silu = "silu"
    gelu = "gelu"  # erf form
    gelu_tanh = "gelu_tanh"  # Hugging Face gelu_new / gelu_pytorch_tanh


class AttentionImpl(enum.StrEnum):
    auto = "auto"  # fused where it can express the model, else reference
    fused = "fused"  # jax.nn.dot_product_attention (XLA; cuDNN when JAX picks it)
    reference = "reference"  # explicit einsums: scores [b, h, q, k] in float32


@dataclass
class LoRAConfig:
    rank: int = 0  # 0: no adapters, every parameter trains
    alpha: float = 16.0  # adapters add (alpha / rank) * A @ B to a projection
    targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])

    def __post_init__(self) -> None:
        _require(self.rank >= 0, "model.lora.rank", self.rank, "an integer >= 0")
        allowed = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
        bad = [t for t in self.targets if t not in allowed]
        _require(not bad, "model.lora.targets", bad, f"names from {sorted(allowed)}")


@dataclass
class ModelConfig:
    """A decoder trained from scratch (every key below), or a pretrained Hugging Face
    checkpoint (`path`; its config.json decides the architecture, and of the keys below
    only `family`, `remat`, `scan_layers`, `attention` and `lora` apply). The layout keys are those of
    `tunixrt.models.decoder.DecoderConfig`, which is derived from this; the defaults give
    the Llama layout."""

    name: str = MISSING
    # A local Hugging Face checkpoint folder: the model (architecture, weights) and the
    # tokenizer come from it.
    path: str | None = None
    # With `path`: the model_type it must hold (e.g. qwen2; null: any). From scratch: the
    # Hugging Face model_type `tunixrt export` writes (null: llama).
    family: str | None = None
    remat: bool = False  # recompute activations in the backward pass: less memory, more time
    # Trace and compile the layer stack as one scanned layer (one period of layers with
    # Gemma 2's alternating windows) instead of n_layers copies, for a stacked copy of the
    # layer weights and their gradients each step. A smaller program, not always a faster
    # compile: on XLA:CPU it is not (README). Training and scoring only; generation's
    # cached decode (`Decoder.extend`) runs the layers unrolled.
    scan_layers: bool = False
    # How attention computes; fused cannot express attn_softcap, which auto then leaves
    # to the reference einsums
    attention: AttentionImpl = AttentionImpl.auto
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    vocab_size: int | None = None  # None: the tokenizer's vocabulary size
    dim: int = 256
    n_layers: int = 6
    n_heads: int = 8
    n_kv_heads: int = 4
    ffn_dim: int = 768
    max_seq_len: int = 2048
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = True
    init_std: float = 0.02
    # Family switches; each names the family that needs it.
    head_dim: int | None = None  # head width when it is not dim / n_heads (Gemma, Qwen3)
    norm: NormKind = NormKind.rms
    norm_offset: float = 0.0  # applied scale = offset + weight (Gemma: 1)
    sandwich_norm: bool = False  # also normalise attention and MLP outputs (Gemma 2)
    qk_norm: bool = False  # RMSNorm over each head of q and k before RoPE (Qwen3)
    activation: Activation = Activation.silu
    gated_mlp: bool = True  # down(act(gate(x)) * up(x)); false: down(act(up(x))) (GPT-2)
    qkv_bias: bool = False  # biases on q, k, v (Qwen2, GPT-2)
    out_bias: bool = False  # bias on the attention output projection (GPT-2)
    mlp_bias: bool = False  # biases on the MLP projections (GPT-2)
    position: PositionKind = PositionKind.rope
    rope_scaling: RopeScaling = RopeScaling.none
    rope_factor: float = 1.0
    rope_low_freq_factor: float = 1.0  # llama3 scaling
    rope_high_freq_factor: float = 4.0  # llama3 scaling
    rope_original_max_len: int = 8192  # llama3 scaling: the pretraining context
    embed_scale: bool = False  # input embeddings times sqrt(dim) (Gemma)
    query_scale: float | None = None  # scores / sqrt(this), not sqrt(head_dim) (Gemma 2)
    attn_softcap: float | None = None  # scores -> cap * tanh(scores / cap) (Gemma 2)
    final_softcap: float | None = None  # the same on the output logits (Gemma 2)
    sliding_window: int | None = None  # a query sees keys less than this many tokens back
    sliding_layers: list[int] | None = None  # layers using the window; null: all

    def __post_init__(self) -> None:
        for key in ("dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim", "max_seq_len"):
            value = getattr(self, key)
            _require(value > 0, f"model.{key}", value, "a positive integer")
        _require(
            self.vocab_size is None or self.vocab_size > 0,
            "model.vocab_size",
            self.vocab_size,
            "a positive integer or null",
        )
        _require(
            self.head_dim is not None or self.dim % self.n_heads == 0,
            "model.dim",
            self.dim,
            f"a multiple of model.n_heads={self.n_heads} (or set model.head_dim)",
        )
        _require(
            self.n_heads % self.n_kv_heads == 0,
            "model.n_kv_heads",
            self.n_kv_heads,
            f"a divisor of model.n_heads={self.n_heads}",
        )
        _require(self.init_std > 0, "model.init_std", self.init_std, "a positive number")
        for key in ("head_dim", "query_scale", "attn_softcap", "final_softcap", "sliding_window"):
            value = getattr(self, key)
            _require(value is None or value > 0, f"model.{key}", value, "a positive number or null")
        _require(
            self.attention != AttentionImpl.fused or self.attn_softcap is None,
            "model.attention",
            str(self.attention),
            f"auto or reference with model.attn_softcap={self.attn_softcap} (the fused "
            "attention has no soft-cap)",
        )
