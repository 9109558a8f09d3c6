"""DPO's loss on preference pairs (Rafailov et al. 2023): with the summed completion
log-probs of the policy and of a frozen reference for the chosen and the rejected
completion of each prompt,

    loss = -log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r)))

averaged over pairs (over the pairs weighted 1, where a batch is padded to a fixed
number of pairs with pairs weighted 0). The implicit rewards beta * (pi - ref) give the
metrics: their margin (chosen minus rejected) and the share of pairs where the chosen
one's is higher (preference accuracy)."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp


@dataclass(frozen=True)
class PreferenceLoss:
    loss: jax.Array  # scalar
    margin: jax.Array  # mean implicit reward margin, chosen - rejected
    accuracy: jax.Array  # share of pairs whose chosen completion has the higher reward


def dpo_loss(
    chosen: jax.Array,
    rejected: jax.Array,
    ref_chosen: jax.Array,
    ref_rejected: jax.Array,
    *,
    beta: float = 0.1,
    weights: jax.Array | None = None,
) -> PreferenceLoss:
    """Each argument [pairs]: summed log-probs of a completion under the policy or the
    reference; `weights` [pairs]: 1 for a pair, 0 for padding (None: every pair counts).
    With no pair weighted, the loss, margin and accuracy are 0."""
    reward_chosen = beta * (chosen - ref_chosen)
    reward_rejected = beta * (rejected - ref_rejected)
    margin = reward_chosen - reward_rejected
    if weights is None:
        weights = jnp.ones_like(margin)
    count = jnp.maximum(jnp.sum(weights), 1.0)

    def mean(x: jax.Array) -> jax.Array:
        return jnp.sum(x * weights) / count

    loss = mean(-jax.nn.log_sigmoid(margin))
    accuracy = mean((margin > 0).astype(jnp.float32))
    return PreferenceLoss(loss, mean(margin), accuracy)


jax.tree_util.register_dataclass(
    PreferenceLoss, data_fields=["loss", "margin", "accuracy"], meta_fields=[]
)
