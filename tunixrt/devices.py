"""Pick the accelerator, set JAX's memory and precision options, and build the mesh
(`device.mesh`, see `tunixrt.sharding`).

Memory settings are environment variables that JAX reads when its backend starts, so
`setup_devices` must run before the first JAX computation of the process.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from tunixrt.config import DeviceConfig, DistributedConfig, MatmulOutput, Platform, Precision
from tunixrt.errors import InputError
from tunixrt.sharding import batch_spec, batch_splits, build_mesh, describe, put_whole

log = logging.getLogger(__name__)

# JAX's platform names differ from the config's: "gpu" covers CUDA and ROCm.
_PREFERENCE = ("tpu", "gpu", "cpu")


class DeviceError(InputError, RuntimeError):
    """The requested platform is not available."""


@dataclass(frozen=True)
class Devices:
    platform: str
    devices: tuple[jax.Device, ...]
    mesh: Mesh
    compute_dtype: jnp.dtype
    # projections through tunixrt.models.dots.project: bf16 returning float32 before
    # rounding, or fp32 on a CPU (its weight gradients over flattened rows)
    f32_matmul_output: bool = False

    @property
    def local(self) -> tuple[jax.Device, ...]:
        """This process's devices (all of them in a one-process run)."""
        return tuple(d for d in self.devices if d.process_index == jax.process_index())

    @property
    def data_sharding(self) -> NamedSharding:
        """[rows, seq] batches: rows split over the mesh's data x fsdp axes."""
        return NamedSharding(self.mesh, batch_spec(self.mesh))

    @property
    def micro_batch_sharding(self) -> NamedSharding:
        """[grad_accum, rows, seq] train batches: rows split over data x fsdp."""
        return NamedSharding(self.mesh, batch_spec(self.mesh, leading=1))

    @property
    def batch_splits(self) -> int:
        """How many ways a batch's rows split (data x fsdp)."""
        return batch_splits(self.mesh)

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec())

    def put_batch(self, whole: np.ndarray) -> jax.Array:
        """A [rows, ...] batch every process holds whole (sampled by the same program from
        the same seed) on the mesh: rows split over data x fsdp where they divide evenly,
        else replicated."""
        split = whole.shape[0] % self.batch_splits == 0
        return put_whole(whole, self.data_sharding if split else self.replicated)


def _set_env(cfg: DeviceConfig) -> None:
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", str(cfg.preallocate).lower())
    if cfg.mem_fraction is not None:
        os.environ["XLA_PYTHON_CLIENT_MEM_FRACTION"] = str(cfg.mem_fraction)
    if cfg.deterministic:
        flags = os.environ.get("XLA_FLAGS", "")
        if "--xla_gpu_deterministic_ops" not in flags:
            os.environ["XLA_FLAGS"] = (flags + " --xla_gpu_deterministic_ops=true").strip()


def _available(platform: str) -> list[jax.Device]:
    try:
        return list(jax.devices(platform))
    except RuntimeError:
        return []


def _present_platforms() -> list[str]:
    return [p for p in _PREFERENCE if _available(p)]


def _pick(cfg: DeviceConfig) -> tuple[str, list[jax.Device]]:
    if cfg.platform is Platform.auto:
        platform = next(p for p in _PREFERENCE if _available(p))
        return platform, _available(platform)
    devices = _available(cfg.platform.value)
    if not devices:
        extra = {"gpu": "tunixrt[gpu]", "tpu": "tunixrt[tpu]"}.get(cfg.platform.value)
        hint = f"install JAX for it (pip install '{extra}') or " if extra else ""
        raise DeviceError(
            f"device={cfg.platform.value} was requested but JAX finds no "
            f"{cfg.platform.value.upper()} (present: {', '.join(_present_platforms())}); "
            f"{hint}use device=auto or device=cpu"
        )
    return cfg.platform.value, devices


def compute_dtype(precision: Precision, platform: str) -> jnp.dtype:
    """bf16 when asked, or for auto on an accelerator (its matrix units' native input);
    fp32 otherwise."""
    bf16 = precision is Precision.bf16 or (precision is Precision.auto and platform != "cpu")
    return jnp.dtype(jnp.bfloat16 if bf16 else jnp.float32)


def start_distributed(cfg: DistributedConfig) -> None:
    """Join the run's other processes (`device.distributed`), once per process and before
    JAX starts its backend: afterwards `jax.devices()` lists every process's devices and
    `jax.process_index()` names this one. CPU processes exchange collectives over Gloo
    (TCP); GPUs and TPUs use their own interconnect."""
    if not cfg.enabled or jax.distributed.is_initialized():
        return
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    # JAX's preemption notifier would take SIGTERM from tunixrt's handler; the loop
    # agrees on a stop itself (`tunixrt.train.signals.StopVote`)
    jax.config.update("jax_enable_preemption_service", False)
    where = cfg.coordinator or "the cluster's environment (SLURM)"
    log.info("joining the run's processes through %s", where)
    try:
        jax.distributed.initialize(
            coordinator_address=cfg.coordinator,
            num_processes=cfg.num_processes,
            process_id=cfg.process_id,
            initialization_timeout=cfg.timeout_s,
        )
    except (RuntimeError, ValueError) as err:
        raise DeviceError(
            f"device.distributed: could not join the run's processes through {where}: {err}"
        ) from err
    log.info("process %d of %d", jax.process_index(), jax.process_count())
    if not is_primary():
        # the primary speaks for the run; the others only report what goes wrong
        logging.getLogger("tunixrt").setLevel(logging.WARNING)


def is_primary() -> bool:
    """Process 0: the one that writes TensorBoard, the registry and the console."""
    return jax.process_index() == 0


def f32_matmul_output(setting: MatmulOutput, dtype: jnp.dtype, platform: str) -> bool:
    """Whether the projections go through tunixrt.models.dots' product. bf16: asked, or
    auto on a CPU, where XLA's bf16-result product runs at about half the speed. fp32:
    on a CPU, where the product's weight gradient over flattened rows spares XLA:CPU
    the transposing copies its own gradient makes (the setting is about bf16 only)."""
    if dtype == jnp.float32:
        return platform == "cpu"
    if dtype != jnp.bfloat16:
        return False
    return setting is MatmulOutput.float32 or (setting is MatmulOutput.auto and platform == "cpu")


def setup_devices(cfg: DeviceConfig) -> Devices:
    _set_env(cfg)
    start_distributed(cfg.distributed)
    platform, devices = _pick(cfg)
    mesh = build_mesh(cfg.mesh, devices, platform)
    dtype = compute_dtype(cfg.precision, platform)
    f32_output = f32_matmul_output(cfg.matmul_output, jnp.dtype(dtype), platform)
    log.info(
        "devices: %d x %s (%s) in %d process(es), mesh %s, compute dtype %s%s",
        len(devices),
        platform,
        devices[0].device_kind,
        jax.process_count(),
        describe(mesh),
        jnp.dtype(dtype).name,
        " (projections through float32 results)"
        if f32_output and jnp.dtype(dtype) == jnp.bfloat16
        else "",
    )
    return Devices(platform, tuple(devices), mesh, jnp.dtype(dtype), f32_output)
