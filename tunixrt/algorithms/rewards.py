"""Rewards of sampled completions, for GRPO (and for ranking samples into DPO pairs).

Each reward maps one completion to a float; a run weighs them (`weights`, by name) and
adds them up. The per-reward values are kept apart for the metrics (mean and spread of
each), since a total hides which one moved.

- correct: 1 when the extracted answer equals the expected one under the evaluation
  scorer (tunixrt.evaluation.scoring: same extraction and normalisation), else 0.
- format: 1 when the completion ended by itself (EOS, not the token limit) and marks its
  answer as the training template does (the answer marker, or a final "The answer is X"
  sentence), else 0.
- length: 0 up to `max_tokens - buffer` generated tokens, then falling linearly to -1 at
  `max_tokens` (DAPO's soft overlong penalty): long rambling costs before it is cut.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from tunixrt.config import REWARD_NAMES as REWARDS
from tunixrt.evaluation.scoring import extract_answer, is_correct, marks_answer


@dataclass(frozen=True)
class Sample:
    text: str  # the completion as decode_completion renders it (answer marker included)
    expected: str
    tokens: int  # generated tokens, EOS included
    finished: bool  # ended with EOS rather than at the token limit


def correct(sample: Sample) -> float:
    return 1.0 if is_correct(sample.text, sample.expected) else 0.0


def well_formed(sample: Sample) -> float:
    ok = sample.finished and marks_answer(sample.text) and extract_answer(sample.text)
    return 1.0 if ok else 0.0


def overlong(tokens: int, max_tokens: int, buffer: int) -> float:
    """0 up to max_tokens - buffer, -1 from max_tokens on, linear between."""
    if tokens >= max_tokens:
        return -1.0
    start = max_tokens - buffer
    if buffer <= 0 or tokens <= start:
        return 0.0
    return -(tokens - start) / buffer


@dataclass(frozen=True)
class Scored:
    total: np.ndarray  # [samples] weighted sum
    parts: dict[str, np.ndarray]  # reward name -> [samples], unweighted


def score_samples(
    samples: Sequence[Sample],
    weights: Mapping[str, float],
    *,
    max_tokens: int,
    length_buffer: int,
) -> Scored:
    """Every reward with a nonzero weight for every sample, and their weighted sum."""
    unknown = sorted(set(weights) - set(REWARDS))
    if unknown:
        raise ValueError(f"unknown rewards {unknown}; choose from {list(REWARDS)}")
    functions = {
        "correct": correct,
        "format": well_formed,
        "length": lambda s: overlong(s.tokens, max_tokens, length_buffer),
    }
    parts = {
        name: np.array([functions[name](s) for s in samples], np.float32)
        for name, weight in weights.items()
        if weight != 0.0
    }
    total = np.zeros(len(samples), np.float32)
    for name, values in parts.items():
        total += np.float32(weights[name]) * values
    return Scored(total, parts)
