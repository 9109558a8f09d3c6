"""`tunixrt bench algorithm=grpo|dpo`: time a post-training algorithm's steps, split
into sampling (generation with the KV cache: GRPO, DPO on policy) and training (the
reference's and the policy's passes and the update), with sampled and trained tokens
per second."""

from __future__ import annotations

import time
from dataclasses import dataclass

from tunixrt.train.setup import Setup


@dataclass
class AlgorithmBench:
    algorithm: str  # grpo or dpo
    prompts_per_step: int  # prompts sampled for, or pairs from algorithm.pairs, a step
    group_size: int | None  # completions sampled a prompt; None: nothing is sampled
    max_new_tokens: int | None  # None: nothing is sampled
    steps: int  # timed steps, after `warmup` untimed ones (compilation)
    first_step_seconds: float  # compile + run of the first step
    step_seconds: float  # mean wall time over the timed steps
    sample_seconds: float  # of step_seconds (0: nothing is sampled)
    train_seconds: float  # of step_seconds: the rest of the step
    sample_share: float  # sample_seconds / step_seconds
    completion_tokens: float | None  # mean per sampled completion, EOS included
    sampled_tokens_per_second: float | None  # completion tokens generated / sampling time
    trained_tokens_per_second: float  # tokens in the loss / training time


def bench_algorithm(s: Setup, *, steps: int, warmup: int) -> AlgorithmBench:
    """Run 1 + warmup untimed steps of the config's algorithm, then `steps` timed ones,
    from the model as set up (its start is the reference)."""
    step = s.algorithm
    assert step is not None, "bench_algorithm needs algorithm=grpo or dpo"
    a = s.cfg.algorithm
    name = str(a.name)
    step.start_reference(None)
    started = time.perf_counter()
    step.step(1)
    first = time.perf_counter() - started
    for n in range(2, 2 + warmup):
        step.step(n)
    wall = sample = sampled = 0.0
    trained = 0
    lengths = []
    for n in range(2 + warmup, 2 + warmup + steps):
        started = time.perf_counter()
        done = step.step(n)
        wall += time.perf_counter() - started
        seconds = float(done.metrics.get(f"{name}/sample_seconds", 0.0))
        sample += seconds
        sampled += seconds * float(done.metrics.get(f"{name}/sampled_tokens_per_sec", 0.0))
        trained += done.tokens
        lengths.append(float(done.metrics.get(f"{name}/completion_tokens", 0.0)))
    samples = f"{name}/sample_seconds" in done.metrics
    return AlgorithmBench(
        algorithm=name,
        prompts_per_step=a.prompts_per_step,
        group_size=a.group_size if samples else None,
        max_new_tokens=a.max_new_tokens if samples else None,
        steps=steps,
        first_step_seconds=first,
        step_seconds=wall / steps,
        sample_seconds=sample / steps,
        train_seconds=(wall - sample) / steps,
        sample_share=sample / wall,
        completion_tokens=sum(lengths) / steps if samples else None,
        sampled_tokens_per_second=sampled / sample if samples else None,
        trained_tokens_per_second=trained / (wall - sample),
    )


def format_algorithm(r: AlgorithmBench) -> str:
    if r.group_size is None:
        what = f"{r.prompts_per_step} pairs"
    else:
        what = (
            f"{r.prompts_per_step} prompts x {r.group_size} samples, "
            f"at most {r.max_new_tokens} new tokens"
        )
    rows = [
        (f"{r.algorithm.upper()} step", f"{what}; {r.steps} timed steps"),
        ("first step (compile + run)", f"{r.first_step_seconds:.2f} s"),
        (
            "step",
            f"{r.step_seconds:.3f} s: sampling {r.sample_seconds:.3f} s "
            f"({100 * r.sample_share:.0f}%), training {r.train_seconds:.3f} s",
        ),
    ]
    if r.sampled_tokens_per_second is not None:
        rows.append(("completion", f"{r.completion_tokens:.1f} tokens on average"))
        rows.append(("sampled tokens/s", f"{r.sampled_tokens_per_second:,.0f}"))
    rows.append(("trained tokens/s", f"{r.trained_tokens_per_second:,.0f}"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
