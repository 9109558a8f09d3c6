"""`tunixrt bench algorithm=grpo`: time GRPO steps of a config, split into sampling
(generation with the KV cache) and training (the reference's and the policy's passes and
the update), with sampled and trained tokens per second."""

from __future__ import annotations

from dataclasses import dataclass

from tunixrt.algorithms.grpo_trainer import GrpoTrainer
from tunixrt.train.setup import Setup


@dataclass
class GrpoBench:
    prompts_per_step: int
    group_size: int
    max_new_tokens: int
    steps: int  # timed steps, after `warmup` untimed ones (compilation)
    first_step_seconds: float  # compile + run of the first step
    step_seconds: float  # mean over the timed steps
    sample_seconds: float  # of step_seconds
    train_seconds: float  # of step_seconds
    sample_share: float  # sample_seconds / step_seconds
    completion_tokens: float  # mean per sampled completion
    sampled_tokens_per_second: float  # completion tokens generated / sampling time
    trained_tokens_per_second: float  # completion tokens trained on / training time


def bench_grpo(s: Setup, *, steps: int, warmup: int) -> GrpoBench:
    """Run 1 + warmup untimed GRPO steps, then `steps` timed ones, on the config's
    prompts from the model as set up (its start is the KL reference)."""
    g = s.algorithm
    assert isinstance(g, GrpoTrainer), "bench_grpo needs algorithm=grpo"
    g.start_reference(None)
    first = g.step(1).metrics
    for n in range(2, 2 + warmup):
        g.step(n)
    sample = train = 0.0
    tokens = 0
    lengths = []
    for n in range(2 + warmup, 2 + warmup + steps):
        done = g.step(n)
        sample += done.metrics["grpo/sample_seconds"]
        train += done.metrics["grpo/train_seconds"]
        tokens += done.tokens
        lengths.append(done.metrics["grpo/completion_tokens"])
    total = sample + train
    a = s.cfg.algorithm
    return GrpoBench(
        prompts_per_step=a.prompts_per_step,
        group_size=a.group_size,
        max_new_tokens=a.max_new_tokens,
        steps=steps,
        first_step_seconds=first["grpo/sample_seconds"] + first["grpo/train_seconds"],
        step_seconds=total / steps,
        sample_seconds=sample / steps,
        train_seconds=train / steps,
        sample_share=sample / total,
        completion_tokens=sum(lengths) / len(lengths),
        sampled_tokens_per_second=tokens / sample,
        trained_tokens_per_second=tokens / train,
    )


def format_grpo(r: GrpoBench) -> str:
    rows = [
        (
            "GRPO step",
            f"{r.prompts_per_step} prompts x {r.group_size} samples, "
            f"at most {r.max_new_tokens} new tokens; {r.steps} timed steps",
        ),
        ("first step (compile + run)", f"{r.first_step_seconds:.2f} s"),
        (
            "step",
            f"{r.step_seconds:.3f} s: sampling {r.sample_seconds:.3f} s "
            f"({100 * r.sample_share:.0f}%), training {r.train_seconds:.3f} s",
        ),
        ("completion", f"{r.completion_tokens:.1f} tokens on average"),
        ("sampled tokens/s", f"{r.sampled_tokens_per_second:,.0f}"),
        ("trained tokens/s", f"{r.trained_tokens_per_second:,.0f}"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
