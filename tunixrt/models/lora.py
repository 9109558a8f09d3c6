"""Low-rank adapters (LoRA) on a Decoder's projections.

`apply_lora` swaps chosen `nnx.Linear` projections for `LoRALinear`, which keeps the
base kernel and bias under the same names (so base checkpoints and the HF tensor
tables still apply) and adds `lora_a` [in, r] and `lora_b` [r, out]:

    y = x @ W + b + (alpha / r) * (x @ A) @ B

A starts normal with std 1/sqrt(in), so x @ A has unit scale; B starts at zero, so the
adapted model starts equal to the base one. The adapters are `nnx.LoRAParam`, a
subclass of `nnx.Param`: to train only them, filter on `LoRAParam` everywhere the
train step chooses parameters, e.g. `nnx.Optimizer(model, tx, wrt=LoRAParam)` and
`nnx.split(model, LoRAParam, ...)` or `nnx.grad(f, argnums=nnx.DiffState(0, LoRAParam))`.
`merge_lora` folds the adapters into the kernels for export.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from tunixrt.models.decoder import DecoderConfig

LoRAParam = nnx.LoRAParam
# The base weights LoRA training leaves as they are: every Param but the adapters.
FROZEN_BASE = nnx.All(nnx.Param, nnx.Not(LoRAParam))

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")


class LoRALinear(nnx.Module):
    """A linear map plus a scaled low-rank update; computes like the nnx.Linear it wraps."""

    def __init__(
        self,
        base: nnx.Linear,
        *,
        rank: int,
        alpha: float,
        rngs: nnx.Rngs,
        param_dtype: str = "float32",
    ):
        d_in, d_out = base.kernel[...].shape
        self.kernel, self.bias = base.kernel, base.bias
        self.dtype = base.dtype
        self.dot_general = base.dot_general  # lax.dot_general, or tunixrt.models.dots
        self.scale = alpha / rank
        a_init = nnx.initializers.normal(stddev=1.0 / math.sqrt(d_in))
        self.lora_a = LoRAParam(a_init(rngs.params(), (d_in, rank), jnp.dtype(param_dtype)))
        self.lora_b = LoRAParam(jnp.zeros((rank, d_out), jnp.dtype(param_dtype)))

    def __call__(self, x: jax.Array) -> jax.Array:
        dtype = self.dtype or x.dtype
        x = x.astype(dtype)
        contract_last = (((x.ndim - 1,), (0,)), ((), ()))  # x [..., in] . W [in, out]
        y = self.dot_general(x, self.kernel[...].astype(dtype), contract_last)
        if self.bias is not None:
            y = y + self.bias[...].astype(dtype)
        low = x @ self.lora_a[...].astype(dtype)  # [..., r]
        return y + (low @ self.lora_b[...].astype(dtype)) * jnp.asarray(self.scale, dtype)

    def merged_kernel(self) -> jax.Array:
        """W + scale * A @ B [in, out], summed in float32, in the kernel's dtype."""
        kernel = self.kernel[...]
        delta = self.lora_a[...].astype(jnp.float32) @ self.lora_b[...].astype(jnp.float32)
        return (kernel.astype(jnp.float32) + self.scale * delta).astype(kernel.dtype)

    def merged(self) -> nnx.Linear:
        """A plain nnx.Linear holding the merged kernel and the same bias."""
        d_in, d_out = self.kernel[...].shape
        kernel = self.merged_kernel()
        linear = nnx.eval_shape(
            lambda: nnx.Linear(
                d_in,
                d_out,
                use_bias=self.bias is not None,
                dtype=self.dtype,
                dot_general=self.dot_general,
                param_dtype=kernel.dtype,
                rngs=nnx.Rngs(0),
            )
        )
        linear.kernel.set_value(kernel)
        if self.bias is not None:
            linear.bias = self.bias
        return linear


def _child(node: Any, key: Any) -> Any:
    return node[key] if isinstance(key, int) else getattr(node, key)  # nnx.List index or field


def _replace(model: nnx.Module, path: tuple, make: Callable[[Any], nnx.Module]) -> None:
    """Swap the submodule at `path` for make(submodule)."""
    parent = functools.reduce(_child, path[:-1], model)
    setattr(parent, str(path[-1]), make(_child(parent, path[-1])))


def apply_lora(
    model: nnx.Module,
    *,
    rank: int,
    alpha: float = 16.0,
    targets: Iterable[str] = DEFAULT_TARGETS,
    rngs: nnx.Rngs,
    param_dtype: str = "float32",
) -> nnx.Module:
    """Add rank-`rank` adapters to every projection named in `targets`, in place.

    Returns the model. Raises ValueError for an unknown name, a name this model has no
    projection for (GPT-2 has no gate_proj), or a model that already has adapters.
    """
    targets = tuple(targets)
    if rank <= 0:
        raise ValueError(f"LoRA rank must be positive, got {rank}")
    unknown = sorted(set(targets) - set(PROJECTIONS))
    if unknown:
        raise ValueError(f"unknown LoRA targets {unknown}; choose from {list(PROJECTIONS)}")
    if any(isinstance(m, LoRALinear) for _, m in nnx.iter_modules(model)):
        raise ValueError("the model already has LoRA adapters")
    found = [
        path
        for path, module in nnx.iter_modules(model)
        if path and path[-1] in targets and isinstance(module, nnx.Linear)
    ]
    missing = sorted(set(targets) - {path[-1] for path in found})
    if missing:
        raise ValueError(f"the model has no {missing} projections to adapt")
    for path in found:
        _replace(
            model,
            path,
            lambda base: LoRALinear(
                base, rank=rank, alpha=alpha, rngs=rngs, param_dtype=param_dtype
            ),
        )
    return model


def merge_lora(model: nnx.Module) -> nnx.Module:
    """Fold every adapter into its kernel (W + scale * A @ B), in place; returns the model."""
    adapted = [(p, m) for p, m in nnx.iter_modules(model) if isinstance(m, LoRALinear)]
    for path, _ in adapted:
        _replace(model, path, lambda module: module.merged())
    return model


def _projection_shapes(cfg: DecoderConfig) -> dict[str, tuple[int, int]]:
    q, kv = cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
    shapes = {
        "q_proj": (cfg.dim, q),
        "k_proj": (cfg.dim, kv),
        "v_proj": (cfg.dim, kv),
        "o_proj": (q, cfg.dim),
        "up_proj": (cfg.dim, cfg.ffn_dim),
        "down_proj": (cfg.ffn_dim, cfg.dim),
    }
    if cfg.gated_mlp:
        shapes["gate_proj"] = (cfg.dim, cfg.ffn_dim)
    return shapes


def lora_num_params(cfg: DecoderConfig, rank: int, targets: Iterable[str] = DEFAULT_TARGETS) -> int:
    """Adapter parameters `apply_lora` adds: rank * (in + out) per target per layer."""
    shapes = _projection_shapes(cfg)
    per_layer = sum(rank * sum(shapes[t]) for t in targets if t in shapes)
    return cfg.n_layers * per_layer
