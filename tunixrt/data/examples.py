"""Encoded examples as an indexable sequence that knows every example's length, so
batches can be planned from the lengths alone: in memory, memory-mapped from the
token cache (tunixrt.data.cache), or a view over others (a subset, files end to end).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from tunixrt.data.tokenize import Encoded


@runtime_checkable
class Examples(Protocol):
    """What batching reads: `examples[i]` and `lengths[i]` (tokens of example i)."""

    @property
    def lengths(self) -> np.ndarray: ...  # [n] int64

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> Encoded: ...


class InMemory:
    def __init__(self, encoded: Sequence[Encoded]) -> None:
        self._encoded = list(encoded)
        self.lengths = np.fromiter((len(e) for e in self._encoded), np.int64, len(self._encoded))

    def __len__(self) -> int:
        return len(self._encoded)

    def __getitem__(self, i: int) -> Encoded:
        return self._encoded[i]


class Subset:
    """`base` restricted to `indices` (in that order)."""

    def __init__(self, base: Examples, indices: np.ndarray) -> None:
        self._base, self._indices = base, np.asarray(indices, np.int64)
        self.lengths = base.lengths[self._indices]

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, i: int) -> Encoded:
        return self._base[int(self._indices[i])]


class Concat:
    """Several example sets end to end: index i of part p is `starts[p] + i`."""

    def __init__(self, parts: Sequence[Examples]) -> None:
        self.parts = list(parts)
        self.sizes = np.array([len(p) for p in self.parts], np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)])
        self.lengths = np.concatenate([np.zeros(0, np.int64), *(p.lengths for p in self.parts)])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, i: int) -> Encoded:
        part = int(np.searchsorted(self.starts, i, side="right")) - 1
        return self.parts[part][i - int(self.starts[part])]


def as_examples(examples: Sequence[Encoded] | Examples) -> Examples:
    return examples if isinstance(examples, Examples) else InMemory(examples)


def usable(examples: Examples) -> Examples:
    """The examples with the two tokens one training target needs (all, usually)."""
    keep = np.flatnonzero(examples.lengths >= 2)
    return examples if len(keep) == len(examples) else Subset(examples, keep)
