"""What each dimension of a Decoder weight means, as logical axis names: the model
width, query heads, kv heads, MLP hidden units or the vocabulary. `tunixrt.sharding`
maps these names to mesh axes; the model itself knows no mesh.

A weight is found by the last two parts of its state path (module and variable name),
so the same table serves its optimizer moments, whose paths end like the parameter's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

EMBED = "embed"  # the model width d
VOCAB = "vocab"
HEADS = "heads"  # query heads x head width, h * e
KV_HEADS = "kv_heads"  # kv heads x head width, g * e
MLP = "mlp"  # the MLP hidden width f

LogicalAxes = tuple[str | None, ...]  # one name per dimension; None: never split

# Projection kernels [in, out] by module name.
_KERNELS: dict[str, LogicalAxes] = {
    "q_proj": (EMBED, HEADS),
    "k_proj": (EMBED, KV_HEADS),
    "v_proj": (EMBED, KV_HEADS),
    "o_proj": (HEADS, EMBED),
    "gate_proj": (EMBED, MLP),
    "up_proj": (EMBED, MLP),
    "down_proj": (MLP, EMBED),
    "lm_head": (EMBED, VOCAB),
}
# Embedding tables [rows, d]: token ids, or learned positions.
_TABLES: dict[str, LogicalAxes] = {"embed": (VOCAB, EMBED), "pos_embed": (None, EMBED)}


def _projection(kernel: LogicalAxes, name: str) -> LogicalAxes | None:
    """The axes of a projection's variable: the kernel [in, out], its bias [out], and
    LoRA's lora_a [in, r] and lora_b [r, out]."""
    by_name = {
        "kernel": kernel,
        "bias": kernel[1:],
        "lora_a": (kernel[0], None),
        "lora_b": (None, kernel[1]),
    }
    return by_name.get(name)


def logical_axes(path: Sequence[Any]) -> LogicalAxes | None:
    """The logical axes of the weight at state path `path`; None for weights that are
    never split (norm scales) and for paths that are not the model's."""
    if len(path) < 2:
        return None
    module, name = str(path[-2]), str(path[-1])
    if module in _TABLES:
        return _TABLES[module] if name == "embedding" else None
    kernel = _KERNELS.get(module)
    return None if kernel is None else _projection(kernel, name)
