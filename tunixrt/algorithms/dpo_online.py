"""One DPO step on pairs made on policy (algorithm=dpo with algorithm.pairs=null): sample
and reward a group of completions for each of `prompts_per_step` prompts as GRPO does
(tunixrt.algorithms.sampling), pair each group's best completion (chosen) with its worst
(rejected) (tunixrt.algorithms.preferences.rank_pairs), and take DPO's step on those
pairs against the reference (tunixrt.algorithms.dpo_trainer.DpoSteps).

A group whose rewards are all equal makes no pair; the batch is padded to
`prompts_per_step` pairs (weight 0) and its rows to a multiple of ROW_MULTIPLE tokens, so
the step compiles for a few shapes only. A step that makes no pair still takes its
optimizer step, on a zero gradient, as a GRPO step whose groups all score the same does.
There are no held-out pairs: the answer evaluation (eval.*) measures the policy. The
sampling seed of draw d of step n is drawn from (seed, n, d) and the prompt order is
saved with each checkpoint, so a resumed run makes the pairs it would have made without
the stop.
"""

from __future__ import annotations

import time

import numpy as np

from tunixrt.algorithms.dpo_trainer import DpoSteps
from tunixrt.algorithms.preferences import (
    PairBatch,
    RankedPair,
    pair_batch,
    rank_pairs,
    rollout_pair,
)
from tunixrt.algorithms.rollout import bucket_width
from tunixrt.algorithms.sampling import Groups, GroupSampler
from tunixrt.algorithms.trainer import Context, StepResult


class OnPolicyDpoTrainer(DpoSteps):
    """DPO on pairs ranked from the policy's own samples; `step(n)` samples, ranks and
    steps."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.sampler = GroupSampler(ctx.cfg, ctx.model, ctx.tokenizer)
        self.order = self.sampler.order
        self.seq_len, self.eos_id = ctx.cfg.trainer.seq_len, ctx.tokenizer.eos_id

    def pairs(self, n: int) -> tuple[Groups, list[RankedPair], PairBatch]:
        """Step n's sampled groups, the pairs ranked from them, and their batch."""
        groups = self.sampler.draw(n)
        ranked = rank_pairs(groups.rewards)
        encoded = [rollout_pair(groups.rollout, p, self.eos_id) for p in ranked]
        longest = max((len(e) for p in encoded for e in (p.chosen, p.rejected)), default=0)
        width = bucket_width(longest, self.seq_len)
        return (
            groups,
            ranked,
            pair_batch(encoded, width=width, pad_id=self.pad_id, count=self.per_step),
        )

    def step(self, n: int) -> StepResult:
        groups, ranked, host = self.pairs(n)
        metrics = self._train(host)
        trained = time.perf_counter()
        total = groups.scored.total
        gaps = [total[p.chosen] - total[p.rejected] for p in ranked]
        metrics.update(
            {
                "dpo/pairs": float(len(ranked)),
                "dpo/equal_reward_groups": 1.0 - len(ranked) / len(groups.items),
                "dpo/pair_reward_gap": float(np.mean(gaps)) if gaps else 0.0,
                **{f"dpo/sample_{k}": v for k, v in groups.reward_scalars().items()},
                **{f"dpo/{k}": v for k, v in groups.sampling_scalars().items()},
                "dpo/sample_seconds": groups.sample_seconds,
                "dpo/train_seconds": trained - groups.sampled_at,
            }
        )
        return StepResult(metrics, host.tokens)

    def evaluate(self) -> dict[str, float]:
        return {}  # no held-out pairs: held-out accuracy is the answer evaluation's (eval.*)
