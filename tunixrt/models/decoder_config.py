"""The decoder's configuration, one frozen value with per-family switches, and its
analytic size and training cost (parameters, FLOPs per token).

The defaults are the Llama layout; each switch names the family that needs it. The
choices are the enums of `tunixrt.config`, so `model.*` keys and these fields share one
vocabulary (`tunixrt.models.factory.decoder_config` derives one from the other).
"""

from __future__ import annotations

import dataclasses
import enum

from tunixrt.config import Activation, AttentionImpl, NormKind, PositionKind, RopeScaling

_DTYPES = ("float32", "bfloat16")
# Fields holding a choice, turned into their enum when a DecoderConfig is built.
_CHOICES: dict[str, type[enum.StrEnum]] = {
    "norm": NormKind,
    "activation": Activation,
    "position": PositionKind,
    "rope_scaling": RopeScaling,
    "attention": AttentionImpl,
}


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
    scan_layers: bool = False  # hidden_states runs the layers as one scan (extend: unrolled)
    attention: AttentionImpl = AttentionImpl.auto  # fused, reference, or fused where it can

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
        _require(
            self.attention is not AttentionImpl.fused or self.attn_softcap is None,
            f"attention='fused' cannot express attn_softcap={self.attn_softcap} (the fused "
            "attention has no soft-cap); use 'auto' or 'reference'",
        )
        bad = [i for i in self.sliding_layers or () if not 0 <= i < self.n_layers]
        _require(not bad, f"sliding_layers {bad} are not layers of a {self.n_layers}-layer model")

    @property
    def head_dim(self) -> int:
        return self.explicit_head_dim or self.dim // self.n_heads

    @property
    def fused_attention(self) -> bool:
        """Whether attention runs through jax.nn.dot_product_attention, which expresses
        everything here but Gemma 2's score soft-cap."""
        if self.attention is AttentionImpl.auto:
            return self.attn_softcap is None
        return self.attention is AttentionImpl.fused

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
