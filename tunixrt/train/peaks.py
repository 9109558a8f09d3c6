"""The FLOP/s a device can reach, for model FLOPs utilization: the vendor's dense peak
of a known accelerator, and a matmul measured with jnp in the same run (what MFU is
taken against on a CPU, where no data-sheet figure applies)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

# Dense (no sparsity) bf16 peak FLOP/s per chip, from the vendors' data sheets; matched
# as a substring of jax's device_kind ("NVIDIA H200"), first match wins, so a name comes
# before its prefix (L40S before L4, A100 before A10).
PEAK_BF16_FLOPS = {
    "H200": 989e12,
    "H100": 989e12,
    "GH200": 989e12,
    "B200": 2250e12,
    "A100": 312e12,
    "L40S": 362e12,
    "L4": 121e12,
    "A10": 125e12,
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,
    "TPU v5e": 197e12,
    "TPU v5p": 459e12,
    "TPU v6": 918e12,
}

# Square matmul side per platform: large enough to reach the unit's rate, small enough
# for a shared CPU (2 x 2048^3 = 17 GFLOP per product).
_MATMUL_N = {"cpu": 2048}
_MATMUL_N_ACCELERATOR = 8192


@dataclass
class Peak:
    flops: float | None  # FLOP/s per device that MFU divides by; None: unknown
    source: str  # where that figure comes from, in words


def vendor_peak(device_kind: str) -> float | None:
    kind = device_kind.lower()
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k.lower() in kind), None)


def matmul_flops(n: int) -> int:
    """FLOPs of one [n, n] x [n, n] product: n^2 outputs of n multiply-adds each."""
    return 2 * n**3


def measure_matmul(dtype: jnp.dtype, platform: str, repeats: int = 3) -> float:
    """FLOP/s of a square jnp matmul in `dtype` (inputs and output) on the default
    device of `platform`: the median of `repeats` timed products after a compiled one."""
    n = _MATMUL_N.get(platform, _MATMUL_N_ACCELERATOR)
    device = jax.devices(platform)[0]
    keys = jax.random.split(jax.random.key(0))
    a, b = (jax.device_put(jax.random.normal(k, (n, n), dtype), device) for k in keys)
    product = jax.jit(jnp.matmul)
    jax.block_until_ready(product(a, b))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(product(a, b))
        times.append(time.perf_counter() - start)
    return matmul_flops(n) / float(np.median(times))


def mfu_peak(platform: str, device_kind: str, measured: float) -> Peak:
    """The peak MFU is taken against: the vendor's dense bf16 peak on an accelerator in
    the table (whatever the compute dtype, as MFU is usually quoted), the measured
    matmul of the compute dtype on a CPU, unknown otherwise."""
    if platform == "cpu":
        return Peak(measured, "jnp matmul measured in this run, compute dtype")
    vendor = vendor_peak(device_kind)
    if vendor is None:
        return Peak(None, f"unknown: {device_kind!r} is not in the table of vendor peaks")
    return Peak(vendor, f"vendor dense bf16 peak of {device_kind}")
