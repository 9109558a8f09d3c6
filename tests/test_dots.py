"""bf16 projections through float32 results (tunixrt.models.dots): the product and both
gradients equal the float32 products of the same bf16 values rounded once to bf16; a
model switched to them keeps its parameters, its LoRA adapters and its logits; fp32
projections through the same product (on a CPU) give lax's products and gradients; and
the device setting picks them on a CPU for bf16 and fp32."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tests.helpers.config import compose_train
from tests.helpers.models import tiny_decoder_config
from tunixrt.config import DeviceConfig, MatmulOutput, Platform, Precision
from tunixrt.devices import f32_matmul_output, setup_devices
from tunixrt.models import Decoder
from tunixrt.models.dots import (
    dot_general_f32_logits,
    dot_general_f32_result,
    linear_f32_result,
    logits_f32,
    tied_logits_f32,
    use_f32_results,
)
from tunixrt.models.lora import LoRALinear, apply_lora
from tunixrt.train import train

BF16 = jnp.bfloat16


def bf16_values(key: int, shape: tuple[int, ...]) -> jax.Array:
    return jax.random.normal(jax.random.key(key), shape).astype(BF16)


def rounded(product: np.ndarray) -> np.ndarray:
    """A float64 product rounded once to bf16, as float64 again."""
    return np.asarray(jnp.asarray(product, jnp.float32).astype(BF16), np.float64)


def as64(x: jax.Array) -> np.ndarray:
    return np.asarray(x.astype(jnp.float32), np.float64)


def one_ulp(x: np.ndarray) -> np.ndarray:
    # bf16 keeps 8 significant bits: neighbours differ by |x| * 2^-7 at most
    return np.abs(x) * 2.0**-7 + 1e-30


def test_product_and_gradients_are_float32_products_rounded_once():
    x, w, g = bf16_values(0, (3, 5, 96)), bf16_values(1, (96, 40)), bf16_values(2, (3, 5, 40))
    y, vjp = jax.vjp(linear_f32_result, x, w)
    dx, dw = vjp(g)
    assert y.dtype == dx.dtype == dw.dtype == BF16
    x64, w64, g64 = as64(x), as64(w), as64(g)
    want = {
        "y": rounded(x64 @ w64),
        "dx": rounded(g64 @ w64.T),
        "dw": rounded(x64.reshape(-1, 96).T @ g64.reshape(-1, 40)),
    }
    for name, got in {"y": y, "dx": dx, "dw": dw}.items():
        # accumulated in float32, so at most one bf16 step from the exact product's rounding
        assert np.all(np.abs(as64(got) - want[name]) <= one_ulp(want[name])), name
    # the bf16-result product XLA makes on its own is no closer than this
    plain = as64(x @ w)
    assert np.abs(plain - x64 @ w64).mean() >= np.abs(as64(y) - x64 @ w64).mean() * 0.9


def test_logits_stay_float32_and_take_a_bf16_gradient():
    x, table, g = bf16_values(6, (2, 3, 32)), bf16_values(7, (50, 32)), bf16_values(8, (2, 3, 50))
    logits, vjp = jax.vjp(tied_logits_f32, x, table)
    assert logits.dtype == jnp.float32
    x64, t64 = as64(x), as64(table)
    np.testing.assert_allclose(np.asarray(logits), x64 @ t64.T, rtol=1e-5, atol=1e-5)
    dx, dtable = vjp(g.astype(jnp.float32))
    g64 = as64(g)
    want_dx, want_dt = rounded(g64 @ t64), rounded(g64.reshape(-1, 50).T @ x64.reshape(-1, 32))
    assert np.all(np.abs(as64(dx) - want_dx) <= one_ulp(want_dx))
    assert np.all(np.abs(as64(dtable) - want_dt) <= one_ulp(want_dt))
    assert logits_f32(x, table.T).dtype == jnp.float32


def test_other_products_are_left_to_lax():
    a, b = bf16_values(3, (4, 6, 8)), bf16_values(4, (4, 8, 6))
    batched = (((2,), (1,)), ((0,), (0,)))
    np.testing.assert_array_equal(
        dot_general_f32_result(a, b, batched), jax.lax.dot_general(a, b, batched)
    )
    x32, w16 = a[0].astype(jnp.float32), b[0]
    contract = (((1,), (0,)), ((), ()))
    mixed = dot_general_f32_result(x32, w16, contract)
    assert mixed.dtype == jax.lax.dot_general(x32, w16, contract).dtype == jnp.float32
    asked = dot_general_f32_result(a[0], w16, contract, preferred_element_type=jnp.float32)
    assert asked.dtype == jnp.float32  # lax's, not rounded to bf16


def test_fp32_product_and_gradients_are_lax_ones():
    """The fp32 path (CPU): the same values and gradients as lax's product and JAX's own
    derivative, whose weight gradient contracts batch and sequence axes separately."""
    x = jax.random.normal(jax.random.key(0), (3, 5, 96))
    w = jax.random.normal(jax.random.key(1), (96, 40))
    g = jax.random.normal(jax.random.key(2), (3, 5, 40))
    contract = (((2,), (0,)), ((), ()))
    y, vjp = jax.vjp(lambda x, w: dot_general_f32_result(x, w, contract), x, w)
    want_y, want_vjp = jax.vjp(lambda x, w: jax.lax.dot_general(x, w, contract), x, w)
    assert y.dtype == jnp.float32
    for got, want in zip((y, *vjp(g)), (want_y, *want_vjp(g)), strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)
    x64, w64, g64 = (np.asarray(a, np.float64) for a in (x, w, g))
    dw = np.asarray(vjp(g)[1], np.float64)
    np.testing.assert_allclose(
        dw, x64.reshape(-1, 96).T @ g64.reshape(-1, 40), rtol=1e-5, atol=1e-4
    )
    np.testing.assert_allclose(np.asarray(y), x64 @ w64, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(("lora", "tied"), [(True, False), (False, True)])
def test_a_switched_fp32_model_keeps_its_logits_and_gradients(lora, tied):
    def build() -> Decoder:
        model = Decoder(tiny_decoder_config(dtype="float32", tie_embeddings=tied), rngs=nnx.Rngs(0))
        if lora:
            apply_lora(model, rank=4, alpha=8.0, targets=("q_proj", "v_proj"), rngs=nnx.Rngs(1))
        return model

    plain, switched = build(), build()
    assert use_f32_results(switched) == len(projections(switched))
    tokens = jax.random.randint(jax.random.key(5), (2, 16), 0, 64)

    def loss(model: Decoder) -> jax.Array:
        return (model(tokens) ** 2).mean()

    (want, want_grads), (got, got_grads) = (nnx.value_and_grad(loss)(m) for m in (plain, switched))
    np.testing.assert_allclose(float(got), float(want), rtol=1e-6)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7),
        nnx.state(got_grads),
        nnx.state(want_grads),
    )


def projections(model: nnx.Module) -> list[nnx.Module]:
    return [m for _, m in nnx.iter_modules(model) if isinstance(m, nnx.Linear | LoRALinear)]


@pytest.mark.parametrize(("lora", "tied"), [(False, False), (True, False), (False, True)])
def test_a_switched_model_keeps_its_weights_and_logits(lora, tied):
    cfg = tiny_decoder_config(dtype="bfloat16", tie_embeddings=tied)
    model = Decoder(cfg, rngs=nnx.Rngs(0))
    if lora:
        apply_lora(model, rank=4, alpha=8.0, targets=("q_proj", "v_proj"), rngs=nnx.Rngs(1))
    tokens = jax.random.randint(jax.random.key(5), (2, 16), 0, cfg.vocab_size)
    before = nnx.state(model)
    plain = model(tokens)
    switched = use_f32_results(model)
    assert switched == len(projections(model)) == 2 * 7 + (not tied)  # 7 a layer, lm_head
    layers = [m for m in projections(model) if m is not model.lm_head]
    assert all(m.dot_general is dot_general_f32_result for m in layers)
    assert (model.tied_head is tied_logits_f32) is tied
    if not tied:
        assert model.lm_head.dot_general is dot_general_f32_logits
    jax.tree.map(np.testing.assert_array_equal, nnx.state(model), before)
    reference = Decoder(tiny_decoder_config(dtype="float32", tie_embeddings=tied), rngs=nnx.Rngs(0))
    if lora:
        apply_lora(reference, rank=4, alpha=8.0, targets=("q_proj", "v_proj"), rngs=nnx.Rngs(1))
    exact = np.asarray(reference(tokens))
    got = np.asarray(model(tokens))
    # bf16 activations either way; float32 results round once per product instead
    assert np.abs(got - exact).max() < 0.05
    assert np.abs(got - exact).mean() <= np.abs(np.asarray(plain) - exact).mean() * 1.2


@pytest.mark.parametrize(
    ("setting", "dtype", "platform", "want"),
    [
        (MatmulOutput.auto, BF16, "cpu", True),
        (MatmulOutput.auto, BF16, "gpu", False),
        (MatmulOutput.auto, jnp.float32, "cpu", True),
        (MatmulOutput.auto, jnp.float32, "gpu", False),
        (MatmulOutput.float32, BF16, "gpu", True),
        (MatmulOutput.bf16, BF16, "cpu", False),
        (MatmulOutput.bf16, jnp.float32, "cpu", True),  # the setting is about bf16
        (MatmulOutput.float32, jnp.float32, "tpu", False),
    ],
)
def test_which_runs_take_the_product(setting, dtype, platform, want):
    assert f32_matmul_output(setting, jnp.dtype(dtype), platform) is want


def test_the_devices_say_so():
    assert setup_devices(
        DeviceConfig(platform=Platform.cpu, precision=Precision.bf16)
    ).f32_matmul_output
    assert setup_devices(DeviceConfig(platform=Platform.cpu)).f32_matmul_output  # fp32


@pytest.mark.slow
def test_a_bf16_run_on_a_cpu_trains_like_the_fp32_one(tmp_path):
    """device.precision=bf16 on a CPU (float32-result projections) follows the fp32
    run's losses step by step, within bf16's rounding, and learns."""
    common = ["debug=fast", "trainer.max_steps=20", "trainer.log_every=1", "registry.url=null"]
    common.append(f"device.compile_cache_dir={tmp_path / 'cache'}")
    runs = {
        p: train(compose_train([*common, f"device.precision={p}"]), tmp_path / p)
        for p in ("fp32", "bf16")
    }
    fp32, bf16 = (np.array(list(runs[p].train_losses.values())) for p in ("fp32", "bf16"))
    assert len(fp32) == len(bf16) == 20
    assert np.any(bf16 != fp32)  # computed apart
    np.testing.assert_allclose(bf16, fp32, rtol=0.02)
    assert bf16[-1] < bf16[0] - 0.5
