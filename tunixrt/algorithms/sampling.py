"""Groups sampled on policy and scored: what a GRPO step and a DPO step on sampled pairs
both begin with.

A step takes `algorithm.prompts_per_step` prompts with expected answers from the run's
prompt order (tunixrt.algorithms.prompts), samples `algorithm.group_size` completions of
each from the current weights in one batched KV-cache generation call
(tunixrt.algorithms.rollout), and scores every completion with `algorithm.rewards`
(tunixrt.algorithms.rewards). The sampling seed of step n is drawn from (seed, n) and the
prompt order is saved with each checkpoint, so a resumed run samples exactly what it
would have sampled without the stop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from tunixrt.algorithms.prompts import PromptOrder, prompt_items
from tunixrt.algorithms.rewards import Sample, Scored, correct, score_samples
from tunixrt.algorithms.rollout import Rollout, sample_groups
from tunixrt.config import ConfigError, TrainConfig
from tunixrt.evaluation.generate import Tokenizer, decode_completion, prompt_ids
from tunixrt.evaluation.scoring import EvalItem
from tunixrt.models import Decoder


def step_seed(seed: int, step: int) -> int:
    """The sampling seed of optimizer step `step`: a function of (seed, step) only."""
    return int(np.random.SeedSequence([seed, step]).generate_state(1)[0])


@dataclass(frozen=True)
class Groups:
    """One step's samples: rows in prompt order, `group_size` consecutive rows a prompt."""

    items: list[EvalItem]  # the step's prompts
    rollout: Rollout
    samples: list[Sample]  # [prompts * group], decoded
    scored: Scored  # [prompts * group] rewards
    sample_seconds: float  # the generation call's wall time
    sampled_at: float  # time.perf_counter() when generation returned

    @property
    def rewards(self) -> np.ndarray:
        """[prompts, group] total rewards."""
        return self.scored.total.reshape(len(self.items), self.rollout.group_size)

    def sampling_scalars(self) -> dict[str, float]:
        """Mean completion length (EOS included), and completion tokens per second of
        the generation call."""
        tokens = [s.tokens for s in self.samples]
        return {
            "completion_tokens": float(np.mean(tokens)),
            "sampled_tokens_per_sec": sum(tokens) / max(self.sample_seconds, 1e-9),
        }

    def reward_scalars(self) -> dict[str, float]:
        """Mean and spread of the total reward and of each reward function, and the share
        of correct answers (`accuracy`) whether or not `correct` is weighted."""
        total, parts = self.scored.total, self.scored.parts
        out = {"reward": float(total.mean()), "reward_std": float(total.std())}
        for name, values in parts.items():
            out[f"reward_{name}"] = float(values.mean())
            out[f"reward_{name}_std"] = float(values.std())
        right = parts.get("correct")
        if right is None:
            right = np.array([correct(s) for s in self.samples])
        out["accuracy"] = float(right.mean())
        return out


class GroupSampler:
    """The run's prompts (algorithm.prompts, else the dataset's traces), their order,
    and the sampling settings; `draw(n)` samples and scores step n's groups."""

    def __init__(self, cfg: TrainConfig, model: Decoder, tokenizer: Tokenizer) -> None:
        self.a = cfg.algorithm
        self.items, source = prompt_items(cfg)
        self.model, self.tokenizer, self.seed = model, tokenizer, cfg.seed
        self.order = PromptOrder(len(self.items), cfg.seed)
        self.prompts = [prompt_ids(tokenizer, i.prompt) for i in self.items]
        self._check_fits(source, cfg.trainer.seq_len)

    def draw(self, n: int) -> Groups:
        """Step n's prompts (the order advances), a group of completions of each from the
        model as it is now, and their rewards."""
        a = self.a
        started = time.perf_counter()
        chosen = self.order.take(a.prompts_per_step)
        rollout = sample_groups(
            self.model,
            [self.prompts[i] for i in chosen],
            group_size=a.group_size,
            max_new_tokens=a.max_new_tokens,
            eos_id=self.tokenizer.eos_id,
            temperature=a.temperature,
            top_p=a.top_p,
            top_k=a.top_k,
            seed=step_seed(self.seed, n),
        )
        sampled = time.perf_counter()
        items = [self.items[i] for i in chosen]
        samples = self._samples(items, rollout)
        scored = score_samples(
            samples, a.rewards, max_tokens=a.max_new_tokens, length_buffer=a.length_buffer
        )
        return Groups(items, rollout, samples, scored, sampled - started, sampled)

    def _samples(self, items: list[EvalItem], rollout: Rollout) -> list[Sample]:
        expected = [i.expected_answer for i in items for _ in range(self.a.group_size)]
        return [
            Sample(decode_completion(self.tokenizer, ids), want, len(ids) + done, done)
            for ids, want, done in zip(rollout.completions, expected, rollout.finished, strict=True)
        ]

    def _check_fits(self, source: str, seq_len: int) -> None:
        longest = max(len(p) for p in self.prompts)
        need = longest + self.a.max_new_tokens
        if need > seq_len:
            raise ConfigError(
                f"invalid config value trainer.seq_len={seq_len}: the longest prompt "
                f"of {source} ({longest} tokens) plus algorithm.max_new_tokens="
                f"{self.a.max_new_tokens} needs {need}"
            )
