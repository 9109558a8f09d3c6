"""The device section: the platform, compute precision, GPU memory and determinism
settings, the compilation cache and the device mesh."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field

from tunixrt.config._checks import _require


class Platform(enum.StrEnum):
    auto = "auto"
    cpu = "cpu"
    gpu = "gpu"
    tpu = "tpu"


class Precision(enum.StrEnum):
    auto = "auto"  # bf16 on a GPU or TPU, fp32 on a CPU
    fp32 = "fp32"
    bf16 = "bf16"


@dataclass
class MeshConfig:
    """How the devices split into the mesh axes (`tunixrt.sharding`): batches split over
    data x fsdp, parameters and optimizer state over fsdp (the model width) and tensor
    (heads, MLP and vocabulary). The product is the device count; one axis may be -1,
    the devices the others leave."""

    data: int = -1
    fsdp: int = 1
    tensor: int = 1

    def __post_init__(self) -> None:
        sizes = dataclasses.asdict(self)
        for axis, size in sizes.items():
            _require(
                size == -1 or size >= 1,
                f"device.mesh.{axis}",
                size,
                "a positive integer, or -1 for the devices the other axes leave",
            )
        rest = [axis for axis, size in sizes.items() if size == -1]
        _require(
            len(rest) <= 1,
            f"device.mesh.{rest[-1]}" if rest else "device.mesh",
            -1,
            f"at most one axis at -1 (the rest), but {' and '.join(rest)} are",
        )


@dataclass
class DeviceConfig:
    platform: Platform = Platform.auto
    # compute dtype (parameters and optimizer state stay float32); auto: bf16 on a GPU or
    # TPU, fp32 on a CPU (where XLA's bf16 matmuls are slower than fp32)
    precision: Precision = Precision.auto
    preallocate: bool = False  # GPU: reserve memory up front (XLA_PYTHON_CLIENT_PREALLOCATE)
    mem_fraction: float | None = None  # GPU: share of device memory JAX may use
    # GPU: XLA_FLAGS --xla_gpu_deterministic_ops=true, so the same batches give the same
    # bits (no atomics in reductions, deterministic cuDNN/cuBLAS picks) and a resumed run
    # repeats the uninterrupted one exactly; slower. Set before JAX starts its backend.
    deterministic: bool = False
    # JAX's persistent compilation cache, so a restart skips most compilation; null: off
    compile_cache_dir: str | None = "outputs/.jax_cache"
    mesh: MeshConfig = field(default_factory=MeshConfig)

    def __post_init__(self) -> None:
        _require(
            self.mem_fraction is None or 0.0 < self.mem_fraction <= 1.0,
            "device.mem_fraction",
            self.mem_fraction,
            "a number in (0, 1] or null",
        )
