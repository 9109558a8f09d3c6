"""Device selection on a CPU-only machine."""

from __future__ import annotations

import os

import jax
import pytest

from tunixrt.config import ConfigError, DeviceConfig, MeshConfig, Platform, Precision, validate
from tunixrt.devices import DeviceError, compute_dtype, setup_devices


def test_auto_picks_the_best_present_platform():
    devices = setup_devices(DeviceConfig(platform=Platform.auto))
    assert devices.platform == jax.default_backend()
    # device.mesh's default: every device on data
    assert dict(devices.mesh.shape) == {"data": len(jax.devices()), "fsdp": 1, "tensor": 1}


def test_a_mesh_the_devices_cannot_fill_fails_clearly():
    count = len(jax.devices())
    with pytest.raises(ConfigError) as err:
        setup_devices(DeviceConfig(mesh=MeshConfig(data=1, fsdp=count + 1)))
    assert f"device.mesh (data=1, fsdp={count + 1}, tensor=1)" in str(err.value)
    assert f"JAX finds {count} {jax.default_backend()} device(s)" in str(err.value)


def test_cpu_and_bf16():
    devices = setup_devices(DeviceConfig(platform=Platform.cpu, precision=Precision.bf16))
    assert devices.platform == "cpu" and devices.compute_dtype == jax.numpy.bfloat16


@pytest.mark.parametrize("platform", [Platform.gpu, Platform.tpu])
def test_missing_accelerator_fails_clearly(platform):
    if jax.default_backend() == platform.value:
        pytest.skip(f"this machine has a {platform.value}")
    with pytest.raises(DeviceError) as err:
        setup_devices(DeviceConfig(platform=platform))
    text = str(err.value)
    assert f"device={platform.value}" in text and "device=cpu" in text and "present: " in text


@pytest.mark.parametrize(
    "precision,platform,dtype",
    [
        (Precision.auto, "cpu", "float32"),
        (Precision.auto, "gpu", "bfloat16"),
        (Precision.auto, "tpu", "bfloat16"),
        (Precision.fp32, "gpu", "float32"),
        (Precision.bf16, "cpu", "bfloat16"),
    ],
)
def test_auto_precision_is_bf16_on_accelerators_only(precision, platform, dtype):
    assert compute_dtype(precision, platform) == jax.numpy.dtype(dtype)


def test_the_default_device_config_computes_in_fp32_on_a_cpu(compose_cfg):
    cfg = validate(compose_cfg([]))
    assert cfg.device.precision == Precision.auto
    if jax.default_backend() == "cpu":
        assert setup_devices(cfg.device).compute_dtype == jax.numpy.float32


def test_deterministic_sets_the_xla_flag(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/x")
    setup_devices(DeviceConfig(platform=Platform.cpu, deterministic=True))
    assert os.environ["XLA_FLAGS"].split() == [
        "--xla_dump_to=/tmp/x",
        "--xla_gpu_deterministic_ops=true",
    ]
