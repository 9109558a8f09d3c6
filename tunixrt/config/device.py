"""The device section: the platform, compute precision, GPU memory and determinism
settings, the compilation cache, the device mesh and the processes of a multi-host run."""

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


class MatmulOutput(enum.StrEnum):
    """What a bf16 projection's product returns before the next operation."""

    auto = "auto"  # float32 on a CPU (XLA:CPU's bf16-result products are slow), bf16 elsewhere
    float32 = "float32"  # accumulate and return float32, then round to bf16
    bf16 = "bf16"  # XLA's own bf16 product


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
class DistributedConfig:
    """Several processes (hosts) training one run on JAX's own runtime
    (`jax.distributed.initialize`). With `coordinator` null the cluster is read from the
    environment (SLURM, as the submitit launcher with `nodes > 1` sets it); otherwise
    every process names the same coordinator and process count, and its own id."""

    enabled: bool = False
    coordinator: str | None = None  # host:port of process 0's coordination service
    num_processes: int | None = None
    process_id: int | None = None
    # seconds a process waits for the others at start-up before failing
    timeout_s: int = 300

    def __post_init__(self) -> None:
        _require(self.timeout_s >= 1, "device.distributed.timeout_s", self.timeout_s, ">= 1")
        explicit = {"num_processes": self.num_processes, "process_id": self.process_id}
        if self.coordinator is None:
            for key, value in explicit.items():
                _require(
                    value is None,
                    f"device.distributed.{key}",
                    value,
                    "null unless device.distributed.coordinator is set (SLURM sets both)",
                )
            return
        _require(
            ":" in self.coordinator,
            "device.distributed.coordinator",
            self.coordinator,
            "host:port",
        )
        _require(
            self.num_processes is not None and self.num_processes >= 1,
            "device.distributed.num_processes",
            self.num_processes,
            "a positive integer when device.distributed.coordinator is set",
        )
        assert self.num_processes is not None
        _require(
            self.process_id is not None and 0 <= self.process_id < self.num_processes,
            "device.distributed.process_id",
            self.process_id,
            f"an integer in [0, {self.num_processes}) when device.distributed.coordinator is set",
        )


@dataclass
class DeviceConfig:
    platform: Platform = Platform.auto
    # compute dtype (parameters and optimizer state stay float32); auto: bf16 on a GPU or
    # TPU, fp32 on a CPU (where XLA's bf16 matmuls are slower than fp32)
    precision: Precision = Precision.auto
    # bf16 only: the projections' products (tunixrt.models.dots); parameters, activations
    # and gradients stay as precision says either way
    matmul_output: MatmulOutput = MatmulOutput.auto
    preallocate: bool = False  # GPU: reserve memory up front (XLA_PYTHON_CLIENT_PREALLOCATE)
    mem_fraction: float | None = None  # GPU: share of device memory JAX may use
    # GPU: XLA_FLAGS --xla_gpu_deterministic_ops=true, so the same batches give the same
    # bits (no atomics in reductions, deterministic cuDNN/cuBLAS picks) and a resumed run
    # repeats the uninterrupted one exactly; slower. Set before JAX starts its backend.
    deterministic: bool = False
    # JAX's persistent compilation cache, so a restart skips most compilation; null: off
    compile_cache_dir: str | None = "outputs/.jax_cache"
    mesh: MeshConfig = field(default_factory=MeshConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)

    def __post_init__(self) -> None:
        _require(
            self.mem_fraction is None or 0.0 < self.mem_fraction <= 1.0,
            "device.mem_fraction",
            self.mem_fraction,
            "a number in (0, 1] or null",
        )
