"""One GRPO step of the training loop (algorithm=grpo): draw prompts, sample a group of
completions for each, reward them, and take `algorithm.iterations` optimizer steps on
the clipped objective with a KL penalty against the reference.

The reference is the weights the run started from (tunixrt.algorithms.reference). The
StepResult's tokens are the completion tokens trained on (EOS included). The sampling seed of step n is drawn from
(seed, n) and the prompt order is saved with each checkpoint, so a resumed run samples
exactly what it would have sampled without the stop.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tunixrt.algorithms.grpo import equal_reward_share, group_advantages
from tunixrt.algorithms.grpo_update import PolicyStep, logprobs, make_policy_step
from tunixrt.algorithms.prompts import PromptOrder, prompt_items
from tunixrt.algorithms.reference import Reference
from tunixrt.algorithms.rewards import Sample, correct, score_samples
from tunixrt.algorithms.rollout import Rollout, completion_batch, sample_groups
from tunixrt.algorithms.trainer import OrderedStep, StepResult
from tunixrt.config import AlgorithmConfig, ConfigError, TrainConfig
from tunixrt.evaluation.generate import Tokenizer, decode_completion, prompt_ids
from tunixrt.evaluation.scoring import EvalItem
from tunixrt.models import Decoder


class GrpoTrainer(OrderedStep):
    """GRPO's state beside the model and optimizer: the prompts, their order and the
    reference. `step(n)` runs optimizer step n (and the iterations after it)."""

    def __init__(
        self,
        cfg: TrainConfig,
        model: Decoder,
        optimizer: nnx.Optimizer,
        tokenizer: Tokenizer,
        wrt: type[nnx.Variable],
    ) -> None:
        self.a: AlgorithmConfig = cfg.algorithm
        self.items, source = prompt_items(cfg)
        self.model, self.optimizer, self.tokenizer = model, optimizer, tokenizer
        self.order = PromptOrder(len(self.items), cfg.seed)
        self.seed = cfg.seed
        self.seq_len = cfg.trainer.seq_len
        self.prompts = [prompt_ids(tokenizer, i.prompt) for i in self.items]
        self._check_fits(source)
        # the KL's reference; None without a KL penalty
        self.reference = Reference(model, lora=cfg.model.lora.rank > 0) if self.a.beta > 0 else None
        self._step: PolicyStep = make_policy_step(
            wrt, eps_low=self.a.eps_low, eps_high=self.a.eps_high, beta=self.a.beta
        )

    # ------------------------------------------------------------------ the step

    def step(self, n: int) -> StepResult:
        started = time.perf_counter()
        chosen = self.order.take(self.a.prompts_per_step)
        items = [self.items[i] for i in chosen]
        rollout = self._sample([self.prompts[i] for i in chosen], n)
        sampled = time.perf_counter()
        samples = self._samples(items, rollout)
        scored = score_samples(
            samples,
            self.a.rewards,
            max_tokens=self.a.max_new_tokens,
            length_buffer=self.a.length_buffer,
        )
        rewards = scored.total.reshape(len(items), self.a.group_size)
        advantages = group_advantages(jnp.asarray(rewards), scale=str(self.a.advantage_scale))
        batch = completion_batch(
            rollout,
            eos_id=self.tokenizer.eos_id,
            pad_id=self.tokenizer.eos_id,
            seq_len=row_width(rollout, self.seq_len),
        )
        inputs, targets = jnp.asarray(batch.inputs), jnp.asarray(batch.targets)
        policy_batch = {
            "inputs": inputs,
            "targets": targets,
            "mask": jnp.asarray(batch.mask),
            "advantages": advantages.reshape(-1),
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
            **_reward_scalars(scored.total, scored.parts, samples),
            "grpo/equal_reward_groups": float(equal_reward_share(jnp.asarray(rewards))),
            "grpo/completion_tokens": float(batch.lengths.mean()),
            "grpo/sample_seconds": sampled - started,
            "grpo/train_seconds": trained - sampled,
            "grpo/sampled_tokens_per_sec": tokens / max(sampled - started, 1e-9),
        }
        return StepResult(metrics, tokens)

    def _sample(self, prompts: list[list[int]], n: int) -> Rollout:
        a = self.a
        return sample_groups(
            self.model,
            prompts,
            group_size=a.group_size,
            max_new_tokens=a.max_new_tokens,
            eos_id=self.tokenizer.eos_id,
            temperature=a.temperature,
            top_p=a.top_p,
            top_k=a.top_k,
            seed=step_seed(self.seed, n),
        )

    def _samples(self, items: list[EvalItem], rollout: Rollout) -> list[Sample]:
        expected = [i.expected_answer for i in items for _ in range(self.a.group_size)]
        return [
            Sample(decode_completion(self.tokenizer, ids), want, len(ids) + done, done)
            for ids, want, done in zip(rollout.completions, expected, rollout.finished, strict=True)
        ]

    def _check_fits(self, source: str) -> None:
        longest = max(len(p) for p in self.prompts)
        need = longest + self.a.max_new_tokens
        if need > self.seq_len:
            raise ConfigError(
                f"invalid config value trainer.seq_len={self.seq_len}: the longest prompt "
                f"of {source} ({longest} tokens) plus algorithm.max_new_tokens="
                f"{self.a.max_new_tokens} needs {need}"
            )

    def evaluate(self) -> dict[str, float]:
        return {}  # held-out accuracy is the answer evaluation's (eval.*)


ROW_MULTIPLE = 64  # rows are padded to a multiple of this: few shapes, few compilations


def row_width(rollout: Rollout, seq_len: int) -> int:
    """The row length of a rollout's batch: its longest prompt + completion (+ EOS),
    less the one token no row predicts from, rounded up to ROW_MULTIPLE and at most
    seq_len."""
    pairs = zip(rollout.prompts, rollout.completions, strict=True)
    longest = max(len(p) + len(c) + 1 for p, c in pairs)
    return min(seq_len, -(-(longest - 1) // ROW_MULTIPLE) * ROW_MULTIPLE)


def step_seed(seed: int, step: int) -> int:
    """The sampling seed of optimizer step `step`: a function of (seed, step) only."""
    return int(np.random.SeedSequence([seed, step]).generate_state(1)[0])


def _reward_scalars(
    total: np.ndarray, parts: dict[str, np.ndarray], samples: list[Sample]
) -> dict[str, float]:
    """Mean and spread of the total reward and of each reward function; the share of
    correct answers whether or not `correct` is weighted."""
    out = {"grpo/reward": float(total.mean()), "grpo/reward_std": float(total.std())}
    for name, values in parts.items():
        out[f"grpo/reward_{name}"] = float(values.mean())
        out[f"grpo/reward_{name}_std"] = float(values.std())
    right = parts["correct"] if "correct" in parts else np.array([correct(s) for s in samples])
    out["grpo/accuracy"] = float(right.mean())
    return out
