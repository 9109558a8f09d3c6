"""On an NVIDIA GPU (JAX for CUDA): the defaults pick bf16, and a train step there
agrees with the same step on the CPU. Skipped without a GPU; scripts/gpu_check.sh
runs them (`pytest -m gpu`)."""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest
from flax import nnx

from tunixrt.composition import compose
from tunixrt.config import DeviceConfig, Platform, Precision, validate
from tunixrt.devices import setup_devices
from tunixrt.train import train
from tunixrt.train.setup import setup, to_device


def _has_gpu() -> bool:
    try:
        return bool(jax.devices("gpu"))
    except RuntimeError:
        return False


# scripts/gpu_check.sh sets TUNIXRT_REQUIRE_GPU=1: there a missing GPU fails, not skips
_REQUIRED = os.environ.get("TUNIXRT_REQUIRE_GPU") == "1"
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not (_REQUIRED or _has_gpu()), reason="needs a GPU that JAX sees"),
]
OVERRIDES = ["debug=fast", "registry.url=null", "device.compile_cache_dir=null"]


def test_auto_computes_in_bf16_on_the_gpu():
    devices = setup_devices(DeviceConfig())
    assert devices.platform == "gpu" and devices.compute_dtype == jax.numpy.bfloat16
    cfg = validate(compose(OVERRIDES))
    assert cfg.device.platform is Platform.auto and cfg.device.precision is Precision.auto


def _one_step(platform: Platform) -> tuple[dict[str, float], list[np.ndarray]]:
    cfg = validate(compose([*OVERRIDES, "device.precision=fp32"]))
    devices = setup_devices(DeviceConfig(platform=platform, precision=Precision.fp32))
    s = setup(cfg, devices=devices)
    assert s.devices.platform == platform.value
    metrics = s.train_step(s.model, s.optimizer, to_device(next(s.data.train), s))
    params = [np.asarray(x) for x in jax.tree.leaves(nnx.state(s.model, nnx.Param))]
    return {k: float(v) for k, v in jax.device_get(metrics).items()}, params


def test_a_float32_train_step_on_the_gpu_equals_the_cpu():
    # full float32 matmuls on the GPU too (not TF32), so the two differ only by the
    # order of summation
    with jax.default_matmul_precision("float32"):
        gpu, gpu_params = _one_step(Platform.gpu)
    cpu, cpu_params = _one_step(Platform.cpu)
    assert np.isfinite(gpu["loss"]) and gpu["finite"]
    assert gpu["loss"] == pytest.approx(cpu["loss"], rel=1e-5)
    assert gpu["grad_norm"] == pytest.approx(cpu["grad_norm"], rel=1e-4)
    assert len(gpu_params) == len(cpu_params)
    for g, c in zip(gpu_params, cpu_params, strict=True):
        np.testing.assert_allclose(g, c, rtol=1e-4, atol=1e-6)


def test_a_bf16_run_on_the_gpu_trains(tmp_path):
    cfg = validate(compose([*OVERRIDES, "device=gpu", "eval.max_examples=0"]))
    assert cfg.device.precision is Precision.bf16
    result = train(cfg, tmp_path / "run")
    losses = [result.train_losses[k] for k in sorted(result.train_losses)]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert result.final_step == cfg.trainer.max_steps
