"""On an NVIDIA GPU (JAX for CUDA): the defaults pick bf16, and a train step there
agrees with the same step on the CPU. Skipped without a GPU; scripts/gpu_check.sh
runs them (`pytest -m gpu`)."""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest

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


def _two_steps(platform: Platform) -> list[dict[str, float]]:
    """The metrics of two float32 steps (the second after one AdamW update at full lr)."""
    cfg = validate(compose([*OVERRIDES, "optimizer.warmup_steps=0"]))
    devices = setup_devices(DeviceConfig(platform=platform, precision=Precision.fp32))
    s = setup(cfg, devices=devices)
    assert s.devices.platform == platform.value
    out = []
    for _ in range(2):
        metrics = s.train_step(s.model, s.optimizer, to_device(next(s.data.train), s))
        out.append({k: float(v) for k, v in jax.device_get(metrics).items()})
    return out


def test_a_float32_train_step_on_the_gpu_equals_the_cpu():
    # full float32 matmuls on the GPU too (not TF32), so the two differ only by the
    # order of summation; Adam's first update is about lr * sign(gradient), so weights
    # whose gradient is near 0 may move apart, but the next loss hardly feels them
    with jax.default_matmul_precision("float32"):
        gpu = _two_steps(Platform.gpu)
    cpu = _two_steps(Platform.cpu)
    assert all(m["finite"] and np.isfinite(m["loss"]) for m in gpu)
    for g, c in zip(gpu, cpu, strict=True):
        assert g["loss"] == pytest.approx(c["loss"], rel=1e-4)
        assert g["grad_norm"] == pytest.approx(c["grad_norm"], rel=1e-3)
        assert g["tokens"] == c["tokens"]
    assert gpu[1]["loss"] != gpu[0]["loss"]


def test_a_bf16_run_on_the_gpu_trains(tmp_path):
    cfg = validate(compose([*OVERRIDES, "device=gpu", "eval.max_examples=0"]))
    assert cfg.device.precision is Precision.bf16
    result = train(cfg, tmp_path / "run")
    losses = [result.train_losses[k] for k in sorted(result.train_losses)]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert result.final_step == cfg.trainer.max_steps
