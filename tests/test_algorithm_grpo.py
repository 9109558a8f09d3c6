"""GRPO's step: the reference without adapters is the base model, and a few rollouts
with a verifiable toy reward (emit a chosen token) raise that reward."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from tests.helpers.models import tiny_decoder_config
from tunixrt.algorithms.grpo import group_advantages
from tunixrt.algorithms.grpo_update import (
    frozen_copy,
    logprobs,
    logprobs_without_adapters,
    make_policy_step,
)
from tunixrt.algorithms.rollout import completion_batch, sample_groups
from tunixrt.models import Decoder
from tunixrt.models.lora import LoRALinear, apply_lora

EOS, PAD, TARGET = 2, 0, 7
PROMPTS = [[5, 6], [9, 10], [11, 12], [13, 14]]
NEW = 4  # tokens per completion


def test_the_reference_without_adapters_is_the_base_model():
    base = Decoder(tiny_decoder_config(), rngs=nnx.Rngs(params=0))
    adapted = apply_lora(nnx.clone(base), rank=4, rngs=nnx.Rngs(params=1))
    for _, module in nnx.iter_modules(adapted):
        if isinstance(module, LoRALinear):
            b = module.lora_b[...]
            module.lora_b.set_value(jax.random.normal(jax.random.key(2), b.shape) * 0.5)
    inputs = jnp.array([[5, 6, 7, 8, 9]], jnp.int32)
    targets = jnp.array([[6, 7, 8, 9, 10]], jnp.int32)
    want = np.asarray(logprobs(base, inputs, targets))
    assert not np.allclose(np.asarray(logprobs(adapted, inputs, targets)), want, atol=1e-3)
    np.testing.assert_allclose(
        np.asarray(logprobs_without_adapters(adapted, inputs, targets)), want, atol=1e-6
    )


def reward(ids: list[int]) -> float:
    return sum(t == TARGET for t in ids) / NEW


def test_rollouts_with_a_verifiable_reward_raise_it():
    model = Decoder(tiny_decoder_config(), rngs=nnx.Rngs(params=0))
    optimizer = nnx.Optimizer(model, optax.adam(3e-2), wrt=nnx.Param)
    reference = frozen_copy(model)
    step = make_policy_step(nnx.Param, eps_low=0.2, eps_high=0.2, beta=0.01)
    means, kls = [], []
    for it in range(16):
        rollout = sample_groups(
            model, PROMPTS, group_size=8, max_new_tokens=NEW, eos_id=EOS, temperature=1.0, seed=it
        )
        batch = completion_batch(rollout, eos_id=EOS, pad_id=PAD, seq_len=8)
        rewards = np.array([reward(ids) for ids in rollout.completions], np.float32)
        means.append(float(rewards.mean()))
        inputs, targets = jnp.asarray(batch.inputs), jnp.asarray(batch.targets)
        policy_batch = {
            "inputs": inputs,
            "targets": targets,
            "mask": jnp.asarray(batch.mask),
            "old_logp": logprobs(model, inputs, targets),
            "ref_logp": logprobs(reference, inputs, targets),
            "advantages": group_advantages(jnp.asarray(rewards).reshape(len(PROMPTS), -1)).reshape(
                -1
            ),
        }
        for _ in range(2):  # two passes over each sampled batch: the ratio leaves 1
            metrics = step(model, optimizer, policy_batch)
        kls.append(float(metrics["kl"]))
        assert np.isfinite(float(metrics["loss"]))
    # a random model emits the target about once in 64 tokens
    assert means[0] < 0.15
    assert np.mean(means[-3:]) > 0.5, means
    assert kls[-1] > 0  # the policy has moved away from its reference
    assert float(metrics["clip_fraction"]) >= 0.0
    with pytest.raises(AssertionError):  # the reference itself has not moved
        np.testing.assert_allclose(
            np.asarray(logprobs(model, inputs, targets)),
            np.asarray(logprobs(reference, inputs, targets)),
            atol=1e-3,
        )
