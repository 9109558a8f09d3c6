"""Training batches built ahead on a background thread, so the loop does not wait for
the host: packing, reading the memory-mapped cache and, once `place_with` names how,
putting each batch on the devices all overlap the device's step."""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from tunixrt.data.batching import BatchIterator, HostBatch, IteratorState

_POLL_S = 0.1  # how often a producer blocked on a full queue checks for a stop

# HostBatch -> what the step takes (device arrays); the data package knows no devices
Place = Callable[[HostBatch], Any]


@dataclasses.dataclass(frozen=True)
class Ready:
    """One batch as the loop takes it: the host arrays, what `place` made of them (the
    host batch itself without a place), and its real token counts."""

    host: HostBatch
    placed: Any
    # non-padding positions (segment_ids > 0) of the whole batch: in a multi-process
    # run, every process's rows (planned from the lengths each process knows)
    tokens: int
    loss_tokens: int  # positions whose target counts in the loss (weights > 0), own rows


def token_counts(batch: HostBatch) -> tuple[int, int]:
    """(non-padding, loss) positions of a batch."""
    return int(np.count_nonzero(batch["segment_ids"])), int(np.count_nonzero(batch["weights"]))


def _ready(batch: HostBatch, place: Place | None, positions: int) -> Ready:
    placed = batch if place is None else place(batch)
    return Ready(batch, placed, positions, token_counts(batch)[1])


_Item = tuple[Ready, IteratorState] | BaseException


class Prefetcher:
    """Batches of `iterator`, at most `depth` built (and placed) ahead. `state` is the
    iterator's state after the batches handed out so far, not after those still
    waiting, so a checkpoint resumes at the first batch the loop has not trained on."""

    def __init__(self, iterator: BatchIterator, depth: int = 2) -> None:
        self._it, self._depth = iterator, depth
        self.state = dataclasses.replace(iterator.state)
        self._place: Place | None = None
        self._queue: queue.Queue[_Item] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def iterator(self) -> BatchIterator:
        return self._it

    def place_with(self, place: Place | None) -> None:
        """Apply `place` to every batch on the thread (e.g. jax.device_put, so the copy
        to the devices overlaps the step too); batches built ahead without it are
        dropped and built again."""
        self.close()
        self._place = place

    def _start(self) -> None:
        self._queue = queue.Queue(self._depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=_produce,
            args=(self._it, self._place, self._queue, self._stop),
            name="tunixrt-batches",
            daemon=True,
        )
        self._thread.start()
        _stop_at_exit(self._stop, self._thread)
        # a Prefetcher dropped without close() stops its thread (which holds no reference
        # to the Prefetcher)
        weakref.finalize(self, self._stop.set)

    def __iter__(self) -> Prefetcher:
        return self

    def __next__(self) -> HostBatch:
        return self.next_ready().host

    def next_ready(self) -> Ready:
        """The next batch with its placed arrays and token counts."""
        if self._thread is None:
            self._start()
        assert self._queue is not None
        item = self._queue.get()
        if isinstance(item, BaseException):
            self.close()
            raise item
        ready, self.state = item
        return ready

    def restore(self, state: IteratorState) -> None:
        self.close()
        self._it.restore(state)
        self.state = dataclasses.replace(self._it.state)

    def close(self) -> None:
        """Stop the thread; batches it built ahead are dropped, and the iterator is left
        after them (`restore(self.state)` puts it back where the loop is)."""
        if self._thread is None:
            return
        self._stop.set()
        assert self._queue is not None
        while self._thread.is_alive():  # drain, so a producer blocked on put sees the stop
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=_POLL_S)
        self._thread, self._queue = None, None
        self._it.restore(self.state)


# Every producer thread started, with its stop event. Producers are daemon threads: one
# left running may still be placing a batch on the devices while the interpreter tears
# JAX down, which aborts the process ("exception not rethrown"). That holds for the
# thread of a Prefetcher already garbage-collected too, so the threads are kept here.
_LIVE: set[tuple[threading.Event, threading.Thread]] = set()
_HOOKED = False
_EXIT_S = 5.0  # how long exit waits for a producer to finish the batch it is building


def _stop_at_exit(stop: threading.Event, thread: threading.Thread) -> None:
    """Have exit stop and join `thread`. The first call registers the hook; atexit runs
    hooks last-in first-out, so it runs before those JAX registered when imported."""
    global _HOOKED
    if not _HOOKED:
        atexit.register(_stop_all)
        _HOOKED = True
    _LIVE.difference_update({p for p in _LIVE if not p[1].is_alive()})
    _LIVE.add((stop, thread))


def _stop_all() -> None:
    for stop, _ in _LIVE:
        stop.set()
    for _, thread in _LIVE:
        thread.join(_EXIT_S)
    _LIVE.clear()


def _produce(
    it: BatchIterator, place: Place | None, out: queue.Queue[_Item], stop: threading.Event
) -> None:
    while not stop.is_set():
        item: _Item
        try:
            item = (_ready(next(it), place, it.positions), dataclasses.replace(it.state))
        except BaseException as err:  # handed to the consumer, raised there
            item = err
        while not stop.is_set():
            try:
                out.put(item, timeout=_POLL_S)
                break
            except queue.Full:
                continue
        if isinstance(item, BaseException):
            return
