"""Batches built ahead on a thread: the same batches, and a state that is that of the
batches handed out, not of those built ahead."""

from __future__ import annotations

import threading
import time

import jax
import numpy as np
import pytest

from tests.helpers.data import addition_traces
from tunixrt.data import BatchIterator, Rendered, TextTokenizer
from tunixrt.data.prefetch import Prefetcher


@pytest.fixture(scope="module")
def examples(small_tokenizer):
    tok = TextTokenizer.from_file(small_tokenizer)
    return tok, [
        tok.encode(Rendered(t["prompt"], "", t["final_answer"])) for t in addition_traces(40)
    ]


def iterator(examples) -> BatchIterator:
    tok, encoded = examples
    return BatchIterator(
        encoded, rows=2, seq_len=24, pad_id=tok.pad_id, pack=True, loss_on_prompt=False, seed=4
    )


def wait_until_full(p: Prefetcher) -> None:
    deadline = time.monotonic() + 10
    while p._queue is not None and not p._queue.full():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_same_batches_and_the_state_of_those_handed_out(examples):
    plain, ahead = iterator(examples), Prefetcher(iterator(examples), depth=3)
    for _ in range(25):  # crosses epochs
        np.testing.assert_array_equal(next(ahead)["inputs"], next(plain)["inputs"])
        wait_until_full(ahead)  # the thread is three batches further...
        assert ahead.state == plain.state  # ...but the state is the loop's
    assert plain.state.epoch >= 1


def test_restore_continues_exactly_where_the_state_was_saved(examples):
    ahead = Prefetcher(iterator(examples))
    for _ in range(7):
        next(ahead)
    wait_until_full(ahead)
    saved = ahead.state
    rest = [next(ahead)["inputs"] for _ in range(6)]
    resumed = Prefetcher(iterator(examples))
    resumed.restore(saved)
    for want in rest:
        np.testing.assert_array_equal(next(resumed)["inputs"], want)
    ahead.restore(saved)  # a running prefetcher is stopped and rewound
    np.testing.assert_array_equal(next(ahead)["inputs"], rest[0])


def test_close_stops_the_thread(examples):
    ahead = Prefetcher(iterator(examples))
    next(ahead)
    thread = ahead._thread
    assert thread is not None and thread.is_alive()
    ahead.close()
    assert not thread.is_alive()
    state = ahead.state
    next(ahead)  # starts again from where the loop was
    plain = iterator(examples)
    plain.restore(state)
    next(plain)
    assert ahead.state == plain.state


def test_an_error_building_a_batch_is_raised_in_the_loop(examples):
    class Broken(BatchIterator):
        def __next__(self):
            raise RuntimeError("bad batch")

    tok, encoded = examples
    broken = Broken(
        encoded, rows=2, seq_len=24, pad_id=tok.pad_id, pack=True, loss_on_prompt=False, seed=0
    )
    ahead = Prefetcher(broken)
    with pytest.raises(RuntimeError, match="bad batch"):
        next(ahead)
    assert ahead._thread is None  # close() returns once the thread has ended


def test_batches_are_placed_on_the_thread_and_counted(examples):
    threads = set()

    def place(batch):
        threads.add(threading.current_thread().name)
        return {k: jax.device_put(v) for k, v in batch.items()}

    plain, ahead = iterator(examples), Prefetcher(iterator(examples), depth=3)
    next(plain), next(ahead)
    wait_until_full(ahead)
    ahead.place_with(place)  # the three built ahead unplaced are dropped, not skipped
    for _ in range(12):
        want, ready = next(plain), ahead.next_ready()
        assert isinstance(ready.placed["inputs"], jax.Array)
        for key, value in want.items():
            np.testing.assert_array_equal(np.asarray(ready.placed[key]), value)
        assert ready.tokens == int((want["segment_ids"] > 0).sum())
        assert ready.loss_tokens == int((want["weights"] > 0).sum())
        assert 0 < ready.loss_tokens < ready.tokens <= want["inputs"].size
        wait_until_full(ahead)
        assert ahead.state == plain.state
    assert threads == {"tunixrt-batches"}
