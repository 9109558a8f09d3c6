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

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tunixrt.data.examples import Examples, as_examples, usable
from tunixrt.data.schema import DataError
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
    cursor: int = 0  # index into this epoch's order of the examples
    # What the order is of (tunixrt.data.sources.data_key: files, tokenizer, mixture);
    # None where unknown (generated traces, checkpoints from before it was recorded)
    data_key: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "epoch": self.epoch,
            "cursor": self.cursor,
            "data_key": self.data_key,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IteratorState:
        key = d.get("data_key")
        return cls(
            int(d["seed"]), int(d["epoch"]), int(d["cursor"]), None if key is None else str(key)
        )


# The examples of one epoch, in the order they are read: (seed, epoch) -> indices.
Order = Callable[[int, int], np.ndarray]
Shard = tuple[int, int]  # (process index, process count)


class BatchIterator:
    """Endless batches over `examples`, reshuffled each epoch by (seed, epoch), or in
    the epoch order `order` gives (a mixture of files; tunixrt.data.sources).

    With `shard=(p, P)` the iterator plans every global batch of `rows` rows from the
    example lengths alone and fills only rows [p*rows/P, (p+1)*rows/P): the P processes
    of a run read disjoint rows that together are the one-process batch."""

    def __init__(
        self,
        examples: Sequence[Encoded] | Examples,
        *,
        rows: int,
        seq_len: int,
        pad_id: int,
        pack: bool,
        loss_on_prompt: bool,
        seed: int,
        shuffle: bool = True,
        one_pass: bool = False,
        order: Order | None = None,
        shard: Shard = (0, 1),
        data_key: str | None = None,
    ) -> None:
        given = as_examples(examples)
        self.examples = usable(given)
        if not len(self.examples):
            raise ValueError("no example has the two tokens needed for one training target")
        if order is not None and self.examples is not given:
            raise ValueError("an order is of usable examples only (tunixrt.data.examples.usable)")
        self._lengths = self.examples.lengths
        self.rows, self.seq_len, self.pad_id = rows, seq_len, pad_id
        self.pack, self.loss_on_prompt, self.shuffle = pack, loss_on_prompt, shuffle
        self.one_pass = one_pass  # stop after the first epoch instead of reshuffling
        self._own = _own_rows(rows, shard)
        # non-padding positions of the last global batch, every process's rows included
        self.positions = 0
        self._order_of = order
        self.state = IteratorState(seed=seed, data_key=data_key)
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> np.ndarray:
        if self._order_of is not None:
            return self._order_of(self.state.seed, epoch)
        n = len(self.examples)
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng([self.state.seed, epoch]).permutation(n)

    def _advance(self) -> None:
        self.state.cursor += 1
        if self.state.cursor == len(self._order):
            self.state.epoch += 1
            self.state.cursor = 0
            self._order = self._permutation(self.state.epoch)

    def restore(self, state: IteratorState) -> None:
        if state.data_key and self.state.data_key and state.data_key != self.state.data_key:
            raise DataError(
                "the training data differ from the checkpoint's (a data file or the files "
                "dataset.path matches, the tokenizer, dataset.families, the held-out split or "
                f"dataset.mixture changed: data key {state.data_key[:12]} then, "
                f"{self.state.data_key[:12]} now); the run cannot continue exactly"
            )
        self.state = IteratorState(state.seed, state.epoch, state.cursor, self.state.data_key)
        self._order = self._permutation(state.epoch)

    @property
    def exhausted(self) -> bool:
        return self.one_pass and self.state.epoch > 0

    def _plan_row(self) -> list[int]:
        """The examples the next row holds (indices into `examples`), advancing past
        them; only their lengths are read. Adds the row's non-padding positions to
        `positions`."""
        picked: list[int] = []
        start = 0
        while start < self.seq_len and not self.exhausted:
            i = int(self._order[self.state.cursor])
            wanted = int(self._lengths[i]) - 1  # (input, target) pairs of example i
            if picked and wanted > self.seq_len - start:
                break  # the next row starts with this example
            picked.append(i)
            start += min(wanted, self.seq_len - start)
            self._advance()
            if not self.pack:
                break
        self.positions += start
        return picked

    def _fill_row(self, batch: HostBatch, row: int, picked: list[int]) -> None:
        start = 0
        for segment, i in enumerate(picked, start=1):
            start += place(batch, row, start, segment, self.examples[i], self.loss_on_prompt)

    def __iter__(self) -> BatchIterator:
        return self

    def __next__(self) -> HostBatch:
        self.positions = 0
        plans = [self._plan_row() for _ in range(self.rows)]
        own = plans[self._own]
        batch = empty_batch(len(own), self.seq_len, self.pad_id)
        for row, picked in enumerate(own):
            self._fill_row(batch, row, picked)
        return batch


def _own_rows(rows: int, shard: Shard) -> slice:
    index, count = shard
    if count < 1 or not 0 <= index < count or rows % count:
        raise ValueError(f"{rows} rows cannot be split as shard {index} of {count} processes")
    per = rows // count
    return slice(index * per, (index + 1) * per)


def fixed_batches(
    examples: Sequence[Encoded] | Examples,
    *,
    count: int,
    rows: int,
    seq_len: int,
    pad_id: int,
    pack: bool,
    loss_on_prompt: bool,
    shard: Shard = (0, 1),
) -> list[HostBatch]:
    """Up to `count` batches, the same every time (eval): file order, at most one pass;
    of each, this process's rows (`shard`, as BatchIterator)."""
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
        shard=shard,
    )
    batches: list[HostBatch] = []
    while len(batches) < count and not it.exhausted:
        batches.append(next(it))
    return batches
