"""Preference pairs for DPO, from one of two sources, and their fixed-shape batches.

- A JSONL file of {"prompt", "chosen", "rejected"} (strings), each completion rendered
  and tokenized as training renders a prompt/completion pair.
- Groups of completions sampled on policy and rewarded (tunixrt.algorithms.sampling):
  `rank_pairs` makes one pair of each group whose rewards differ, its best completion
  chosen and its worst rejected, taken as sampled (`rollout_pair`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tunixrt.algorithms.rollout import Rollout
from tunixrt.data.render import Rendered
from tunixrt.data.schema import DataError, read_jsonl
from tunixrt.data.tokenize import Encoded
from tunixrt.evaluation.generate import Tokenizer


@dataclass(frozen=True)
class PreferencePair:
    prompt: str
    chosen: str
    rejected: str


def _parse_pair(obj: Any) -> PreferencePair:
    if not isinstance(obj, dict):
        raise DataError(f"a pair is a JSON object, got {type(obj).__name__}")
    values = []
    for key in ("prompt", "chosen", "rejected"):
        value = obj.get(key)
        if not isinstance(value, str) or not value:
            raise DataError(f"key {key!r} must be a non-empty string, got {value!r}")
        values.append(value)
    return PreferencePair(*values)


def read_pairs(path: str) -> list[PreferencePair]:
    """Every pair of the file; a bad line raises `file:line: why`."""
    return read_jsonl(path, _parse_pair)


@dataclass(frozen=True)
class EncodedPair:
    chosen: Encoded
    rejected: Encoded


def encode_pairs(pairs: list[PreferencePair], tokenizer: Tokenizer) -> list[EncodedPair]:
    rendered = [Rendered(p.prompt, c, None) for p in pairs for c in (p.chosen, p.rejected)]
    encoded = tokenizer.encode_many(rendered)
    return [EncodedPair(encoded[2 * i], encoded[2 * i + 1]) for i in range(len(pairs))]


@dataclass(frozen=True)
class RankedPair:
    prompt: int  # the prompt's place in the step
    chosen: int  # the rollout row of its group's highest reward
    rejected: int  # the rollout row of its group's lowest reward


def rank_pairs(rewards: np.ndarray) -> list[RankedPair]:
    """rewards [prompts, group] (rollout rows in prompt order) -> one pair per prompt
    whose rewards differ: the highest-rewarded completion chosen, the lowest rejected;
    among equal rewards, the earliest sampled. A prompt whose completions all score the
    same makes no pair."""
    group = rewards.shape[1]
    out = []
    for p, row in enumerate(rewards):
        best, worst = int(np.argmax(row)), int(np.argmin(row))  # the first of equals
        if row[best] > row[worst]:
            out.append(RankedPair(p, p * group + best, p * group + worst))
    return out


def rollout_pair(rollout: Rollout, pair: RankedPair, eos_id: int) -> EncodedPair:
    """The pair's two rows as sampled (prompt + completion, + EOS where it ended), the
    loss on the completion's tokens."""

    def encoded(row: int) -> Encoded:
        ids = np.asarray(rollout.tokens(row, eos_id), np.int32)
        return Encoded(ids, np.arange(len(ids)) >= len(rollout.prompts[row]))

    return EncodedPair(encoded(pair.chosen), encoded(pair.rejected))


@dataclass(frozen=True)
class PairBatch:
    inputs: np.ndarray  # [2 * pairs, width] int32: the chosen rows, then the rejected ones
    targets: np.ndarray  # [2 * pairs, width] int32: inputs shifted left by one
    mask: np.ndarray  # [2 * pairs, width] float32: 1 where the target is a completion token
    weights: np.ndarray  # [pairs] float32: 1 for a pair, 0 for padding

    @property
    def tokens(self) -> int:
        return int(self.mask.sum())


def pair_batch(
    pairs: list[EncodedPair], *, width: int, pad_id: int, count: int | None = None
) -> PairBatch:
    """Fixed-shape rows: the chosen completions, then the rejected ones, in pair order,
    each half padded with empty rows (weight 0) to `count` pairs (None: len(pairs)); a
    pair longer than width + 1 tokens raises."""
    count = len(pairs) if count is None else count
    if count < len(pairs):
        raise ValueError(f"{len(pairs)} pairs do not fit a batch of {count}")
    empty: list[Encoded | None] = [None] * (count - len(pairs))
    rows = [p.chosen for p in pairs] + empty + [p.rejected for p in pairs] + empty
    inputs = np.full((len(rows), width), pad_id, np.int32)
    targets = np.full((len(rows), width), pad_id, np.int32)
    mask = np.zeros((len(rows), width), np.float32)
    for r, e in enumerate(rows):
        if e is None:
            continue
        n = len(e) - 1
        if n > width:
            raise ValueError(
                f"a pair's completion row holds {len(e)} tokens: more than {width + 1}"
            )
        inputs[r, :n], targets[r, :n] = e.ids[:-1], e.ids[1:]
        mask[r, :n] = e.mask[1:]
    weights = (np.arange(count) < len(pairs)).astype(np.float32)
    return PairBatch(inputs, targets, mask, weights)
