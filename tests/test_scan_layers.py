"""`model.scan_layers`: the decoder's layer stack as one jax.lax.scan. The same logits
and gradients as the unrolled stack (grouped kv heads with packed rows, Gemma 2's
alternating windows, LoRA adapters, remat), one layer body in the compiled program
however deep the model, a fallback to the unrolled stack when the layers have no period,
and training runs, on one device and on a mesh, that log the same losses."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import transformers
from flax import nnx

from tests.helpers.config import compose_train
from tests.helpers.hf import FAMILIES, VOCAB, random_tokens, save_tokenizer
from tests.helpers.mesh_jobs import run_jobs
from tests.helpers.models import VARIANTS, tiny_decoder_config
from tunixrt.config import DeviceConfig, ModelConfig
from tunixrt.devices import setup_devices
from tunixrt.models import Decoder, DecoderConfig
from tunixrt.models.decoder import scan_period
from tunixrt.models.factory import build_model
from tunixrt.models.hf import load_pretrained, save_pretrained
from tunixrt.models.lora import PROJECTIONS, apply_lora
from tunixrt.train.loop import train

# Llama layout: 4 query heads on 2 kv heads, 4 alike layers.
LLAMA = tiny_decoder_config(n_layers=4, init_std=0.3)
# Gemma 2 layout: windows on even layers only, score and logit soft-caps, sandwich norms.
GEMMA2 = tiny_decoder_config(
    n_layers=6,
    init_std=0.3,
    family="gemma2",
    **{**VARIANTS["gemma2"], "sliding_layers": (0, 2, 4)},
    tie_embeddings=True,
)


def make(cfg: DecoderConfig, **changes: Any) -> Decoder:
    return Decoder(dataclasses.replace(cfg, **changes), rngs=nnx.Rngs(params=0))


def scanned(model: Decoder) -> Decoder:
    """A copy of `model`, the same weights, with its layers scanned."""
    twin = nnx.clone(model)
    twin.cfg = dataclasses.replace(model.cfg, scan_layers=True)
    return twin


def packed_batch() -> dict[str, jax.Array]:
    """Two rows of 16: three packed segments then padding (segment 0), and one segment
    then padding; positions restart at 0 in each segment."""
    segments = np.array([[1] * 5 + [2] * 7 + [3] * 2 + [0] * 2, [1] * 11 + [0] * 5], np.int32)
    positions = np.zeros_like(segments)
    for row in range(2):
        for t in range(1, 16):
            same = segments[row, t] == segments[row, t - 1]
            positions[row, t] = positions[row, t - 1] + 1 if same else 0
    tokens = random_tokens(2, 16, seed=3) % 64
    return {
        "tokens": jnp.asarray(tokens),
        "positions": jnp.asarray(positions),
        "segment_ids": jnp.asarray(segments),
    }


@nnx.jit(static_argnames="wrt")
def logits_and_grads(
    model: Decoder, batch: dict[str, jax.Array], wrt: type[nnx.Variable] = nnx.Param
) -> tuple[jax.Array, Any]:
    """Logits [b, s, v], and the gradients of the `wrt` variables of the mean next-token
    cross-entropy over the real tokens (a loss of a training step's scale)."""

    def loss(m: Decoder) -> tuple[jax.Array, jax.Array]:
        logits = m(batch["tokens"], positions=batch["positions"], segment_ids=batch["segment_ids"])
        targets = jnp.roll(batch["tokens"], -1, axis=1)  # [b, s]
        picked = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]  # [b, s]
        nll = jax.nn.logsumexp(logits, axis=-1) - picked  # [b, s]
        real = batch["segment_ids"] > 0
        return jnp.sum(jnp.where(real, nll, 0.0)) / real.sum(), logits

    grad = nnx.value_and_grad(loss, argnums=nnx.DiffState(0, wrt), has_aux=True)
    (_, logits), grads = grad(model)
    return logits, grads


def assert_same_function(
    plain: Decoder, scan: Decoder, wrt: type[nnx.Variable] = nnx.Param
) -> None:
    """Logits and every `wrt` gradient within 1e-5 (float32), and gradients that are not
    all zero (a comparison of something)."""
    batch = packed_batch()
    logits, grads = logits_and_grads(plain, batch, wrt)
    logits_s, grads_s = logits_and_grads(scan, batch, wrt)
    np.testing.assert_allclose(logits_s, logits, atol=1e-5, rtol=1e-5)
    flat, flat_s = nnx.to_flat_state(grads), nnx.to_flat_state(grads_s)
    assert [path for path, _ in flat_s] == [path for path, _ in flat]
    for (path, g), (_, g_s) in zip(flat, flat_s, strict=True):
        np.testing.assert_allclose(g_s[...], g[...], atol=1e-5, rtol=1e-5, err_msg=str(path))
    assert all(float(jnp.abs(g[...]).max()) > 0 for path, g in flat if "layers" in path)


def lowered_text(model: Decoder) -> str:
    """The StableHLO of the model's forward pass on a [1, 8] batch."""
    graphdef, state = nnx.split(model)
    tokens = jnp.zeros((1, 8), jnp.int32)
    return jax.jit(lambda s: nnx.merge(graphdef, s)(tokens)).lower(state).as_text()


# ---------------------------------------------------------------- the same function


def test_grouped_kv_heads_with_packed_rows_and_padding():
    plain = make(LLAMA)
    assert scan_period(list(plain.layers)) == 1
    assert_same_function(plain, scanned(plain))


def test_gemma2_alternating_windows_scan_two_layers_a_step():
    plain = make(GEMMA2)
    assert scan_period(list(plain.layers)) == 2
    assert_same_function(plain, scanned(plain))


def test_lora_adapter_gradients():
    plain = make(LLAMA)
    apply_lora(plain, rank=4, targets=PROJECTIONS, rngs=nnx.Rngs(params=1))
    # B starts at zero, which would leave A's gradient zero: move every adapter off it
    adapters = nnx.state(plain, nnx.LoRAParam)
    keys = iter(jax.random.split(jax.random.key(2), len(jax.tree.leaves(adapters))))
    nnx.update(
        plain, jax.tree.map(lambda a: 0.1 * jax.random.normal(next(keys), a.shape), adapters)
    )
    assert scan_period(list(plain.layers)) == 1
    assert_same_function(plain, scanned(plain), wrt=nnx.LoRAParam)


def test_remat_recomputes_the_scanned_step():
    plain, remat = make(LLAMA), make(LLAMA, remat=True)
    assert_same_function(plain, scanned(remat))
    graphdef, state = nnx.split(scanned(remat))
    tokens = packed_batch()["tokens"]
    jaxpr = str(
        jax.make_jaxpr(jax.grad(lambda s: jnp.mean(nnx.merge(graphdef, s)(tokens) ** 2)))(state)
    )
    assert "scan" in jaxpr and "remat" in jaxpr  # a scan over a rematerialised step


def test_layers_without_a_period_run_unrolled_and_say_why(caplog):
    # windows on layers 0, 2, 4 of 5: period 2 does not divide 5
    cfg = dataclasses.replace(GEMMA2, n_layers=5, sliding_layers=(0, 2, 4))
    plain = make(cfg)
    with caplog.at_level(logging.INFO, logger="tunixrt.models.decoder"):
        assert scan_period(list(plain.layers)) is None
        assert_same_function(plain, scanned(plain))
    said = [r.getMessage() for r in caplog.records if "model.scan_layers" in r.getMessage()]
    assert len(said) == 1, said  # once, however often the model is traced
    assert "ABABA" in said[0] and "unrolled" in said[0]
    assert "stablehlo.while" not in lowered_text(scanned(plain))


# ---------------------------------------------------------------- one layer body


@pytest.mark.parametrize(("cfg", "period"), [(LLAMA, 1), (GEMMA2, 2)])
def test_the_program_holds_one_step_however_deep(cfg, period):
    """With the layers scanned, the program's matmuls do not grow with the depth: one
    scan whose body holds `period` layers."""
    counts = {}
    for n in (2 * period, 6 * period):
        for scan in (False, True):
            windows = {"sliding_layers": tuple(range(0, n, 2))} if cfg.sliding_layers else {}
            text = lowered_text(make(cfg, n_layers=n, scan_layers=scan, **windows))
            counts[n, scan] = (text.count("stablehlo.while"), text.count("stablehlo.dot_general"))
    shallow, deep = counts[2 * period, True], counts[6 * period, True]
    assert shallow == deep and deep[0] == 1, counts
    assert counts[6 * period, False][1] > deep[1] and counts[6 * period, False][0] == 0, counts


# ---------------------------------------------------------------- a pretrained model


def test_a_pretrained_model_scans_and_exports(tmp_path):
    """model.path with model.scan_layers: the checkpoint's logits, and an export that
    loads back as the same model (scan_layers says how to run, not what is stored)."""
    kwargs = FAMILIES["gemma2"][1] | {"num_hidden_layers": 4}
    hf = transformers.AutoModelForCausalLM.from_config(
        transformers.Gemma2Config(**kwargs), attn_implementation="eager"
    )
    hf.save_pretrained(tmp_path / "hf")
    save_tokenizer(tmp_path / "hf")
    cfg = ModelConfig(name="gemma2", path=str(tmp_path / "hf"), scan_layers=True)
    devices = setup_devices(DeviceConfig())
    model = build_model(cfg, vocab_size=VOCAB, dtype=jnp.float32, seed=0, devices=devices)
    assert model.cfg.scan_layers and scan_period(list(model.layers)) == 2
    plain = load_pretrained(tmp_path / "hf")
    tokens = {
        "tokens": jnp.asarray(random_tokens(2, 16, seed=4)),
        "positions": jnp.broadcast_to(jnp.arange(16, dtype=jnp.int32), (2, 16)),
        "segment_ids": jnp.ones((2, 16), jnp.int32),
    }
    logits, _ = logits_and_grads(plain, tokens)
    np.testing.assert_allclose(logits_and_grads(model, tokens)[0], logits, atol=1e-5, rtol=1e-5)
    save_pretrained(model, tmp_path / "out")
    back = load_pretrained(tmp_path / "out")
    assert back.cfg == dataclasses.replace(model.cfg, scan_layers=False)
    np.testing.assert_allclose(logits_and_grads(back, tokens)[0], logits, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- training runs


def run_overrides(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "debug=fast",
        "trainer.max_steps=3",
        "trainer.log_every=1",
        "trainer.eval_every=3",
        "checkpoint.every_steps=3",
        "model.n_layers=4",
        "registry.url=null",
        f"dataset.cache_dir={tmp_path / 'tokens'}",
        f"device.compile_cache_dir={tmp_path / 'jax_cache'}",
        *extra,
    ]


def assert_same_losses(got: dict[Any, float], want: dict[Any, float]) -> None:
    assert sorted(map(int, got)) == sorted(map(int, want)) == [1, 2, 3]
    for step in want:
        assert abs(got[str(step)] - want[step]) <= 1e-5, (step, got, want)


@pytest.mark.slow
def test_training_logs_the_same_losses_on_one_device_and_on_a_mesh(tmp_path):
    """Three steps, an evaluation and a checkpoint of a 4-layer model: scanned here and
    on a 2 x 2 (fsdp x tensor) mesh of CPU devices, against the unrolled run."""
    plain = train(compose_train(run_overrides(tmp_path)), tmp_path / "plain")
    scan = train(
        compose_train(run_overrides(tmp_path, "model.scan_layers=true")), tmp_path / "scan"
    )
    assert_same_losses({str(k): v for k, v in scan.train_losses.items()}, plain.train_losses)
    assert scan.final_eval_loss == pytest.approx(plain.final_eval_loss, abs=1e-5)
    assert (scan.run_dir / "checkpoints" / "3").is_dir()

    mesh = ["model.scan_layers=true", "device.mesh.fsdp=2", "device.mesh.tensor=2"]
    jobs = [{"run_dir": str(tmp_path / "mesh"), "overrides": run_overrides(tmp_path, *mesh)}]
    (on_mesh,) = run_jobs(4, jobs, tmp_path)
    assert_same_losses(on_mesh["losses"], plain.train_losses)
    assert on_mesh["eval_loss"] == pytest.approx(plain.final_eval_loss, abs=1e-5)
