"""Event files written by TensorBoardWriter, read back with TensorBoard's own reader."""

from __future__ import annotations

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util.tensor_util import make_ndarray

from tunixrt.tensorboard import TensorBoardWriter


def read_scalars(logdir) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(logdir), size_guidance={"tensors": 0})
    acc.Reload()
    out = {}
    for tag in acc.Tags()["tensors"]:
        events = acc.Tensors(tag)
        if events and events[0].tensor_proto.dtype != 7:  # 7 = DT_STRING (text summaries)
            out[tag] = [(e.step, float(make_ndarray(e.tensor_proto))) for e in events]
    return out


def test_scalars_and_text_round_trip(tmp_path):
    w = TensorBoardWriter(tmp_path)
    for step in (1, 2, 3):
        w.write_scalars(step, {"train/loss": 1.0 / step, "train/lr": 0.1})
    w.write_text(0, "config", "seed: 0")
    w.close()
    scalars = read_scalars(tmp_path)
    assert [s for s, _ in scalars["train/loss"]] == [1, 2, 3]
    assert [v for _, v in scalars["train/loss"]] == [1.0, 0.5, float(__import__("numpy").float32(1 / 3))]
    acc = EventAccumulator(str(tmp_path), size_guidance={"tensors": 0})
    acc.Reload()
    (text,) = acc.Tensors("config")
    assert make_ndarray(text.tensor_proto).item() == b"seed: 0"
