"""Tests for tunixrt.models.decoder, checked against an independent numpy forward pass."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tests.helpers.models import VARIANTS, tiny_decoder_config
from tunixrt.models import Decoder, flops_per_token, num_params
from tunixrt.models.decoder import apply_rope, rope_angles, rope_inv_freq

TINY = tiny_decoder_config(max_seq_len=32)


def make(cfg=TINY, seed=0, **changes):
    cfg = dataclasses.replace(cfg, **changes)
    return Decoder(cfg, rngs=nnx.Rngs(seed))


def random_tokens(batch, seq, seed=0, vocab=TINY.vocab_size):
    return jax.random.randint(jax.random.key(seed), (batch, seq), 0, vocab, dtype=jnp.int32)


@nnx.jit
def forward(model, tokens, positions=None, segment_ids=None):
    # One compiled program per shape; op-by-op eager dispatch is several times slower.
    return model(tokens, positions=positions, segment_ids=segment_ids)


def param_count(model):
    return sum(leaf.size for leaf in jax.tree.leaves(nnx.state(model, nnx.Param)))


# ---------------------------------------------------------------- numpy reference


def np_rmsnorm(x, scale, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * scale


def np_rope(x, positions, theta):
    """x [s, heads, e]: rotate each pair (i, i + e/2) by angle pos * theta^(-2i/e)."""
    e = x.shape[-1]
    half = e // 2
    out = np.empty_like(x)
    for t, pos in enumerate(positions):
        for i in range(half):
            angle = pos * theta ** (-2.0 * i / e)
            c, s = np.cos(angle), np.sin(angle)
            a, b = x[t, :, i], x[t, :, i + half]
            out[t, :, i] = a * c - b * s
            out[t, :, i + half] = b * c + a * s
    return out


def np_attention(x, w, cfg, positions, segments):
    """x [s, d] -> [s, d], one query at a time over its visible keys."""
    s, e = x.shape[0], cfg.head_dim
    q = np_rope((x @ w["q"]).reshape(s, cfg.n_heads, e), positions, cfg.rope_theta)
    k = np_rope((x @ w["k"]).reshape(s, cfg.n_kv_heads, e), positions, cfg.rope_theta)
    v = (x @ w["v"]).reshape(s, cfg.n_kv_heads, e)
    group = cfg.n_heads // cfg.n_kv_heads
    out = np.zeros((s, cfg.n_heads, e))
    for head in range(cfg.n_heads):
        kv = head // group
        for t in range(s):
            keys = [j for j in range(t + 1) if segments[j] == segments[t]]
            scores = np.array([q[t, head] @ k[j, kv] for j in keys]) / np.sqrt(e)
            p = np.exp(scores - scores.max())
            p /= p.sum()
            out[t, head] = sum(pj * v[j, kv] for pj, j in zip(p, keys, strict=True))
    return out.reshape(s, cfg.n_heads * e) @ w["o"]


def np_weights(model):
    get = lambda p: np.asarray(p[...], np.float64)  # noqa: E731
    layers = [
        dict(
            attn_norm=get(b.attn_norm.scale),
            mlp_norm=get(b.mlp_norm.scale),
            q=get(b.attn.q_proj.kernel),
            k=get(b.attn.k_proj.kernel),
            v=get(b.attn.v_proj.kernel),
            o=get(b.attn.o_proj.kernel),
            gate=get(b.mlp.gate_proj.kernel),
            up=get(b.mlp.up_proj.kernel),
            down=get(b.mlp.down_proj.kernel),
        )
        for b in model.layers
    ]
    embed = get(model.embed.embedding)
    head = embed.T if model.lm_head is None else get(model.lm_head.kernel)
    return dict(embed=embed, layers=layers, final_norm=get(model.final_norm.scale), head=head)


def np_forward(model, tokens, positions, segments):
    """One sequence: tokens, positions, segments [s] -> logits [s, v] in float64."""
    cfg, w = model.cfg, np_weights(model)
    x = w["embed"][tokens]
    for lw in w["layers"]:
        x = x + np_attention(
            np_rmsnorm(x, lw["attn_norm"], cfg.norm_eps), lw, cfg, positions, segments
        )
        h = np_rmsnorm(x, lw["mlp_norm"], cfg.norm_eps)
        gate = h @ lw["gate"]
        x = x + (gate / (1.0 + np.exp(-gate)) * (h @ lw["up"])) @ lw["down"]
    return np_rmsnorm(x, w["final_norm"], cfg.norm_eps) @ w["head"]


# ---------------------------------------------------------------- tests


@pytest.mark.parametrize("tied", [True, False])
def test_output_shape_dtype_and_param_count(tied):
    model = make(tie_embeddings=tied)
    logits = forward(model, random_tokens(2, 10))
    assert logits.shape == (2, 10, TINY.vocab_size)
    assert logits.dtype == jnp.float32
    assert param_count(model) == num_params(model.cfg)


def test_num_params_by_hand():
    # per layer: q, o 32*32 each; k, v 32*16 each; gate, up, down 32*64 each; 2 norms of 32
    per_layer = 2 * 1024 + 2 * 512 + 3 * 2048 + 64
    tied = 64 * 32 + 2 * per_layer + 32
    assert num_params(dataclasses.replace(TINY, tie_embeddings=True)) == tied
    assert num_params(dataclasses.replace(TINY, tie_embeddings=False)) == tied + 64 * 32


def test_flops_per_token_by_hand():
    matmul = 2 * (2 * 1024 + 2 * 512 + 3 * 2048) + 64 * 32  # blocks + output head
    attention = 12 * 2 * 4 * 8 * 16
    for tied in (True, False):
        cfg = dataclasses.replace(TINY, tie_embeddings=tied)
        assert flops_per_token(cfg, 16) == 6 * matmul + attention


@pytest.mark.parametrize("tied,n_kv_heads", [(True, 2), (False, 2), (True, 4), (False, 1)])
def test_matches_numpy_reference(tied, n_kv_heads):
    # A larger init_std makes attention sharp, so rope, masking and head grouping
    # mistakes move the logits far more than the tolerance.
    model = make(tie_embeddings=tied, n_kv_heads=n_kv_heads, init_std=0.3)
    tokens = random_tokens(2, 12, seed=1)
    logits = np.asarray(forward(model, tokens))
    for row in range(2):
        ref = np_forward(model, np.asarray(tokens[row]), np.arange(12), np.ones(12))
        np.testing.assert_allclose(logits[row], ref, atol=1e-4, rtol=0)
    assert np.abs(logits).max() > 1.0  # the comparison is not between near-zero values


def test_packed_row_matches_numpy_reference():
    model = make(init_std=0.3)
    segments = np.array([1] * 5 + [2] * 7 + [0] * 4, np.int32)
    positions = np.array(list(range(5)) + list(range(7)) + list(range(4)), np.int32)
    tokens = random_tokens(1, 16, seed=2)
    logits = forward(
        model,
        tokens,
        positions=jnp.asarray(positions)[None],
        segment_ids=jnp.asarray(segments)[None],
    )
    ref = np_forward(model, np.asarray(tokens[0]), positions, segments)
    np.testing.assert_allclose(np.asarray(logits[0]), ref, atol=1e-4, rtol=0)


def test_causal():
    model = make(init_std=0.3)
    tokens = random_tokens(2, 12, seed=3)
    t = 5
    changed = tokens.at[:, t].set((tokens[:, t] + 1) % TINY.vocab_size)
    before, after = forward(model, tokens), forward(model, changed)
    np.testing.assert_allclose(after[:, :t], before[:, :t], atol=1e-6, rtol=0)
    per_position = jnp.abs(after - before).max(axis=(0, 2))  # [s]
    assert bool(jnp.all(per_position[t:] > 1e-4))


def test_packing_equals_separate_runs():
    model = make(init_std=0.3)
    a, b = random_tokens(1, 5, seed=4), random_tokens(1, 7, seed=5)
    pad = jnp.zeros((1, 4), jnp.int32)
    packed = jnp.concatenate([a, b, pad], axis=1)
    segments = jnp.array([[1] * 5 + [2] * 7 + [0] * 4], jnp.int32)
    positions = jnp.array([list(range(5)) + list(range(7)) + list(range(4))], jnp.int32)

    logits = forward(model, packed, positions=positions, segment_ids=segments)
    np.testing.assert_allclose(logits[:, :5], forward(model, a), atol=1e-5, rtol=0)
    np.testing.assert_allclose(logits[:, 5:12], forward(model, b), atol=1e-5, rtol=0)
    assert bool(jnp.all(jnp.isfinite(logits)))


def test_all_padding_row_is_finite_with_finite_grads():
    model = make()
    tokens = random_tokens(2, 8, seed=6)
    segments = jnp.stack([jnp.zeros(8, jnp.int32), jnp.ones(8, jnp.int32)])

    def loss(m):
        return jnp.mean(m(tokens, segment_ids=segments) ** 2)

    value, grads = nnx.jit(nnx.value_and_grad(loss))(model)
    assert bool(jnp.isfinite(value))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


@pytest.mark.parametrize("n_kv_heads", [4, 2, 1])
def test_gqa_head_counts_run(n_kv_heads):
    model = make(n_kv_heads=n_kv_heads)
    logits = forward(model, random_tokens(2, 8))
    assert logits.shape == (2, 8, TINY.vocab_size)
    assert bool(jnp.all(jnp.isfinite(logits)))
    k_width = model.layers[0].attn.k_proj.kernel[...].shape[1]
    assert k_width == n_kv_heads * TINY.head_dim


def test_bfloat16_close_to_float32():
    fp32, bf16 = make(init_std=0.1), make(init_std=0.1, dtype="bfloat16")
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(nnx.state(bf16, nnx.Param)))
    tokens = random_tokens(2, 12, seed=7)
    want, got = forward(fp32, tokens), forward(bf16, tokens)
    assert got.dtype == jnp.float32
    rel = jnp.linalg.norm(got - want) / jnp.linalg.norm(want)
    assert float(rel) < 0.05


def test_jit_matches_eager():
    model = make()
    tokens = random_tokens(2, 8)
    np.testing.assert_allclose(forward(model, tokens), model(tokens), atol=1e-6, rtol=0)


def test_init_is_deterministic_and_normal():
    params = lambda m: jax.tree.leaves(nnx.state(m, nnx.Param))  # noqa: E731
    same = [
        np.array_equal(x, y)
        for x, y in zip(params(make(seed=0)), params(make(seed=0)), strict=True)
    ]
    assert all(same)
    assert not np.array_equal(make(seed=0).embed.embedding[...], make(seed=1).embed.embedding[...])

    model = make(vocab_size=512, init_std=0.05)
    assert np.std(model.embed.embedding[...]) == pytest.approx(0.05, rel=0.05)
    assert np.std(model.layers[0].mlp.up_proj.kernel[...]) == pytest.approx(0.05, rel=0.05)
    np.testing.assert_array_equal(model.final_norm.scale[...], np.ones(TINY.dim))


def test_rope_score_depends_only_on_relative_position():
    head_dim = 16
    q = jax.random.normal(jax.random.key(0), (1, 1, 1, head_dim))
    k = jax.random.normal(jax.random.key(1), (1, 1, 1, head_dim))
    inv_freq = rope_inv_freq(dataclasses.replace(TINY, dim=64))  # head_dim 16

    def rotate(x, pos):
        return apply_rope(x, *rope_angles(jnp.array([[pos]], jnp.int32), inv_freq))

    def score(m, n):
        return float(jnp.sum(rotate(q, m) * rotate(k, n)))

    base = score(7, 3)
    for shift in (1, 10, 100):
        assert score(7 + shift, 3 + shift) == pytest.approx(base, abs=1e-4)
    assert abs(score(8, 3) - base) > 1e-3
    assert score(0, 0) == pytest.approx(float(jnp.sum(q * k)), abs=1e-5)  # position 0 is identity


def test_rope_scaling_frequencies():
    plain = np.asarray(rope_inv_freq(dataclasses.replace(TINY, dim=64)))  # [8]
    linear = rope_inv_freq(
        dataclasses.replace(TINY, dim=64, rope_scaling="linear", rope_factor=4.0)
    )
    np.testing.assert_allclose(linear, plain / 4, rtol=1e-6)
    llama3 = np.asarray(
        rope_inv_freq(
            dataclasses.replace(
                TINY, dim=64, rope_scaling="llama3", rope_factor=8.0, rope_original_max_len=32
            )
        )
    )
    wavelen = 2 * np.pi / plain  # low band above 32 tokens, high band below 8
    np.testing.assert_allclose(llama3[wavelen < 8], plain[wavelen < 8], rtol=1e-6)
    np.testing.assert_allclose(llama3[wavelen > 32], plain[wavelen > 32] / 8, rtol=1e-6)
    middle = (wavelen >= 8) & (wavelen <= 32)
    assert middle.any()
    assert np.all((llama3[middle] < plain[middle]) & (llama3[middle] > plain[middle] / 8))


@pytest.mark.parametrize("variant", VARIANTS)
def test_variants_run_and_count_parameters(variant):
    model = make(init_std=0.2, **VARIANTS[variant])
    assert param_count(model) == num_params(model.cfg)
    logits = forward(model, random_tokens(2, 12))
    assert logits.shape == (2, 12, TINY.vocab_size)
    assert bool(jnp.all(jnp.isfinite(logits)))
    if model.cfg.final_softcap:
        assert float(jnp.abs(logits).max()) < model.cfg.final_softcap


def test_sliding_window_limits_what_a_token_sees():
    model = make(init_std=0.3, sliding_window=4)
    tokens = random_tokens(1, 12, seed=8)
    changed = tokens.at[:, 2].set((tokens[:, 2] + 1) % TINY.vocab_size)
    diff = jnp.abs(forward(model, changed) - forward(model, tokens)).max(axis=(0, 2))  # [s]
    # Two layers of window 4: position 2 reaches positions 2 .. 2 + 2 * 3 = 8, no further.
    assert bool(jnp.all(diff[2:9] > 1e-4)) and bool(jnp.all(diff[9:] == 0))
    assert list(model.cfg.sliding_layers or []) == [] and model.cfg.is_sliding(1)


def test_remat_gives_identical_logits_and_grads():
    plain, remat = make(init_std=0.3), make(init_std=0.3, remat=True)
    tokens = random_tokens(2, 12, seed=9)

    def loss(m):
        return jnp.mean(m(tokens) ** 2)

    grad = nnx.jit(nnx.value_and_grad(loss))
    (value, grads), (value_r, grads_r) = grad(plain), grad(remat)
    np.testing.assert_array_equal(forward(remat, tokens), forward(plain, tokens))
    assert float(value_r) == pytest.approx(float(value), rel=1e-6)  # fusion may differ by an ulp
    for g, g_r in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_r), strict=True):
        np.testing.assert_allclose(g_r, g, atol=1e-6, rtol=1e-6)

    graphdef, state = nnx.split(remat)
    jaxpr = jax.make_jaxpr(jax.grad(lambda s: loss(nnx.merge(graphdef, s))))(state)
    assert "remat" in str(jaxpr)  # the blocks really are rematerialised


@pytest.mark.parametrize(
    "changes",
    [
        dict(n_kv_heads=3),
        dict(dim=30),
        dict(dtype="float16"),
        dict(n_layers=0),
        dict(norm="batch"),
        dict(activation="relu"),
        dict(position="alibi"),
        dict(rope_scaling="yarn"),
        dict(explicit_head_dim=7),
        dict(sliding_window=0),
        dict(sliding_window=4, sliding_layers=(2,)),
        dict(attn_softcap=-1.0),
    ],
)
def test_config_rejects_bad_values(changes):
    with pytest.raises(ValueError, match="DecoderConfig"):
        dataclasses.replace(TINY, **changes)


def test_too_long_sequence_is_rejected():
    with pytest.raises(ValueError, match="max_seq_len"):
        make()(random_tokens(1, TINY.max_seq_len + 1))
