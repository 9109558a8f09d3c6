"""Training batches built ahead on a background thread, so the loop does not wait for
the host: packing, and reading the memory-mapped cache, overlap the device's step."""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import threading
import weakref

from tunixrt.data.batching import BatchIterator, HostBatch, IteratorState

_POLL_S = 0.1  # how often a producer blocked on a full queue checks for a stop


class Prefetcher:
    """Batches of `iterator`, at most `depth` built ahead. `state` is the iterator's
    state after the batches handed out so far, not after those still waiting, so a
    checkpoint resumes at the first batch the loop has not trained on."""

    def __init__(self, iterator: BatchIterator, depth: int = 2) -> None:
        self._it, self._depth = iterator, depth
        self.state = dataclasses.replace(iterator.state)
        self._queue: queue.Queue[tuple[HostBatch, IteratorState] | BaseException] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def iterator(self) -> BatchIterator:
        return self._it

    def _start(self) -> None:
        self._queue = queue.Queue(self._depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=_produce,
            args=(self._it, self._queue, self._stop),
            name="tunixrt-batches",
            daemon=True,
        )
        self._thread.start()
        # a Prefetcher dropped without close() stops its thread (which holds no reference
        # to the Prefetcher)
        weakref.finalize(self, self._stop.set)

    def __iter__(self) -> Prefetcher:
        return self

    def __next__(self) -> HostBatch:
        if self._thread is None:
            self._start()
        assert self._queue is not None
        item = self._queue.get()
        if isinstance(item, BaseException):
            self.close()
            raise item
        batch, self.state = item
        return batch

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


def _produce(
    it: BatchIterator,
    out: queue.Queue[tuple[HostBatch, IteratorState] | BaseException],
    stop: threading.Event,
) -> None:
    while not stop.is_set():
        item: tuple[HostBatch, IteratorState] | BaseException
        try:
            item = (next(it), dataclasses.replace(it.state))
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
