"""Preference pairs for DPO: a JSONL file of {"prompt", "chosen", "rejected"} (strings),
each completion rendered and tokenized as training renders a prompt/completion pair."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

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
class PairBatch:
    inputs: np.ndarray  # [2 * pairs, width] int32: the chosen rows, then the rejected ones
    targets: np.ndarray  # [2 * pairs, width] int32: inputs shifted left by one
    mask: np.ndarray  # [2 * pairs, width] float32: 1 where the target is a completion token

    @property
    def tokens(self) -> int:
        return int(self.mask.sum())


def pair_batch(pairs: list[EncodedPair], *, width: int, pad_id: int) -> PairBatch:
    """Fixed-shape rows (chosen first, then rejected, in pair order); a pair longer than
    width + 1 tokens raises."""
    rows = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    inputs = np.full((len(rows), width), pad_id, np.int32)
    targets = np.full((len(rows), width), pad_id, np.int32)
    mask = np.zeros((len(rows), width), np.float32)
    for r, e in enumerate(rows):
        n = len(e) - 1
        if n > width:
            raise ValueError(
                f"a pair's completion row holds {len(e)} tokens: more than {width + 1}"
            )
        inputs[r, :n], targets[r, :n] = e.ids[:-1], e.ids[1:]
        mask[r, :n] = e.mask[1:]
    return PairBatch(inputs, targets, mask)
