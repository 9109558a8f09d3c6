"""One GRPO step of the training loop (algorithm=grpo): draw prompts, sample a group of
completions for each, reward them (tunixrt.algorithms.sampling), and take
`algorithm.iterations` optimizer steps on the clipped objective with a KL penalty against
the reference.

The reference is the weights the run started from (tunixrt.algorithms.reference). The
StepResult's tokens are the completion tokens trained on (EOS included). The sampling
seed of draw d of step n is drawn from (seed, n, d) and the prompt order is saved with
each checkpoint, so a resumed run samples exactly what it would have sampled without the
stop.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from tunixrt.algorithms.grpo import equal_reward_share, group_advantages
from tunixrt.algorithms.grpo_update import PolicyStep, logprobs, make_policy_step
from tunixrt.algorithms.reference import Reference
from tunixrt.algorithms.rollout import completion_batch, row_width, without_truncated
from tunixrt.algorithms.sampling import GroupSampler
from tunixrt.algorithms.trainer import Context, OrderedStep, StepResult
from tunixrt.config import AlgorithmConfig


class GrpoTrainer(OrderedStep):
    """GRPO's state beside the model and optimizer: the prompts, their order and the
    reference. `step(n)` runs optimizer step n (and the iterations after it)."""

    def __init__(self, ctx: Context) -> None:
        self.a: AlgorithmConfig = ctx.cfg.algorithm
        self.model, self.optimizer, self.tokenizer = ctx.model, ctx.optimizer, ctx.tokenizer
        self.put = ctx.devices.put_batch
        self.sampler = GroupSampler(ctx.cfg, ctx.model, ctx.tokenizer)
        self.order = self.sampler.order
        self.seq_len = ctx.cfg.trainer.seq_len
        # the KL's reference; None without a KL penalty
        lora = ctx.cfg.model.lora.rank > 0
        self.reference = Reference(ctx.model, lora=lora) if self.a.beta > 0 else None
        self._step: PolicyStep = make_policy_step(
            ctx.wrt, eps_low=self.a.eps_low, eps_high=self.a.eps_high, beta=self.a.beta
        )

    # ------------------------------------------------------------------ the step

    def step(self, n: int) -> StepResult:
        groups = self.sampler.draw(n)
        rollout, rewards = groups.rollout, groups.rewards
        advantages = group_advantages(jnp.asarray(rewards), scale=str(self.a.advantage_scale))
        batch = completion_batch(
            rollout,
            eos_id=self.tokenizer.eos_id,
            pad_id=self.tokenizer.eos_id,
            seq_len=row_width(rollout, self.seq_len),
        )
        if self.a.mask_truncated:
            batch = without_truncated(batch, rollout)
        # every process sampled the same rows: each device takes its share of them
        inputs, targets = self.put(batch.inputs), self.put(batch.targets)
        policy_batch = {
            "inputs": inputs,
            "targets": targets,
            "mask": self.put(batch.mask),
            "advantages": self.put(np.asarray(advantages, np.float32).reshape(-1)),
        }
        if self.a.iterations > 1:  # later passes need the sampling policy's log-probs
            policy_batch["old_logp"] = logprobs(self.model, inputs, targets)
        if self.reference is not None:
            policy_batch["ref_logp"] = self.reference.logprobs(inputs, targets)
        for _ in range(self.a.iterations):
            out = self._step(self.model, self.optimizer, policy_batch)
        host = jax.device_get(out)
        trained = time.perf_counter()
        tokens = int(batch.lengths.sum())
        metrics = {
            "loss": float(host["loss"]),
            "grad_norm": float(host["grad_norm"]),
            "finite": bool(host["finite"]),
            "grpo/kl": float(host["kl"]),
            "grpo/clip_fraction": float(host["clip_fraction"]),
            "grpo/ratio": float(host["ratio"]),
            **{f"grpo/{k}": v for k, v in groups.reward_scalars().items()},
            "grpo/equal_reward_groups": float(equal_reward_share(jnp.asarray(rewards))),
            **{f"grpo/{k}": v for k, v in groups.sampling_scalars().items()},
            "grpo/sample_seconds": groups.sample_seconds,
            "grpo/train_seconds": trained - groups.sampled_at,
        }
        return StepResult(metrics, tokens)

    def evaluate(self) -> dict[str, float]:
        return {}  # held-out accuracy is the answer evaluation's (eval.*)
