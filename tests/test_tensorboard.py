"""Event files written by TensorBoardWriter, read back with TensorBoard's own reader."""

from __future__ import annotations

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util.tensor_util import make_ndarray

from tests.helpers.tensorboard import read_scalars
from tunixrt.tensorboard import TensorBoardWriter


def test_scalars_and_text_round_trip(tmp_path):
    w = TensorBoardWriter(tmp_path)
    for step in (1, 2, 3):
        w.write_scalars(step, {"train/loss": 1.0 / step, "train/lr": 0.1})
    w.write_text(0, "config", "seed: 0")
    w.close()
    scalars = read_scalars(tmp_path)
    assert [s for s, _ in scalars["train/loss"]] == [1, 2, 3]
    assert [v for _, v in scalars["train/loss"]] == pytest.approx([1.0, 0.5, 1 / 3], rel=1e-6)
    acc = EventAccumulator(str(tmp_path), size_guidance={"tensors": 0})
    acc.Reload()
    (text,) = acc.Tensors("config")
    assert make_ndarray(text.tensor_proto).item() == b"seed: 0"


def test_truncate_after_drops_later_steps_and_keeps_the_rest(tmp_path):
    from tunixrt.tensorboard import truncate_after

    first = TensorBoardWriter(tmp_path)
    first.write_text(0, "config", "seed: 0")
    for step in range(1, 8):
        first.write_scalars(step, {"train/loss": float(step)})
    first.close()
    assert truncate_after(tmp_path, 4) == 3
    assert truncate_after(tmp_path, 4) == 0  # nothing left to drop
    second = TensorBoardWriter(tmp_path)  # the resumed run logs steps 5.. again
    for step in range(5, 9):
        second.write_scalars(step, {"train/loss": 10.0 * step})
    second.close()
    got = read_scalars(tmp_path)["train/loss"]
    assert got == [
        (1, 1.0),
        (2, 2.0),
        (3, 3.0),
        (4, 4.0),
        (5, 50.0),
        (6, 60.0),
        (7, 70.0),
        (8, 80.0),
    ]


def test_a_resumed_writer_sorts_after_the_kept_events_whatever_its_counter(tmp_path):
    """TensorBoard reads a folder's files in name order; a writer whose file name sorts
    before the kept events (its counter 10 after their 9) made readers drop steps 1-4."""
    from tensorboard.summary.writer import event_file_writer

    from tunixrt.tensorboard import truncate_after

    first = TensorBoardWriter(tmp_path)
    for step in range(1, 8):
        first.write_scalars(step, {"train/loss": float(step)})
    first.close()
    event_file_writer._global_uid._value = 9  # the next two writers get uids 9 and 10
    assert truncate_after(tmp_path, 4) == 3
    second = TensorBoardWriter(tmp_path)
    for step in range(5, 9):
        second.write_scalars(step, {"train/loss": 10.0 * step})
    second.close()
    got = read_scalars(tmp_path)["train/loss"]
    assert [s for s, _ in got] == list(range(1, 9))
