"""The algorithm section: what training optimises (sft, grpo or dpo) and the keys of
each post-training algorithm."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from tunixrt.config._checks import _require


class AlgorithmName(enum.StrEnum):
    sft = "sft"  # supervised: next-token loss on the dataset's traces
    grpo = "grpo"  # group-relative policy optimisation on sampled, scored completions
    dpo = "dpo"  # direct preference optimisation on (prompt, chosen, rejected) pairs


class AdvantageScale(enum.StrEnum):
    group = "group"  # (reward - group mean) / (group std + eps)
    none = "none"  # reward - group mean (Dr. GRPO)


def _default_rewards() -> dict[str, float]:
    return {"correct": 1.0, "format": 0.1, "length": 0.0}


REWARD_NAMES = ("correct", "format", "length")


@dataclass
class AlgorithmConfig:
    """What training optimises: `sft` (the dataset's traces, next-token loss), `grpo`
    (tunixrt.algorithms: completions sampled from the model for prompts with known
    answers, rewarded, and reinforced group-relatively) or `dpo` (preference pairs from
    `pairs`, or, with pairs=null, made on policy: completions sampled and rewarded as
    for grpo, each group's best chosen over its worst). The keys below are read only by
    the algorithms their comments name."""

    name: AlgorithmName = AlgorithmName.sft
    # dpo: a JSONL of {"prompt", "chosen", "rejected"}; valid_fraction of it is held out
    # for the preference accuracy reported at each evaluation. null: pairs made on policy
    # from the prompts, the sampling keys and the rewards below (nothing held out)
    pairs: str | None = None
    valid_fraction: float = 0.1
    # grpo, and dpo without pairs: prompts with expected answers: an eval JSONL or a trace
    # JSONL; null: the training traces of the dataset (dataset.path, or
    # dataset.generate's), within dataset.families
    prompts: str | None = None
    prompts_per_step: int = 8  # dpo: pairs per step (at most, without a pairs file)
    group_size: int = 8  # completions sampled per prompt
    # grpo, and dpo without pairs: sampling calls a step may make to find prompts_per_step
    # groups whose rewards differ (DAPO's dynamic sampling); 1: train on the first draw
    max_draws: int = 1
    iterations: int = (
        1  # grpo: optimizer steps on each sampled batch (the ratio leaves 1 after the first)
    )
    max_new_tokens: int = 128
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    eps_low: float = 0.2  # the ratio is clipped to [1 - eps_low, 1 + eps_high]
    eps_high: float = 0.28  # above eps_low: DAPO's clip-higher
    # grpo: weight of the KL penalty against the starting weights (0: none); dpo: the
    # scale of the implicit reward beta * (log pi - log ref)
    beta: float = 0.04
    advantage_scale: AdvantageScale = AdvantageScale.group
    # reward name -> weight (grpo; dpo without pairs ranks its samples by it); correct:
    # the eval scorer's verdict, format: the completion ended and marked its answer,
    # length: soft penalty over the last length_buffer tokens
    rewards: dict[str, float] = field(default_factory=_default_rewards)
    length_buffer: int = 32
    # grpo: completions cut at max_new_tokens (no EOS) leave the loss, though their
    # rewards still count in their group's advantages (DAPO's overlong filtering)
    mask_truncated: bool = False

    def __post_init__(self) -> None:
        for key in ("prompts_per_step", "group_size", "max_draws", "iterations", "max_new_tokens"):
            value = getattr(self, key)
            _require(value > 0, f"algorithm.{key}", value, "a positive integer")
        _require(self.temperature > 0, "algorithm.temperature", self.temperature, "a number > 0")
        _require(
            self.top_k is None or self.top_k > 0,
            "algorithm.top_k",
            self.top_k,
            "a positive integer",
        )
        _require(
            self.top_p is None or 0.0 < self.top_p <= 1.0,
            "algorithm.top_p",
            self.top_p,
            "a number in (0, 1] or null",
        )
        for key in ("eps_low", "eps_high", "beta"):
            value = getattr(self, key)
            _require(value >= 0, f"algorithm.{key}", value, "a number >= 0")
        _require(self.eps_low < 1, "algorithm.eps_low", self.eps_low, "a number below 1")
        unknown = sorted(set(self.rewards) - set(REWARD_NAMES))
        _require(not unknown, "algorithm.rewards", unknown, f"rewards among {list(REWARD_NAMES)}")
        _require(
            any(w != 0 for w in self.rewards.values()),
            "algorithm.rewards",
            dict(self.rewards),
            "at least one nonzero weight",
        )
        _require(
            self.length_buffer >= 0,
            "algorithm.length_buffer",
            self.length_buffer,
            "an integer >= 0",
        )
        _require(
            0.0 <= self.valid_fraction < 1.0,
            "algorithm.valid_fraction",
            self.valid_fraction,
            "a number in [0, 1)",
        )
        if self.name is AlgorithmName.dpo:
            _require(self.beta > 0, "algorithm.beta", self.beta, "a number > 0 for dpo")
            _require(
                self.pairs is not None or self.group_size >= 2,
                "algorithm.group_size",
                self.group_size,
                "at least 2 for dpo with pairs made on policy (algorithm.pairs=null)",
            )
