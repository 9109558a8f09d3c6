"""Fused attention (jax.nn.dot_product_attention) against the reference einsums, for
every family layout: packed rows with padding, gradients, the KV-cache decode path,
and the fallback for what the fused call cannot express (Gemma 2's score soft-cap)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tests.helpers.models import VARIANTS, tiny_decoder_config
from tunixrt.composition import compose
from tunixrt.config import ConfigError, DeviceConfig, ModelConfig, Platform, validate
from tunixrt.devices import setup_devices
from tunixrt.errors import InputError
from tunixrt.evaluation import generate_tokens
from tunixrt.models import Decoder, decoder
from tunixrt.models.decoder import use_query_blocks
from tunixrt.models.factory import build_model

GEMMA = dict(explicit_head_dim=16, norm_offset=1.0, activation="gelu_tanh", embed_scale=True)
GEMMA2 = GEMMA | dict(
    sandwich_norm=True,
    query_scale=24.0,  # scores / sqrt(24), not sqrt(head_dim = 16)
    final_softcap=8.0,
    sliding_window=4,
    sliding_layers=(0,),
)
# family -> the switches of its layout on the tiny config (4 query heads, 2 kv heads).
FAMILIES = {
    "llama": {},
    "mistral": dict(sliding_window=3),  # every layer windowed
    "qwen2": dict(qkv_bias=True, sliding_window=4, sliding_layers=(1,)),
    "qwen3": VARIANTS["qwen3"],
    "gemma": GEMMA | dict(n_kv_heads=1),  # multi-query
    "gemma2_without_score_cap": GEMMA2,
    "gemma2": GEMMA2 | dict(attn_softcap=5.0),  # auto falls back to the reference
    "gpt2": VARIANTS["gpt2"] | dict(n_kv_heads=4),
}

# Two packed rows of 12: row 0 holds segments of 5 and 4 tokens, then 3 of padding
# (segment 0); row 1 segments of 7 and 5. Positions restart at each segment.
SEGMENTS = np.array([[1] * 5 + [2] * 4 + [0] * 3, [1] * 7 + [2] * 5], np.int32)
POSITIONS = np.array([[*range(5), *range(4), *range(3)], [*range(7), *range(5)]], np.int32)


def pair(family: str) -> tuple[Decoder, Decoder]:
    """The same weights under model.attention=auto and =reference."""
    changes = FAMILIES[family]
    auto = Decoder(tiny_decoder_config(init_std=0.3, **changes), rngs=nnx.Rngs(0))
    reference = Decoder(
        tiny_decoder_config(init_std=0.3, attention="reference", **changes), rngs=nnx.Rngs(0)
    )
    return auto, reference


def tokens(batch: int, seq: int, seed: int = 0) -> jax.Array:
    return jax.random.randint(jax.random.key(seed), (batch, seq), 0, 64, dtype=jnp.int32)


@nnx.jit
def loss_and_grads(model: Decoder, inputs, positions, segments, weights):
    """A loss that reads every logit: sum(logits * weights) [b, s, v]."""

    def loss(m):
        logits = m(inputs, positions=positions, segment_ids=segments)
        return jnp.sum(logits * weights), logits

    (value, logits), grads = nnx.value_and_grad(loss, has_aux=True)(model)
    return value, logits, grads


def assert_close(got, want, tol=1e-5, what=""):
    """Within tol of want, relative to want's largest magnitude when that exceeds 1."""
    got, want = np.asarray(got), np.asarray(want)
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, atol=tol * scale, rtol=0, err_msg=what)


def fused_layers(model: Decoder) -> list[bool]:
    return [layer.attn.fused for layer in model.layers]


@pytest.mark.parametrize("family", FAMILIES)
def test_fused_training_forward_and_gradients_equal_reference(family):
    auto, reference = pair(family)
    expect_fused = family != "gemma2"
    assert fused_layers(auto) == [expect_fused] * len(auto.layers)
    assert not any(fused_layers(reference))
    inputs = tokens(2, 12)
    weights = jax.random.normal(jax.random.key(1), (2, 12, 64))
    args = (inputs, jnp.asarray(POSITIONS), jnp.asarray(SEGMENTS), weights)
    value, logits, grads = loss_and_grads(auto, *args)
    value_r, logits_r, grads_r = loss_and_grads(reference, *args)
    assert np.abs(logits_r).max() > 3.0  # sharp enough that attention matters
    assert_close(logits, logits_r)
    assert_close(value, value_r)
    flat, flat_r = nnx.to_flat_state(grads), nnx.to_flat_state(grads_r)
    assert [path for path, _ in flat] == [path for path, _ in flat_r]
    for (path, g), (_, g_r) in zip(flat, flat_r, strict=True):
        assert_close(g[...], g_r[...], what=str(path))


@pytest.mark.parametrize("family", [f for f in FAMILIES if f != "gemma2"])
def test_query_blocks_give_the_reference_values_and_gradients(family, monkeypatch):
    """Fused attention in 4 query blocks of 3 (the packed rows of 12): the first keys a
    block reads move past 0 where a window (3 or 4 tokens) lets it, and the segments
    cross block edges. Logits and every gradient equal the reference einsums'."""
    monkeypatch.setattr(decoder, "MIN_QUERY_BLOCK", 3)
    blocked, reference = pair(family)
    assert use_query_blocks(blocked, 4) == len(blocked.layers)
    assert use_query_blocks(reference, 4) == 0  # the reference einsums are left as they are
    weights = jax.random.normal(jax.random.key(1), (2, 12, 64))
    args = (tokens(2, 12), jnp.asarray(POSITIONS), jnp.asarray(SEGMENTS), weights)
    value, logits, grads = loss_and_grads(blocked, *args)
    value_r, logits_r, grads_r = loss_and_grads(reference, *args)
    assert_close(logits, logits_r)
    assert_close(value, value_r)
    for (path, g), (_, g_r) in zip(
        nnx.to_flat_state(grads), nnx.to_flat_state(grads_r), strict=True
    ):
        assert_close(g[...], g_r[...], what=str(path))


def test_query_blocks_run_one_product_per_block(monkeypatch):
    """8 blocks at most, of 64 queries at least: 200 tokens make 3 blocks (66, 67, 67
    queries), each over the keys up to its last query; without a window, from key 0."""
    shapes = []
    real = jax.nn.dot_product_attention

    def recording(q, k, v, **kwargs):
        shapes.append((q.shape[1], k.shape[1], kwargs.get("is_causal", False)))
        return real(q, k, v, **kwargs)

    model = Decoder(tiny_decoder_config(max_seq_len=256), rngs=nnx.Rngs(0))
    use_query_blocks(model)
    monkeypatch.setattr(jax.nn, "dot_product_attention", recording)
    model(tokens(1, 200))
    assert shapes == [(66, 66, False), (67, 133, False), (67, 200, False)] * len(model.layers)


def test_cpu_models_are_built_with_query_blocks():
    model = build_model(
        ModelConfig(name="tiny", dim=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=64),
        vocab_size=64,
        dtype=jnp.float32,
        seed=0,
        devices=setup_devices(DeviceConfig(platform=Platform.cpu)),
    )
    assert [layer.attn.query_blocks for layer in model.layers] == [8, 8]


@pytest.mark.parametrize("family", FAMILIES)
def test_cached_decoding_gives_the_full_pass_logits(family):
    """A prompt of 6 tokens, then 4 single tokens, through Decoder.extend: past every
    window, so the cache masks' windows bite. Every step's logits are those of the full
    forward pass (fused and reference attention) at the same positions."""
    auto, reference = pair(family)
    extend = nnx.jit(lambda m, t, p, c: m.extend(t, p, c))
    prompt = tokens(2, 10, seed=2)
    steps = [(prompt[:, :6], jnp.broadcast_to(jnp.arange(6), (2, 6)))]
    steps += [(prompt[:, i : i + 1], jnp.full((2, 1), i)) for i in range(6, 10)]
    for model in (auto, reference):
        full = model(prompt)  # [b, 10, v]
        caches = model.init_cache(2, 16)
        for step_tokens, positions in steps:
            logits, caches = extend(model, step_tokens, positions, caches)
            assert_close(logits, full[:, positions[0, 0] : positions[0, -1] + 1])


@pytest.mark.parametrize("family", ["mistral", "gemma2_without_score_cap"])
def test_fused_greedy_generation_equals_reference(family):
    auto, reference = pair(family)
    prompts = [[5, 9, 3], [7, 1, 8, 2, 6, 4, 11, 12, 13]]
    got = generate_tokens(auto, prompts, max_new_tokens=8, eos_id=None)
    assert got == generate_tokens(reference, prompts, max_new_tokens=8, eos_id=None)


def test_fused_path_is_what_auto_runs(monkeypatch):
    """auto calls jax.nn.dot_product_attention once per layer, reference never."""
    calls = []
    real = jax.nn.dot_product_attention

    def counting(*args, **kwargs):
        calls.append(kwargs.get("is_causal"))
        return real(*args, **kwargs)

    monkeypatch.setattr(jax.nn, "dot_product_attention", counting)
    auto, reference = pair("qwen2")
    reference(tokens(1, 8))
    assert calls == []
    auto(tokens(1, 8))
    assert calls == [True, True]


def test_explicit_fused_refuses_the_score_softcap():
    with pytest.raises(ValueError, match="attention='fused' cannot express attn_softcap=5.0"):
        tiny_decoder_config(attention="fused", **FAMILIES["gemma2"])


def test_model_attention_key_is_validated():
    with pytest.raises(ConfigError, match=r"model\.attention='fused'.*attn_softcap=50\.0"):
        validate(compose(["debug=fast", "model.attention=fused", "model.attn_softcap=50.0"]))
    with pytest.raises(InputError, match=r"model\.attention.*flash"):
        compose(["debug=fast", "model.attention=flash"])
    cfg = validate(compose(["debug=fast", "model.attention=reference"]))
    assert cfg.model.attention == "reference"
