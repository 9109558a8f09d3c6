"""GRPO's pieces: group-relative advantages, the clipped policy-ratio objective over
completion tokens, and the KL penalty against a frozen reference.

Where the published variants differ, the choices here (each a setting):
- Advantages: reward minus its group's mean, divided by the group's standard deviation
  (population, ddof=0, so a group of one is defined) plus `eps`, as in DeepSeekMath's
  GRPO; `scale="none"` keeps the mean-centred reward unscaled (Dr. GRPO), which does
  not favour groups whose rewards barely differ.
- Normalisation: token-level. The loss is the sum over every completion token of the
  batch divided by their count (DAPO), not the mean of per-sequence means (the original
  GRPO), so a long completion's tokens weigh as much as a short one's.
- Clipping: PPO's pessimistic min(ratio * A, clip(ratio, 1 - eps_low, 1 + eps_high) * A)
  per token, with separate low and high bounds (DAPO's clip-higher when eps_high >
  eps_low; equal by default).
- KL: the k3 estimator exp(ref - new) - (ref - new) - 1 per token (unbiased, never
  negative), added to the per-token loss with weight `beta`; beta = 0 drops it.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp


def group_advantages(rewards: jax.Array, *, scale: str = "group", eps: float = 1e-6) -> jax.Array:
    """rewards [prompts, group] -> advantages [prompts, group]: each reward against its
    group's mean, divided by the group's standard deviation when scale="group"."""
    centred = rewards - jnp.mean(rewards, axis=-1, keepdims=True)
    if scale == "none":
        return centred
    if scale != "group":
        raise ValueError(f"scale must be 'group' or 'none', got {scale!r}")
    return centred / (jnp.std(rewards, axis=-1, keepdims=True) + eps)


def equal_reward_share(rewards: jax.Array) -> jax.Array:
    """The share of groups whose rewards are all equal: they teach nothing (zero
    advantage everywhere). rewards [prompts, group] -> scalar."""
    return jnp.mean(jnp.all(rewards == rewards[:, :1], axis=-1))


def kl_k3(logp: jax.Array, ref_logp: jax.Array) -> jax.Array:
    """Per-token estimate of KL(policy || reference) from sampled tokens' log-probs."""
    delta = ref_logp - logp
    return jnp.exp(delta) - delta - 1.0


@dataclass(frozen=True)
class PolicyLoss:
    loss: jax.Array  # scalar: mean over completion tokens of -clipped objective + beta * kl
    kl: jax.Array  # mean k3 estimate over completion tokens
    clip_fraction: jax.Array  # share of completion tokens whose clipped term was chosen
    ratio: jax.Array  # mean policy ratio over completion tokens


def policy_loss(
    logp: jax.Array,
    old_logp: jax.Array,
    ref_logp: jax.Array,
    advantages: jax.Array,
    mask: jax.Array,
    *,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    beta: float = 0.04,
) -> PolicyLoss:
    """logp, old_logp, ref_logp, mask [rows, seq] (mask 1 on completion tokens),
    advantages [rows] (one per completion). `old_logp` are the sampling policy's
    log-probs (equal to logp, without gradient, on the first pass over a batch)."""
    ratio = jnp.exp(logp - old_logp)
    adv = advantages[:, None]
    unclipped = ratio * adv
    clipped = jnp.clip(ratio, 1.0 - eps_low, 1.0 + eps_high) * adv
    objective = jnp.minimum(unclipped, clipped)
    kl = kl_k3(logp, ref_logp)
    per_token = -objective + beta * kl
    count = jnp.maximum(jnp.sum(mask), 1.0)

    def mean(x: jax.Array) -> jax.Array:
        return jnp.sum(x * mask) / count

    chose_clipped = (clipped < unclipped).astype(jnp.float32)
    return PolicyLoss(mean(per_token), mean(kl), mean(chose_clipped), mean(ratio))


jax.tree_util.register_dataclass(
    PolicyLoss, data_fields=["loss", "kl", "clip_fraction", "ratio"], meta_fields=[]
)
