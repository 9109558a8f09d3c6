"""The device mesh (`device.mesh`) and the logical-axis rules that place arrays on it.

Three mesh axes: `data` and `fsdp` split the rows of every batch; `fsdp` also splits
each weight along the model width, so a device holds 1/fsdp of the parameters and of
the optimizer state; `tensor` splits attention heads, MLP hidden units and the
vocabulary. XLA's partitioner propagates these placements through the step and inserts
the collectives it needs.
`RULES` maps the model's logical axes (`tunixrt.models.axes`) to mesh axes.

A dimension that a mesh axis does not divide stays whole along that axis (replicated)
with a logged note, so any device count works. An axis of size 1 is left out of every
spec: on one device, or with every device on `data`, parameters are replicated.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import AbstractMesh, AxisType, Mesh, NamedSharding, PartitionSpec

from tunixrt.config import ConfigError, MeshConfig
from tunixrt.models.axes import EMBED, HEADS, KV_HEADS, MLP, VOCAB, LogicalAxes, logical_axes

log = logging.getLogger(__name__)

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")  # a batch's rows split over both
RULES: dict[str, str] = {
    EMBED: "fsdp",
    HEADS: "tensor",
    KV_HEADS: "tensor",
    MLP: "tensor",
    VOCAB: "tensor",
}


# ---------------------------------------------------------------------------- the mesh


def mesh_shape(cfg: MeshConfig, count: int, platform: str) -> tuple[int, int, int]:
    """(data, fsdp, tensor) for `count` devices: the product must be `count`, or the
    axis at -1 takes what the others leave."""
    sizes = {axis: getattr(cfg, axis) for axis in MESH_AXES}
    given = math.prod(size for size in sizes.values() if size != -1)
    rest = [axis for axis, size in sizes.items() if size == -1]
    shown = ", ".join(f"{axis}={size}" for axis, size in sizes.items())
    if rest:
        if count % given:
            raise ConfigError(
                f"invalid config value device.mesh.{rest[0]}=-1 ({shown}): the other axes "
                f"multiply to {given}, which does not divide the {count} {platform} "
                "device(s) JAX finds"
            )
        sizes[rest[0]] = count // given
    elif given != count:
        raise ConfigError(
            f"invalid config value device.mesh ({shown}): the axes multiply to {given}, "
            f"but JAX finds {count} {platform} device(s); make the product {count}, or "
            "set one axis to -1 (the devices the others leave)"
        )
    return sizes["data"], sizes["fsdp"], sizes["tensor"]


def build_mesh(cfg: MeshConfig, devices: Sequence[jax.Device], platform: str) -> Mesh:
    """The (data, fsdp, tensor) mesh over `devices`, ordered for the interconnect by
    jax.make_mesh. Auto axes: XLA propagates shardings from the arrays' own."""
    shape = mesh_shape(cfg, len(devices), platform)
    auto = (AxisType.Auto,) * len(MESH_AXES)
    return jax.make_mesh(shape, MESH_AXES, axis_types=auto, devices=devices)


def describe(mesh: Mesh) -> str:
    return " x ".join(f"{axis}={mesh.shape[axis]}" for axis in MESH_AXES)


# ---------------------------------------------------------------------------- weights


@functools.cache
def _note(text: str) -> None:
    """Log each note once per process: every layer and optimizer moment repeats it."""
    log.info(text)


def spec_for(
    mesh: Mesh | AbstractMesh,
    shape: Sequence[int],
    logical: LogicalAxes | None,
    *,
    notes: bool = False,
) -> PartitionSpec:
    """Each dimension on its logical axis's mesh axis when that axis divides it; else
    (or when the axis has size 1 or is taken) whole."""
    if logical is None or len(logical) != len(shape):
        return PartitionSpec()  # a norm scale, a step count, a factored moment
    parts: list[str | None] = []
    for size, name in zip(shape, logical, strict=True):
        axis = RULES.get(name) if name is not None else None
        split = mesh.shape[axis] if axis is not None else 1
        if axis is None or split == 1 or axis in parts:
            parts.append(None)
        elif size % split:
            if notes:
                _note(
                    f"device.mesh.{axis}={split} does not divide a {name} dimension of "
                    f"{size}: those weights stay whole along {axis}"
                )
            parts.append(None)
        else:
            parts.append(axis)
    return PartitionSpec(*parts)


def state_shardings(state: nnx.State, mesh: Mesh, *, notes: bool = False) -> nnx.State:
    """The NamedSharding of every array of a model's or optimizer's state (or of
    gradients), by its path's logical axes."""

    def one(path: tuple[Any, ...], variable: Any) -> Any:
        shape = np.shape(variable.get_value())
        spec = spec_for(mesh, shape, logical_axes(path), notes=notes)
        return variable.replace(NamedSharding(mesh, spec))

    return nnx.map_state(one, state)


def place(obj: nnx.Module | nnx.Optimizer, mesh: Mesh) -> None:
    """Move a model's or optimizer's arrays onto the mesh by the rules, in place."""
    state = nnx.state(obj)
    nnx.update(obj, jax.tree.map(put_whole, state, state_shardings(state, mesh, notes=True)))


def constrain(tree: Any, mesh: Mesh) -> Any:
    """Inside jit: `tree` (a State, or a model or optimizer, updated in place) held to
    the rules' shardings, so a step returns its state placed as it came in."""
    if isinstance(tree, nnx.State):
        return jax.lax.with_sharding_constraint(tree, state_shardings(tree, mesh))
    nnx.update(tree, constrain(nnx.state(tree), mesh))
    return tree


# ---------------------------------------------------------------------------- batches


def batch_spec(mesh: Mesh, leading: int = 0) -> PartitionSpec:
    """Rows (after `leading` unsplit axes, e.g. grad_accum) over data x fsdp."""
    axes = tuple(axis for axis in BATCH_AXES if mesh.shape[axis] > 1)
    rows = axes[0] if len(axes) == 1 else (axes or None)
    return PartitionSpec(*([None] * leading), rows)


def batch_splits(mesh: Mesh) -> int:
    """How many ways a batch's rows split."""
    return math.prod(mesh.shape[axis] for axis in BATCH_AXES)


def put_whole(value: Any, sharding: NamedSharding) -> jax.Array:
    """An array every process holds whole (built from the same seed or file) as one
    global array split by `sharding`: each process keeps only its devices' pieces."""
    if jax.process_count() == 1:
        return jax.device_put(value, sharding)
    host = np.asarray(value)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def put_rows(local: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """This process's rows of a batch as one global array: a plain transfer with one
    process; with several, each contributes its rows (`data`'s `shard`)."""
    if jax.process_count() == 1:
        return jax.device_put(local, sharding)
    return jax.make_array_from_process_local_data(sharding, local)
