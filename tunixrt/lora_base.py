"""The frozen base of a LoRA run. Its checkpoints hold the adapters (and any other
variables training changes) and the optimizer state, not a copy of the base weights;
each step's meta names the base instead, with the sha256 of its weights:

    "base": {"path": "/models/Qwen2.5-0.5B", "sha256": "..."}  pretrained: model.path
    "base": {"path": null, "sha256": "..."}  from scratch: checkpoints/base/, saved once

A base from scratch is saved once when the run starts rather than drawn from the seed
again on resume: the weights drawn depend on the backend's random number kernels. The
hash is over the loaded parameters (path, dtype, shape, bytes), so it checks what
training computes with, whatever the file layout. Resume and export load the base
again and refuse it when the hash differs. A checkpoint whose meta has no `base` holds
the whole model.
"""

from __future__ import annotations

import hashlib
from typing import Any

import jax
import numpy as np
from flax import nnx

from tunixrt.checkpoint import BASE_FOLDER, Checkpointer
from tunixrt.config import ConfigError
from tunixrt.models.lora import FROZEN_BASE


def base_sha256(model: nnx.Module) -> str:
    """sha256 over the frozen base parameters: each one's path, dtype, shape and bytes."""
    digest = hashlib.sha256()
    for path, variable in nnx.to_flat_state(nnx.state(model, FROZEN_BASE)):
        # one array at a time on the host: a 0.5B model's largest is ~0.5 GiB in float32
        value = np.ascontiguousarray(jax.device_get(variable.get_value()))
        name = ".".join(map(str, path))
        digest.update(f"{name} {value.dtype} {value.shape}\n".encode())
        digest.update(value.data)
    return digest.hexdigest()


def record_base(path: str | None, model: nnx.Module, ck: Checkpointer) -> dict[str, Any]:
    """The base reference of a LoRA run that starts fresh: `path` when the base is that
    pretrained folder's weights as they are; with None (from scratch, or from init.from)
    the base is saved into the checkpoints folder first."""
    if path is None:
        ck.save_base(nnx.to_pure_dict(nnx.state(model, FROZEN_BASE)))
    return {"path": path, "sha256": base_sha256(model)}


def load_base(ref: dict[str, Any], model: nnx.Module, ck: Checkpointer) -> None:
    """Put the base `ref` names into `model`, built from the run's config (so a
    pretrained base is in it already), and check the hash of its weights."""
    where = ref["path"] or str(ck.directory / BASE_FOLDER)
    if ref["path"] is None:
        state = nnx.state(model, FROZEN_BASE)
        nnx.replace_by_pure_dict(state, ck.restore_base(nnx.to_pure_dict(state)))
        nnx.update(model, state)
    found = base_sha256(model)
    if found != ref["sha256"]:
        raise ConfigError(
            f"{where}: the LoRA base weights have sha256 {found}, but the checkpoints "
            f"were trained on a base with sha256 {ref['sha256']}"
        )
