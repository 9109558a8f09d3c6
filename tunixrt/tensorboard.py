"""TensorBoard event files written with the `tensorboard` package's own writer and
summary protos (no TensorFlow needed); TensorBoard reads them as scalars, text and
HParams records."""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from pathlib import Path

from google.protobuf import struct_pb2
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.plugins.scalar.summary_v2 import scalar_pb
from tensorboard.plugins.text.summary_v2 import text_pb
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from tunixrt.files import recover_folder, replace_folder


class TensorBoardWriter:
    """A `MetricWriter` writing one event file in `logdir`."""

    def __init__(self, logdir: str | Path, flush_secs: float = 10.0) -> None:
        recover_folder(Path(logdir))  # a rewrite (`truncate_after`) cut short by a kill
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

    def write_hparams(self, hparams: Mapping[str, HParamValue], metrics: list[str]) -> None:
        for summary in hparams_summaries(hparams, metrics):
            self._add(0, summary)

    def write_session_end(self, completed: bool) -> None:
        self._add(0, session_end_summary(completed))

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def truncate_after(logdir: str | Path, last_step: int) -> int:
    """Drop every event logged after `last_step`, rewriting the folder's event files
    into one; returns the number of events dropped.

    A run resumed from the checkpoint of `last_step` logs the steps after it again;
    without this, TensorBoard would show those steps twice. The rewritten folder is
    built beside the old one and swapped in, so a kill at any point loses nothing.
    """
    logdir = Path(logdir)
    recover_folder(logdir)
    files = sorted(logdir.glob(f"{_PREFIX}*"))
    events = [e for f in files for e in EventFileLoader(str(f)).Load()]
    kept = [e for e in events if e.step <= last_step and not e.HasField("file_version")]
    dropped = sum(1 for e in events if e.step > last_step)
    if not dropped:
        return 0
    new = logdir.with_name(logdir.name + ".new")
    shutil.rmtree(new, ignore_errors=True)
    writer = EventFileWriter(str(new))
    for event in kept:
        writer.add_event(event)
    writer.close()
    (written,) = new.iterdir()
    # Readers go through a folder's files in name order and take a step lower than one
    # already read for a restart, dropping what came before. Named with a time before
    # the first original file's, the kept events sort ahead of every file a resumed
    # writer creates, whatever the writers' counters and the clock say.
    written.rename(new / f"{_PREFIX}{_started(files) - 1:010d}.kept")
    replace_folder(new, logdir)
    return dropped


_PREFIX = "events.out.tfevents."


def _started(files: list[Path]) -> int:
    """The earliest creation time (seconds) in event file names: PREFIX + time + ..."""
    times = [f.name[len(_PREFIX) :].split(".", 1)[0] for f in files]
    return min((int(t) for t in times if t.isdigit()), default=1)


HParamValue = str | float | int | bool | None


def _hparams_summary(tag: str, data: plugin_data_pb2.HParamsPluginData) -> Summary:
    data.version = hparams_metadata.PLUGIN_DATA_VERSION
    summary = Summary()
    summary.value.add(tag=tag, metadata=hparams_metadata.create_summary_metadata(data))
    return summary


def _value(v: HParamValue) -> struct_pb2.Value:
    if isinstance(v, bool):
        return struct_pb2.Value(bool_value=v)
    if isinstance(v, int | float):
        return struct_pb2.Value(number_value=float(v))
    return struct_pb2.Value(string_value="null" if v is None else str(v))


def hparams_summaries(hparams: Mapping[str, HParamValue], metrics: list[str]) -> list[Summary]:
    """The HParams plugin's experiment (hyper-parameter names, declared metrics) and
    session start (this run's values), written into the run's own event folder so that
    `tensorboard --logdir SWEEP` tabulates every run without extra runs."""
    experiment = api_pb2.Experiment(
        hparam_infos=[api_pb2.HParamInfo(name=k) for k in hparams],
        metric_infos=[api_pb2.MetricInfo(name=api_pb2.MetricName(tag=m)) for m in metrics],
    )
    start = plugin_data_pb2.SessionStartInfo(start_time_secs=time.time())
    for key, value in hparams.items():
        start.hparams[key].CopyFrom(_value(value))
    return [
        _hparams_summary(
            hparams_metadata.EXPERIMENT_TAG,
            plugin_data_pb2.HParamsPluginData(experiment=experiment),
        ),
        _hparams_summary(
            hparams_metadata.SESSION_START_INFO_TAG,
            plugin_data_pb2.HParamsPluginData(session_start_info=start),
        ),
    ]


def session_end_summary(completed: bool) -> Summary:
    status = api_pb2.STATUS_SUCCESS if completed else api_pb2.STATUS_FAILURE
    end = plugin_data_pb2.SessionEndInfo(status=status, end_time_secs=time.time())
    return _hparams_summary(
        hparams_metadata.SESSION_END_INFO_TAG,
        plugin_data_pb2.HParamsPluginData(session_end_info=end),
    )
