"""TensorBoard event files written with the `tensorboard` package's own writer and
summary protos (no TensorFlow needed); TensorBoard reads them as scalars and text."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.plugins.scalar.summary_v2 import scalar_pb
from tensorboard.plugins.text.summary_v2 import text_pb
from tensorboard.summary.writer.event_file_writer import EventFileWriter


class TensorBoardWriter:
    """A `MetricWriter` writing one event file in `logdir`."""

    def __init__(self, logdir: str | Path, flush_secs: float = 10.0) -> None:
        Path(logdir).mkdir(parents=True, exist_ok=True)
        self.logdir = Path(logdir)
        self._writer = EventFileWriter(str(logdir), flush_secs=flush_secs)

    def _add(self, step: int, summary: object) -> None:
        self._writer.add_event(Event(wall_time=time.time(), step=step, summary=summary))

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        for tag, value in scalars.items():
            self._add(step, scalar_pb(tag, float(value)))

    def write_text(self, step: int, tag: str, text: str) -> None:
        self._add(step, text_pb(tag, text))

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def truncate_after(logdir: str | Path, last_step: int) -> int:
    """Drop every event logged after `last_step`, rewriting the folder's event files
    into one; returns the number of events dropped.

    A run resumed from the checkpoint of `last_step` logs the steps after it again;
    without this, TensorBoard would show those steps twice.
    """
    files = sorted(Path(logdir).glob("events.out.tfevents.*"))
    events = [e for f in files for e in EventFileLoader(str(f)).Load()]
    kept = [e for e in events if e.step <= last_step and not e.HasField("file_version")]
    dropped = sum(1 for e in events if e.step > last_step)
    if not dropped:
        return 0
    writer = EventFileWriter(str(logdir), filename_suffix=".kept")
    for event in kept:
        writer.add_event(event)
    writer.close()
    for f in files:
        f.unlink()
    return dropped
