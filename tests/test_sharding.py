"""The device mesh and the logical-axis rules (tunixrt.sharding): mesh shapes and their
errors, the placement rules, and, in processes that see 8 (or 4) CPU devices, training
on data, fsdp and tensor meshes against the one-device run, and checkpoints restored
onto another device count."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import pytest
from flax import nnx
from jax.sharding import AbstractMesh, PartitionSpec

from tests.helpers.config import compose_train
from tests.helpers.mesh_jobs import run, run_jobs
from tunixrt.config import ConfigError, MeshConfig, ModelConfig, PositionKind, validate
from tunixrt.models.axes import logical_axes
from tunixrt.models.decoder import Decoder
from tunixrt.models.factory import decoder_config
from tunixrt.models.lora import apply_lora
from tunixrt.sharding import MESH_AXES, batch_spec, mesh_shape, spec_for
from tunixrt.train.resume import check_compatible

# ---------------------------------------------------------------------------- the mesh


@pytest.mark.parametrize(
    ("mesh", "count", "shape"),
    [
        (MeshConfig(), 8, (8, 1, 1)),  # the default: every device on data
        (MeshConfig(), 1, (1, 1, 1)),
        (MeshConfig(data=1, fsdp=-1), 8, (1, 8, 1)),
        (MeshConfig(data=2, fsdp=2, tensor=2), 8, (2, 2, 2)),
        (MeshConfig(fsdp=2, tensor=2), 8, (2, 2, 2)),  # data=-1 takes the rest
        (MeshConfig(data=3, fsdp=1, tensor=1), 3, (3, 1, 1)),
    ],
)
def test_mesh_shape(mesh: MeshConfig, count: int, shape: tuple[int, int, int]) -> None:
    assert mesh_shape(mesh, count, "cpu") == shape


def test_a_mesh_that_does_not_fit_the_devices_names_its_keys() -> None:
    with pytest.raises(ConfigError) as err:
        mesh_shape(MeshConfig(data=2, fsdp=3, tensor=1), 8, "cpu")
    assert "device.mesh (data=2, fsdp=3, tensor=1)" in str(err.value)
    assert "multiply to 6" in str(err.value) and "8 cpu device(s)" in str(err.value)
    with pytest.raises(ConfigError) as err:
        mesh_shape(MeshConfig(fsdp=3), 8, "cpu")
    assert "device.mesh.data=-1" in str(err.value) and "multiply to 3" in str(err.value)


@pytest.mark.parametrize(
    ("override", "named"),
    [
        (["device.mesh.fsdp=0"], "device.mesh.fsdp=0"),
        (["device.mesh.tensor=-2"], "device.mesh.tensor=-2"),
        (["device.mesh.fsdp=-1"], "device.mesh.fsdp=-1"),  # data is -1 already
    ],
)
def test_bad_mesh_values_fail_before_anything_runs(override: list[str], named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        validate(compose_train(override))


def test_the_mesh_may_change_on_resume() -> None:
    saved = {"device": {"mesh": {"data": 2, "fsdp": 2, "tensor": 2}}, "seed": 0}
    check_compatible(
        saved, {"device": {"mesh": {"data": -1, "fsdp": 1, "tensor": 1}}, "seed": 0}, "here"
    )


# ---------------------------------------------------------------------------- the rules

MESH = AbstractMesh((2, 2, 2), MESH_AXES)


def test_weights_split_by_their_logical_axes(caplog: pytest.LogCaptureFixture) -> None:
    q = ("layers", 0, "attn", "q_proj", "kernel")
    assert spec_for(MESH, (64, 64), logical_axes(q)) == PartitionSpec("fsdp", "tensor")
    down = ("opt_state", 0, "mu", "layers", 1, "mlp", "down_proj", "kernel")  # a moment
    assert spec_for(MESH, (128, 64), logical_axes(down)) == PartitionSpec("tensor", "fsdp")
    embed = ("embed", "embedding")
    assert spec_for(MESH, (2048, 64), logical_axes(embed)) == PartitionSpec("tensor", "fsdp")
    norm = ("layers", 0, "attn_norm", "scale")
    assert spec_for(MESH, (64,), logical_axes(norm)) == PartitionSpec()
    # a factored moment (adafactor's v_row) has fewer dimensions than its weight
    assert spec_for(MESH, (64,), logical_axes(q)) == PartitionSpec()
    with caplog.at_level(logging.INFO, logger="tunixrt.sharding"):
        odd = spec_for(MESH, (2049, 64), logical_axes(embed), notes=True)
    assert odd == PartitionSpec(None, "fsdp")  # 2049 ids do not split in two
    assert "device.mesh.tensor=2 does not divide a vocab dimension of 2049" in caplog.text


def test_axes_of_size_one_are_left_out() -> None:
    mesh = AbstractMesh((8, 1, 1), MESH_AXES)
    q = ("layers", 0, "attn", "q_proj", "kernel")
    assert spec_for(mesh, (64, 64), logical_axes(q)) == PartitionSpec(None, None)
    assert batch_spec(mesh, leading=1) == PartitionSpec(None, "data")
    assert batch_spec(MESH) == PartitionSpec(("data", "fsdp"))
    assert batch_spec(AbstractMesh((1, 1, 1), MESH_AXES)) == PartitionSpec(None)


def test_every_matrix_and_bias_of_every_layout_has_logical_axes() -> None:
    """GPT-2's layout (biases, learned positions, an untied head) with LoRA adapters:
    only norm parameters are left unsplit; every other axis count matches its array."""
    cfg = ModelConfig(
        name="t", dim=16, n_layers=1, n_heads=2, n_kv_heads=1, ffn_dim=32, max_seq_len=8,
        tie_embeddings=False, qkv_bias=True, out_bias=True, mlp_bias=True, position=PositionKind.learned,
    )  # fmt: skip
    model = Decoder(
        decoder_config(cfg, vocab_size=32, dtype=jnp.dtype(jnp.float32)), rngs=nnx.Rngs(0)
    )
    apply_lora(model, rank=2, rngs=nnx.Rngs(0))
    unsplit = []
    for path, variable in nnx.to_flat_state(nnx.state(model)):
        axes = logical_axes(path)
        if axes is None:
            unsplit.append(path[-2])
        else:
            assert len(axes) == variable.get_value().ndim, path
    assert set(unsplit) == {"attn_norm", "mlp_norm", "final_norm"}


# ------------------------------------------------ training on 8 devices, in subprocesses

STEPS = 4
MESHES = {
    "data=8": {"data": 8},
    "fsdp=8": {"data": 1, "fsdp": 8},
    "data=2,fsdp=2,tensor=2": {"data": 2, "fsdp": 2, "tensor": 2},
}
KERNEL_SHAPE = [64, 64]  # q_proj of debug=fast: dim 64 -> 4 heads of 16


def overrides(shared: Path, steps: int = STEPS, **mesh: int) -> list[str]:
    keys = {
        "debug": "fast",
        "trainer.max_steps": steps,
        "trainer.batch_size": 8,  # rows: one per device on 8
        "trainer.seq_len": 64,
        "model.max_seq_len": 64,
        "trainer.log_every": 1,
        "trainer.eval_every": 0,  # the eval loss at the end only
        "model.n_layers": 1,
        "checkpoint.every_steps": 0,  # a checkpoint at the end only
        "optimizer.decay_steps": STEPS,  # a 2-step run has the 4-step run's schedule
        "registry.url": "null",
        "dataset.cache_dir": str(shared / "tokens"),
        "device.compile_cache_dir": str(shared / "jax_cache"),
        **{f"device.mesh.{axis}": size for axis, size in mesh.items()},
    }
    return [f"{k}={v}" for k, v in keys.items()]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every run of this module: in a process of 8 devices each mesh, and 2 steps of
    the 2x2x2 mesh to restore on 1; in this one (1 device) the reference, that restore,
    and 2 steps to restore on 4; in a process of 4 devices that restore on fsdp=2 x
    tensor=2."""
    assert len(jax.devices()) == 1
    shared = tmp_path_factory.mktemp("sharding")
    mesh222 = MESHES["data=2,fsdp=2,tensor=2"]
    eight = run_jobs(
        8,
        [
            {"inspect": overrides(shared, **mesh222)},
            {"inspect": overrides(shared, **MESHES["fsdp=8"])},
            *[{"run_dir": str(shared / n), "overrides": overrides(shared, **m)} for n, m in MESHES.items()],
            {"run_dir": str(shared / "from8"), "overrides": overrides(shared, 2, **mesh222)},
        ],
        shared,
    )  # fmt: skip
    one = [  # here: this process sees one device
        run({"run_dir": str(shared / "reference"), "overrides": overrides(shared)}),
        run({"run_dir": str(shared / "from8"), "overrides": overrides(shared)}),
        run({"run_dir": str(shared / "from1"), "overrides": overrides(shared, 2)}),
    ]
    four = run_jobs(
        4,
        [{"run_dir": str(shared / "from1"), "overrides": overrides(shared, fsdp=2, tensor=2)}],
        shared,
    )
    return {
        "inspect": {"data=2,fsdp=2,tensor=2": eight[0], "fsdp=8": eight[1]},
        "meshes": dict(zip(MESHES, eight[2:5], strict=True)),
        "saved_on_8": eight[5],
        "reference": one[0],
        "restored_on_1": one[1],
        "saved_on_1": one[2],
        "restored_on_4": four[0],
    }


def assert_losses_match(got: dict[str, float], want: dict[str, float], steps: range) -> None:
    assert sorted(map(int, got)) == list(steps)
    for step in steps:
        assert abs(got[str(step)] - want[str(step)]) <= 1e-5, (step, got, want)


@pytest.mark.slow
def test_the_reference_trains(results: dict[str, Any]) -> None:
    losses = results["reference"]["losses"]
    assert sorted(map(int, losses)) == list(range(1, STEPS + 1))
    assert losses[str(STEPS)] < losses["1"] - 0.1  # the comparisons below compare training


@pytest.mark.slow
@pytest.mark.parametrize("mesh", list(MESHES))
def test_each_mesh_trains_as_one_device(results: dict[str, Any], mesh: str) -> None:
    got, want = results["meshes"][mesh], results["reference"]
    assert_losses_match(got["losses"], want["losses"], range(1, STEPS + 1))
    assert got["eval_loss"] == pytest.approx(want["eval_loss"], abs=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("mesh", "split"),
    [("data=2,fsdp=2,tensor=2", [["fsdp"], ["tensor"]]), ("fsdp=8", [["fsdp"], None])],
)
def test_weights_and_moments_are_split(
    results: dict[str, Any], mesh: str, split: list[Any]
) -> None:
    """q_proj's kernel [dim, heads] and its AdamW moment live in pieces, before and after
    a step: each device holds dim / fsdp x heads / tensor of it."""
    sizes = {"data": 1, "tensor": 1, **MESHES[mesh]}
    piece = [KERNEL_SHAPE[0] // sizes["fsdp"], KERNEL_SHAPE[1] // sizes["tensor"]]
    for when in ("before", "after"):
        for array in ("param", "mu"):
            placed = results["inspect"][mesh][when][array]
            assert placed["shape"] == KERNEL_SHAPE and placed["devices"] == 8
            assert placed["spec"] == split, (when, array)
            assert placed["shard_shape"] == piece, (when, array)


@pytest.mark.slow
@pytest.mark.parametrize(
    "saved, restored", [("saved_on_8", "restored_on_1"), ("saved_on_1", "restored_on_4")]
)
def test_a_checkpoint_continues_on_another_device_count(
    results: dict[str, Any], saved: str, restored: str
) -> None:
    """Saved on 8 devices and continued on 1, or saved on 1 and continued on 4."""
    want = results["reference"]["losses"]
    assert_losses_match(results[saved]["losses"], want, range(1, 3))
    again = results[restored]
    assert again["resumed_from"] == 2
    assert_losses_match(again["losses"], want, range(3, STEPS + 1))
    assert again["eval_loss"] == pytest.approx(results["reference"]["eval_loss"], abs=1e-5)
