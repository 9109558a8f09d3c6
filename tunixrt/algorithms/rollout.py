"""Sampling groups of completions and laying them out for a policy-gradient step.

A rollout repeats each prompt `group_size` times in one batched generation call (the KV
cache generator of tunixrt.evaluation, compiled once per shape bucket), so the samples
of a group differ only by the random draws. `completion_batch` turns prompts and their
completions into fixed-shape arrays: each row is prompt + completion (+ EOS when the
completion ended by itself), right-padded to `seq_len`, with the targets shifted by one
and a mask on the completion's targets only, so the prompt never enters the loss. Row
lengths are rounded up to a multiple of ROW_MULTIPLE (`bucket_width`), so a run compiles
its step for a few shapes only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import jax
import numpy as np

from tunixrt.algorithms.logprobs import token_logprobs
from tunixrt.evaluation.generate import generate_tokens
from tunixrt.models import Decoder


@dataclass(frozen=True)
class Rollout:
    prompts: list[list[int]]  # [prompts * group] ids, each prompt repeated group times
    completions: list[list[int]]  # the new ids of each row, EOS excluded
    finished: list[bool]  # whether the row ended with EOS before max_new_tokens
    group_size: int

    def tokens(self, row: int, eos_id: int) -> list[int]:
        """Row `row` as trained on: prompt + completion, + EOS when it ended by itself."""
        done = [eos_id] if self.finished[row] else []
        return [*self.prompts[row], *self.completions[row], *done]


def sample_groups(
    model: Decoder,
    prompts: Sequence[list[int]],
    *,
    group_size: int,
    max_new_tokens: int,
    eos_id: int,
    temperature: float,
    top_p: float | None = None,
    top_k: int | None = None,
    seed: int = 0,
) -> Rollout:
    """`group_size` sampled completions of every prompt, rows in prompt order."""
    if group_size < 1:
        raise ValueError(f"group_size must be at least 1, got {group_size}")
    rows = [list(p) for p in prompts for _ in range(group_size)]
    new = generate_tokens(
        model,
        rows,
        max_new_tokens=max_new_tokens,
        eos_id=eos_id,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        seed=seed,
    )
    # generate_tokens drops the EOS: a row that stopped on it holds fewer new tokens
    finished = [len(ids) < max_new_tokens for ids in new]
    return Rollout(rows, new, finished, group_size)


@dataclass(frozen=True)
class CompletionBatch:
    inputs: np.ndarray  # [rows, seq_len] int32: prompt + completion, right-padded
    targets: np.ndarray  # [rows, seq_len] int32: inputs shifted left by one
    mask: np.ndarray  # [rows, seq_len] float32: 1 where the target is a completion token
    lengths: np.ndarray  # [rows] int32: completion tokens in the loss (EOS included)


def completion_batch(
    rollout: Rollout, *, eos_id: int, pad_id: int, seq_len: int
) -> CompletionBatch:
    """The rollout as fixed-shape arrays; a row longer than seq_len + 1 tokens raises
    (choose seq_len >= longest prompt + max_new_tokens)."""
    n = len(rollout.prompts)
    inputs = np.full((n, seq_len), pad_id, np.int32)
    targets = np.full((n, seq_len), pad_id, np.int32)
    mask = np.zeros((n, seq_len), np.float32)
    lengths = np.zeros(n, np.int32)
    for row, prompt in enumerate(rollout.prompts):
        tokens = rollout.tokens(row, eos_id)
        if len(tokens) - 1 > seq_len:
            raise ValueError(
                f"row {row} holds {len(tokens)} tokens: more than seq_len + 1 = {seq_len + 1}"
            )
        inputs[row, : len(tokens) - 1] = tokens[:-1]
        targets[row, : len(tokens) - 1] = tokens[1:]
        # target t is token t + 1: the completion's targets start at len(prompt) - 1
        mask[row, len(prompt) - 1 : len(tokens) - 1] = 1.0
        lengths[row] = len(tokens) - len(prompt)
    return CompletionBatch(inputs, targets, mask, lengths)


def without_truncated(batch: CompletionBatch, rollout: Rollout) -> CompletionBatch:
    """`batch` with the completions cut at max_new_tokens (no EOS) out of the loss: their
    mask rows and lengths zero (DAPO's overlong filtering)."""
    kept = np.asarray(rollout.finished, bool)
    return replace(batch, mask=batch.mask * kept[:, None], lengths=batch.lengths * kept)


ROW_MULTIPLE = 64  # rows are padded to a multiple of this: few shapes, few compilations


def bucket_width(longest: int, seq_len: int) -> int:
    """The row length for sequences of at most `longest` tokens: less the one token no
    row predicts from, rounded up to ROW_MULTIPLE (at least one multiple), at most
    seq_len."""
    return min(seq_len, max(1, -(-(longest - 1) // ROW_MULTIPLE)) * ROW_MULTIPLE)


def row_width(rollout: Rollout, seq_len: int) -> int:
    """The row length of a rollout's batch: its longest prompt + completion (+ EOS),
    bucketed (`bucket_width`)."""
    pairs = zip(rollout.prompts, rollout.completions, strict=True)
    return bucket_width(max(len(p) + len(c) + 1 for p, c in pairs), seq_len)


def completion_logprobs(model: Decoder, batch: CompletionBatch) -> jax.Array:
    """log p(target) under `model` at every position, 0 outside the completions:
    [rows, seq_len] float32."""
    logits = model(jax.numpy.asarray(batch.inputs))  # [rows, seq_len, vocab]
    return token_logprobs(logits, jax.numpy.asarray(batch.targets)) * batch.mask
