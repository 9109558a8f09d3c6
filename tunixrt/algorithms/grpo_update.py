"""GRPO's optimizer step and its frozen reference.

The reference is the policy's starting point. With LoRA it is the model with its
adapters off (their product is zero when lora_b is zero), so no second copy of the
weights exists; without LoRA it is a copy of the initial parameters (`frozen_copy`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from tunixrt.algorithms.grpo import PolicyLoss, policy_loss
from tunixrt.algorithms.logprobs import token_logprobs
from tunixrt.algorithms.update import descend
from tunixrt.models import Decoder

# inputs, targets [rows, seq] int32; mask, old_logp, ref_logp [rows, seq] float32;
# advantages [rows] float32. old_logp may be left out on the first pass over a batch,
# ref_logp when there is no KL penalty.
PolicyBatch = dict[str, jax.Array]


def frozen_copy(model: Decoder) -> Decoder:
    """The reference of a full-weight run: the parameters as they are now, apart."""
    return nnx.clone(model)


@nnx.jit
def logprobs(model: Decoder, inputs: jax.Array, targets: jax.Array) -> jax.Array:
    """log p(target) at every position under `model`: [rows, seq]."""
    return token_logprobs(model(inputs), targets)


@nnx.jit
def logprobs_without_adapters(model: Decoder, inputs: jax.Array, targets: jax.Array) -> jax.Array:
    """`logprobs` of the LoRA model's base: every lora_b at zero for this call only."""
    graphdef, adapters, rest = nnx.split(model, nnx.LoRAParam, ...)  # type: ignore[misc]
    off = jax.tree.map(jnp.zeros_like, adapters)
    return token_logprobs(nnx.merge(graphdef, off, rest)(inputs), targets)


PolicyStep = Callable[[nnx.Module, nnx.Optimizer, PolicyBatch], dict[str, jax.Array]]


@functools.cache
def make_policy_step(
    wrt: type[nnx.Variable], *, eps_low: float, eps_high: float, beta: float
) -> PolicyStep:
    """A compiled step on GRPO's clipped objective (tunixrt.algorithms.grpo) that
    updates the `wrt` variables (nnx.Param, or nnx.LoRAParam for adapters only)."""

    @nnx.jit(donate_argnums=(0, 1))
    def step(
        model: nnx.Module, optimizer: nnx.Optimizer, batch: PolicyBatch
    ) -> dict[str, jax.Array]:
        def objective(m: nnx.Module) -> tuple[jax.Array, PolicyLoss]:
            logp = token_logprobs(m(batch["inputs"]), batch["targets"])
            # without old_logp the batch was sampled by these very weights (the first
            # pass over it): the ratio is 1 and its gradient that of logp
            old = batch["old_logp"] if "old_logp" in batch else jax.lax.stop_gradient(logp)
            # without ref_logp there is no KL penalty (beta = 0): the estimate is then 0
            ref = batch["ref_logp"] if "ref_logp" in batch else jax.lax.stop_gradient(logp)
            out = policy_loss(
                logp,
                old,
                ref,
                batch["advantages"],
                batch["mask"],
                eps_low=eps_low,
                eps_high=eps_high,
                beta=beta,
            )
            return out.loss, out

        out, update = descend(model, optimizer, wrt, objective)
        return {**update, "kl": out.kl, "clip_fraction": out.clip_fraction, "ratio": out.ratio}

    return step
