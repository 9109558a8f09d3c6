"""Tests for tunixrt.models.lora: adapters, freezing, merging and merged export."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from tests.helpers.models import tiny_decoder_config
from tunixrt.models import Decoder, DecoderConfig, num_params
from tunixrt.models.lora import (
    PROJECTIONS,
    LoRALinear,
    LoRAParam,
    apply_lora,
    lora_num_params,
    merge_lora,
)

CFG = tiny_decoder_config(ffn_dim=48, max_seq_len=16, init_std=0.2)
ALL = PROJECTIONS


def make(cfg=CFG, *, rank=4, alpha=8.0, targets=ALL, seed=0):
    model = Decoder(cfg, rngs=nnx.Rngs(params=seed))
    return apply_lora(
        model, rank=rank, alpha=alpha, targets=targets, rngs=nnx.Rngs(params=seed + 1)
    )


def randomise_b(model, seed=0):
    """Move every B off zero, as training would, so the adapters change the output."""
    keys = iter(jax.random.split(jax.random.key(seed), 64))
    for _, module in nnx.iter_modules(model):
        if isinstance(module, LoRALinear):
            b = module.lora_b
            b.set_value(0.3 * jax.random.normal(next(keys), b[...].shape, b[...].dtype))


def tokens(seed=0):
    return jax.random.randint(jax.random.key(seed), (2, 12), 0, CFG.vocab_size, dtype=jnp.int32)


@nnx.jit
def forward(model, t):
    return model(t)


def loss_fn(model, t):
    logits = model(t[:, :-1])
    return optax.softmax_cross_entropy_with_integer_labels(logits, t[:, 1:]).mean()


def test_new_adapters_leave_the_output_unchanged():
    base = Decoder(CFG, rngs=nnx.Rngs(params=0))
    np.testing.assert_array_equal(forward(make(), tokens()), forward(base, tokens()))


def test_adapter_shapes_types_and_count():
    model = make(rank=4, targets=("q_proj", "v_proj", "down_proj"))
    q = model.layers[0].attn.q_proj
    assert isinstance(q, LoRALinear)
    assert q.lora_a[...].shape == (32, 4) and q.lora_b[...].shape == (4, 32)
    assert not np.any(q.lora_b[...])
    assert isinstance(q.lora_a, LoRAParam) and not isinstance(q.kernel, LoRAParam)
    assert not isinstance(model.layers[0].attn.k_proj, LoRALinear)
    adapters = jax.tree.leaves(nnx.state(model, LoRAParam))
    assert sum(a.size for a in adapters) == lora_num_params(
        CFG, 4, ("q_proj", "v_proj", "down_proj")
    )
    # The base parameters keep their paths, so base checkpoints still restore.
    base_paths = {
        p for p, _ in nnx.to_flat_state(nnx.state(Decoder(CFG, rngs=nnx.Rngs(0)), nnx.Param))
    }
    assert base_paths <= {p for p, _ in nnx.to_flat_state(nnx.state(model, nnx.Param))}


def test_merged_weights_equal_base_plus_scaled_product():
    model = make(rank=4, alpha=8.0)
    randomise_b(model)
    q = model.layers[1].attn.q_proj
    w, a, b = (np.asarray(x[...], np.float64) for x in (q.kernel, q.lora_a, q.lora_b))
    before = np.asarray(forward(model, tokens(1)))

    merge_lora(model)
    merged = model.layers[1].attn.q_proj
    assert isinstance(merged, nnx.Linear)
    np.testing.assert_allclose(merged.kernel[...], w + (8.0 / 4) * a @ b, atol=1e-6, rtol=0)
    assert not jax.tree.leaves(nnx.state(model, LoRAParam))
    after = np.asarray(forward(model, tokens(1)))
    # x @ (W + sAB) and x @ W + s(xA)B round differently in float32; logits of size ~2
    # differ by about 1e-5 on some CPUs, a wrong merge by far more
    np.testing.assert_allclose(after, before, atol=5e-5, rtol=0)
    assert (
        np.abs(after - np.asarray(forward(Decoder(CFG, rngs=nnx.Rngs(0)), tokens(1)))).max() > 1e-2
    )


def test_only_adapters_get_gradients_and_optimizer_state():
    model = make(rank=2)
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=LoRAParam)
    opt_leaves = jax.tree.leaves(nnx.state(optimizer, nnx.OptState))
    adapter_sizes = sorted(a.size for a in jax.tree.leaves(nnx.state(model, LoRAParam)))
    # adam: mu and nu per adapter, plus the step counts
    assert sorted(x.size for x in opt_leaves if x.ndim) == sorted(adapter_sizes * 2)

    base_before = jax.tree.map(np.asarray, nnx.state(model, nnx.Not(LoRAParam)))
    adapters_before = jax.tree.map(np.asarray, nnx.state(model, LoRAParam))

    @nnx.jit
    def step(model, optimizer, t):
        loss, grads = nnx.value_and_grad(loss_fn, argnums=nnx.DiffState(0, LoRAParam))(model, t)
        optimizer.update(model, grads)
        return loss, grads

    losses = []
    for _ in range(5):
        loss, grads = step(model, optimizer, tokens(2))
        losses.append(float(loss))
    assert {type(v) for _, v in nnx.to_flat_state(grads)} == {LoRAParam}
    assert losses[-1] < losses[0]
    jax.tree.map(np.testing.assert_array_equal, base_before, nnx.state(model, nnx.Not(LoRAParam)))
    changed = jax.tree.map(
        lambda x, y: bool(np.any(x != np.asarray(y))), adapters_before, nnx.state(model, LoRAParam)
    )
    assert all(jax.tree.leaves(changed))


def test_adapters_round_trip_through_pure_dict_state():
    model = make()
    randomise_b(model)
    saved = nnx.to_pure_dict(nnx.state(model))
    assert "lora_a" in saved["layers"][0]["attn"]["q_proj"]
    fresh = make(seed=5)
    state = nnx.state(fresh)
    nnx.replace_by_pure_dict(state, saved)
    nnx.update(fresh, state)
    np.testing.assert_array_equal(forward(fresh, tokens()), forward(model, tokens()))


def test_trainable_share_is_small():
    cfg = DecoderConfig(
        vocab_size=151936,
        dim=896,
        n_layers=24,
        n_heads=14,
        n_kv_heads=2,
        ffn_dim=4864,
        max_seq_len=32768,
        tie_embeddings=True,
        qkv_bias=True,
        family="qwen2",
    )  # Qwen2.5-0.5B shapes
    share = lora_num_params(cfg, 16, ALL) / (num_params(cfg) + lora_num_params(cfg, 16, ALL))
    assert 0.01 < share < 0.02


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(targets=("c_attn",)), "unknown LoRA targets"),
        (dict(rank=0), "rank must be positive"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make(**kwargs)


def test_target_absent_from_model():
    gpt2_like = dataclasses.replace(CFG, gated_mlp=False, family="gpt2")
    with pytest.raises(ValueError, match=r"no \['gate_proj'\] projections"):
        make(gpt2_like, targets=("gate_proj",))


def test_adapting_twice_is_refused():
    with pytest.raises(ValueError, match="already has LoRA adapters"):
        apply_lora(make(), rank=2, rngs=nnx.Rngs(0))


def test_merged_export_loads_in_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    from tunixrt.models.hf import save_pretrained

    model = make(targets=("q_proj", "o_proj", "up_proj"))
    randomise_b(model)
    save_pretrained(model, tmp_path)  # merges on the way out; the model keeps its adapters
    assert isinstance(model.layers[0].attn.q_proj, LoRALinear)
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path)
    q = model.layers[0].attn.q_proj
    want = np.asarray(q.kernel[...]) + q.scale * np.asarray(q.lora_a[...]) @ np.asarray(
        q.lora_b[...]
    )
    got = hf.model.layers[0].self_attn.q_proj.weight.detach().numpy().T
    np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)
    with torch.no_grad():
        hf_logits = hf(input_ids=torch.from_numpy(np.asarray(tokens(3), np.int64))).logits.numpy()
    np.testing.assert_allclose(hf_logits, forward(model, tokens(3)), atol=1e-4, rtol=0)
