"""Pad or pack encoded examples into fixed-shape batches, in a seeded shuffled order.

A batch is a dict of [rows, seq_len] arrays:
  inputs      int32  token ids fed to the model
  targets     int32  the next token for each input position
  weights     float32 1.0 where the target counts in the loss
  positions   int32  position of the token inside its own example (rotary embeddings)
  segment_ids int32  1, 2, ... per example in the row; 0 marks padding

Packing places whole examples one after another in a row (an example longer than the
row is truncated); attention stays inside an example through `segment_ids`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tunixrt.data.tokenize import Encoded

HostBatch = dict[str, np.ndarray]  # [rows, seq] arrays in host memory


def empty_batch(rows: int, seq_len: int, pad_id: int) -> HostBatch:
    return {
        "inputs": np.full((rows, seq_len), pad_id, np.int32),
        "targets": np.full((rows, seq_len), pad_id, np.int32),
        "weights": np.zeros((rows, seq_len), np.float32),
        "positions": np.zeros((rows, seq_len), np.int32),
        "segment_ids": np.zeros((rows, seq_len), np.int32),
    }


def place(
    batch: HostBatch, row: int, start: int, segment: int, example: Encoded, loss_on_prompt: bool
) -> int:
    """Write `example` into `batch[row]` at `start`; returns the tokens used.

    An example of L tokens gives L-1 (input, target) pairs: input ids[:-1], target ids[1:],
    and a target counts in the loss when it is a completion token.
    """
    seq_len = batch["inputs"].shape[1]
    n = min(len(example) - 1, seq_len - start)
    end = start + n
    batch["inputs"][row, start:end] = example.ids[:n]
    batch["targets"][row, start:end] = example.ids[1 : n + 1]
    counted = np.ones(n, bool) if loss_on_prompt else example.mask[1 : n + 1]
    batch["weights"][row, start:end] = counted.astype(np.float32)
    batch["positions"][row, start:end] = np.arange(n, dtype=np.int32)
    batch["segment_ids"][row, start:end] = segment
    return n


@dataclass
class IteratorState:
    """Where the training iterator stands: enough to continue exactly after a restart."""

    seed: int
    epoch: int = 0
    cursor: int = 0  # index into this epoch's permutation of the examples

    def to_dict(self) -> dict[str, int]:
        return {"seed": self.seed, "epoch": self.epoch, "cursor": self.cursor}

    @classmethod
    def from_dict(cls, d: dict[str, int]) -> IteratorState:
        return cls(seed=int(d["seed"]), epoch=int(d["epoch"]), cursor=int(d["cursor"]))


class BatchIterator:
    """Endless batches over `examples`, reshuffled each epoch by (seed, epoch)."""

    def __init__(
        self,
        examples: Sequence[Encoded],
        *,
        rows: int,
        seq_len: int,
        pad_id: int,
        pack: bool,
        loss_on_prompt: bool,
        seed: int,
        shuffle: bool = True,
        one_pass: bool = False,
    ) -> None:
        usable = [e for e in examples if len(e) >= 2]
        if not usable:
            raise ValueError("no example has the two tokens needed for one training target")
        self.examples = usable
        self.rows, self.seq_len, self.pad_id = rows, seq_len, pad_id
        self.pack, self.loss_on_prompt, self.shuffle = pack, loss_on_prompt, shuffle
        self.one_pass = one_pass  # stop after the first epoch instead of reshuffling
        self.state = IteratorState(seed=seed)
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> np.ndarray:
        n = len(self.examples)
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng([self.state.seed, epoch]).permutation(n)

    def _peek(self) -> Encoded:
        return self.examples[int(self._order[self.state.cursor])]

    def _advance(self) -> None:
        self.state.cursor += 1
        if self.state.cursor == len(self._order):
            self.state.epoch += 1
            self.state.cursor = 0
            self._order = self._permutation(self.state.epoch)

    def restore(self, state: IteratorState) -> None:
        self.state = IteratorState(state.seed, state.epoch, state.cursor)
        self._order = self._permutation(state.epoch)

    @property
    def exhausted(self) -> bool:
        return self.one_pass and self.state.epoch > 0

    def _fill_row(self, batch: HostBatch, row: int) -> None:
        start, segment = 0, 1
        while start < self.seq_len and not self.exhausted:
            example = self._peek()
            fits = len(example) - 1 <= self.seq_len - start
            if segment > 1 and not fits:
                return  # the next row starts with this example
            start += place(batch, row, start, segment, example, self.loss_on_prompt)
            self._advance()
            segment += 1
            if not self.pack:
                return

    def __iter__(self) -> BatchIterator:
        return self

    def __next__(self) -> HostBatch:
        batch = empty_batch(self.rows, self.seq_len, self.pad_id)
        for row in range(self.rows):
            self._fill_row(batch, row)
        return batch


def fixed_batches(
    examples: Sequence[Encoded],
    *,
    count: int,
    rows: int,
    seq_len: int,
    pad_id: int,
    pack: bool,
    loss_on_prompt: bool,
) -> list[HostBatch]:
    """Up to `count` batches, the same every time (eval): file order, at most one pass."""
    it = BatchIterator(
        examples,
        rows=rows,
        seq_len=seq_len,
        pad_id=pad_id,
        pack=pack,
        loss_on_prompt=loss_on_prompt,
        seed=0,
        shuffle=False,
        one_pass=True,
    )
    batches: list[HostBatch] = []
    while len(batches) < count and not it.exhausted:
        batches.append(next(it))
    return batches
