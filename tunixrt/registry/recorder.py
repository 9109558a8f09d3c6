"""`RunRecorder`: the writes of one run while it trains, and `RegistryWriter`, the
same as a `MetricWriter`.

Training must neither stop nor wait because the registry did. The calls training
makes (`log_metrics`, `checkpoint`, `evaluation`, `heartbeat`) put their rows in an
in-memory buffer and return; one writer thread per run does every database write,
taking whatever is pending into one transaction when a write is due: metric points
`write_every_s` after the previous write, checkpoints and evaluations at once, a bare
heartbeat every `heartbeat_every_s` (every `start_keepalive` interval while nothing
else is written).

A database that fails, or hangs until the engine's statement timeout (engine.py),
costs the training thread nothing: the rows stay buffered, one warning is logged,
writes are retried with a growing back-off, and an info line is logged once they go
through again. Besides the batch being written, the buffer holds at most
`max_pending` metric points; when full, the oldest points are dropped and counted
(`dropped`, and a warning). Checkpoints, evaluations and the run's status are never
dropped.
`finish` waits, up to a timeout, for the writer to write everything and the final
status, and returns False unless it did with nothing dropped. No database failure
raises from here.

Heartbeats carry the database server's time, not this host's (see queries.py, the
lost rule).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout

from tunixrt.registry.errors import RegistryError, describe
from tunixrt.registry.evaluations import EvaluationRows, evaluation_rows
from tunixrt.registry.info import json_safe
from tunixrt.registry.models import (
    FINAL_STATUSES,
    Checkpoint,
    EvalPrediction,
    Evaluation,
    MetricLatest,
    MetricPoint,
    Run,
    RunStatus,
    server_now,
    utcnow,
)
from tunixrt.registry.urls import mask_text

if TYPE_CHECKING:
    from tunixrt.evaluation.runner import EvalReport

log = logging.getLogger(__name__)

_TRANSIENT = (OperationalError, InterfaceError, DisconnectionError, PoolTimeout)

Note = tuple[int, str, tuple[Any, ...]]  # a log record to emit once the lock is released


def _transient(err: Exception) -> bool:
    if isinstance(err, _TRANSIENT):
        return True
    return isinstance(err, DBAPIError) and err.connection_invalidated


def _upsert(conn: Connection, model: Any, rows: list[dict], keys: tuple[str, ...]) -> None:
    """INSERT ... ON CONFLICT (keys) DO UPDATE: a retried or re-logged row overwrites."""
    if not rows:
        return
    name = conn.dialect.name
    if name not in ("sqlite", "postgresql"):
        for row in rows:
            where = [getattr(model, k) == row[k] for k in keys]
            if conn.execute(update(model).where(*where).values(**row)).rowcount == 0:
                conn.execute(model.__table__.insert().values(**row))
        return
    stmt = (sqlite_insert if name == "sqlite" else pg_insert)(model)
    changed = {c: stmt.excluded[c] for c in rows[0] if c not in keys}
    conn.execute(stmt.on_conflict_do_update(index_elements=list(keys), set_=changed), rows)


@dataclass
class _Batch:
    """Rows waiting for one transaction, keyed so that a re-logged row replaces the
    earlier one. Points are in the order logged, oldest first."""

    run: dict[str, Any] = field(default_factory=dict)  # columns of the run row to set
    points: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    latest: dict[str, dict[str, Any]] = field(default_factory=dict)
    checkpoints: dict[int, dict[str, Any]] = field(default_factory=dict)
    evaluations: dict[str, EvaluationRows] = field(default_factory=dict)  # by id
    serves: int = 0  # flush requests made before the writer took it

    @property
    def size(self) -> int:
        rows = len(self.points) + len(self.checkpoints) + len(self.evaluations)
        return rows + (1 if self.run else 0)

    def add_point(self, row: dict[str, Any]) -> None:
        key = (row["name"], row["step"])
        self.points.pop(key, None)  # a re-logged step counts as new: it moves to the end
        self.points[key] = row
        self.latest[row["name"]] = row

    def under(self, newer: _Batch) -> _Batch:
        """These rows with `newer`'s over them: a failed batch put back before what
        was logged while it was being written."""
        merged = _Batch(
            run={**self.run, **newer.run},
            points=dict(self.points),
            latest={**self.latest, **newer.latest},
            checkpoints={**self.checkpoints, **newer.checkpoints},
            evaluations={**self.evaluations, **newer.evaluations},
        )
        for key, row in newer.points.items():
            merged.points.pop(key, None)
            merged.points[key] = row
        return merged

    def drop_oldest(self, keep: int) -> int:
        """Keep the newest `keep` points; returns how many were dropped. The latest
        values stay: they are still the last ones logged."""
        excess = max(len(self.points) - keep, 0)
        for key in list(islice(self.points, excess)):
            del self.points[key]
        return excess


class RunRecorder:
    """Writes for run `id`, done by its writer thread. Safe to call from several
    threads; no call but `flush` and `finish` ever waits for the database."""

    def __init__(
        self,
        engine: Engine,
        run_id: str,
        *,
        url: str = "",
        write_every_s: float = 1.0,
        heartbeat_every_s: float = 10.0,
        max_pending: int = 100_000,
        max_backoff_s: float = 60.0,
    ) -> None:
        self.id = run_id
        self._engine = engine
        self._url = url  # masked, for messages
        self._write_every_s = write_every_s
        self._heartbeat_every_s = heartbeat_every_s
        self._max_pending = max_pending
        self._max_backoff_s = max_backoff_s
        # Guards every attribute below; held to touch them only, never across I/O.
        self._cond = threading.Condition(threading.Lock())
        self._pending = _Batch()
        self._inflight: _Batch | None = None
        self._thread: threading.Thread | None = None
        self._keepalive_s: float | None = None
        self._last_write = time.monotonic()
        self._failing = False
        self._backoff_s = 0.0
        self._retry_at = 0.0
        self._dropped = 0  # metric points dropped from a full buffer, ever
        self._dropping = False  # points dropped since the last write that went through
        self._rejected = 0  # writes refused (by the database, or unstorable), not retried
        self._requested = 0  # flush and finish requests made
        self._served = 0  # requests whose batch the writer has tried
        self._last_ok = True  # how the last attempt went
        self._finished = False
        self._abandoned = False  # finish gave up waiting: the writer stops

    # -- what training calls ------------------------------------------------------------

    def heartbeat(self, step: int | None = None) -> None:
        """Record that the run is alive (at `step`); written with the next write, at
        the latest `heartbeat_every_s` after the previous one."""
        with self._cond:
            self._touch(step)
            self._wake()

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        """Append to the history and update the latest value of each metric."""
        now = utcnow()
        rows = [
            {"run_id": self.id, "name": name, "step": step, "value": _float(value), "time": now}
            for name, value in metrics.items()
        ]
        with self._cond:
            for row in rows:
                self._pending.add_point(row)
            self._touch(step)
            notes = self._bound()
            self._wake()
        _emit(notes)

    def checkpoint(self, step: int, path: str, metrics: Mapping[str, float] | None = None) -> None:
        """Record a saved checkpoint; the writer writes it at once."""
        row = {
            "run_id": self.id,
            "step": step,
            "path": str(path),
            "metrics": json_safe(dict(metrics or {})),
            "time": utcnow(),
        }
        with self._cond:
            self._pending.checkpoints[step] = row
            self._touch(step)
            self._wake()

    def evaluation(self, report: EvalReport, target: str | Path) -> str | None:
        """Record `report`, an evaluation of `target` (the checkpoint folder evaluated),
        with its predictions; the writer writes it at once, in one transaction. Returns
        the evaluation's id, or None when the registry cannot hold the report (a
        warning says why, and `finish` will return False)."""
        try:
            rows = evaluation_rows(report, run_id=self.id, target=target)
        except RegistryError as err:
            with self._cond:
                self._rejected += 1
            log.warning("registry %s: evaluation of %s not recorded: %s", self._url, target, err)
            return None
        with self._cond:
            self._pending.evaluations[rows.id] = rows
            self._wake()
        return rows.id

    def finish(
        self,
        status: str,
        error: str | None = None,
        last_step: int | None = None,
        *,
        timeout_s: float = 30.0,
    ) -> bool:
        """Close the run as completed, failed (with `error`) or preempted: wait up to
        `timeout_s` for the writer to write everything pending and the final status.
        False when that did not happen in time, or when metric points were dropped or
        writes refused on the way: the registry's record of the run is incomplete."""
        final = RunStatus(status)
        if final not in FINAL_STATUSES:
            raise ValueError(f"finish status must be completed, failed or preempted: {final}")
        with self._cond:
            self._finished, self._keepalive_s = True, None
            self._touch(last_step)
            self._pending.run.update(
                status=final.value, ended_at=server_now(), error=_masked(error)
            )
            written = self._wait_written(timeout_s)
            if not written:
                self._abandoned = True  # the run is over: no retries after this attempt
                self._cond.notify_all()
            dropped, rejected = self._dropped, self._rejected
        _emit(self._end_notes(final, written, dropped))
        return written and not dropped and not rejected

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Have the writer write what is pending now, ignoring the back-off, and wait up
        to `timeout_s` for it. True when what was logged before the call is written."""
        with self._cond:
            if self._pending.size == 0 and self._inflight is None:
                return True
            target = self._request()
            if target is None:
                return False
            done = self._cond.wait_for(lambda: self._served >= target, timeout_s)
            return done and self._last_ok

    @property
    def pending(self) -> int:
        """Writes not yet in the database: metric points, checkpoints, evaluations and
        one for the run row, buffered or being written."""
        with self._cond:
            inflight = 0 if self._inflight is None else self._inflight.size
            return self._pending.size + inflight

    @property
    def dropped(self) -> int:
        """Metric points dropped because the buffer was full."""
        with self._cond:
            return self._dropped

    def start_keepalive(self, interval_s: float = 30.0) -> None:
        """Heartbeat at least every `interval_s`, so a long compile or evaluation never
        looks like a lost run. Stopped by `finish` or `stop_keepalive`."""
        with self._cond:
            if not self._finished:
                self._keepalive_s = interval_s
                self._wake()

    def stop_keepalive(self) -> None:
        """Heartbeat only with other writes again."""
        with self._cond:
            self._keepalive_s = None
            self._cond.notify_all()

    # -- the callers' side (self._cond held) --------------------------------------------

    def _touch(self, step: int | None) -> None:
        if not self._finished:
            # Also revives a row that a reader marked lost during a long stall.
            self._pending.run["status"] = RunStatus.running.value
        if step is not None:
            self._pending.run["last_step"] = step

    def _bound(self) -> list[Note]:
        """Drop the oldest points beyond `max_pending`; a warning when dropping starts."""
        dropped = self._pending.drop_oldest(self._max_pending)
        if not dropped:
            return []
        self._dropped += dropped
        first, self._dropping = not self._dropping, True
        if not first:
            return []
        message = (
            "registry %s: %d metric points of run %s wait to be written; the oldest are "
            "dropped from now on (RunRecorder.dropped counts them)"
        )
        return [(logging.WARNING, message, (self._url, self._max_pending, self.id))]

    def _wake(self) -> None:
        if self._start_writer():
            self._cond.notify_all()

    def _start_writer(self) -> bool:
        """Start the writer thread unless it runs; False once `finish` gave up on it."""
        if self._abandoned:
            return False
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._write_loop, name=f"registry-writer-{self.id[:8]}", daemon=True
            )
            self._thread.start()
        return True

    def _request(self) -> int | None:
        """Ask for a write now; the request's number, None without a writer."""
        if not self._start_writer():
            return None
        self._requested += 1
        self._cond.notify_all()
        return self._requested

    def _wait_written(self, timeout_s: float) -> bool:
        target = self._request()
        if target is None:
            return False
        return self._cond.wait_for(
            lambda: self._served >= target and self._pending.size == 0 and self._inflight is None,
            timeout_s,
        )

    def _end_notes(self, status: RunStatus, written: bool, dropped: int) -> list[Note]:
        notes: list[Note] = []
        if not written:
            message = (
                "registry %s: the final state of run %s (%s) was not recorded; it will show as lost"
            )
            notes.append((logging.WARNING, message, (self._url, self.id, status.value)))
        if dropped:
            message = (
                "registry %s: %d metric points of run %s were dropped (buffer of %d points full)"
            )
            notes.append(
                (logging.WARNING, message, (self._url, dropped, self.id, self._max_pending))
            )
        return notes

    # -- the writer thread --------------------------------------------------------------

    def _write_loop(self) -> None:
        try:
            while (batch := self._next_batch()) is not None:
                self._settle(batch, self._write(batch))
        finally:
            with self._cond:
                # After an unexpected error, so that the next call starts a new writer.
                if self._thread is threading.current_thread():
                    self._thread = None

    def _next_batch(self) -> _Batch | None:
        """Wait until a write is due and take what is pending; None when the writer is
        done (the run finished with nothing left, or finish gave up waiting)."""
        with self._cond:
            while not self._abandoned:
                due = self._due_in()
                if due is not None and due <= 0:
                    return self._take()
                if due is None and self._finished:
                    break
                self._cond.wait(due)
            self._thread = None
            return None

    def _due_in(self) -> float | None:
        """Seconds until the next write is due; None when none is."""
        now = time.monotonic()
        if self._requested > self._served:
            return 0.0
        if self._failing:
            return self._retry_at - now
        if self._pending.checkpoints or self._pending.evaluations:
            return 0.0
        if self._pending.points:
            return self._last_write + self._write_every_s - now
        if self._pending.run:
            return self._last_write + self._heartbeat_every_s - now
        if self._keepalive_s is not None:
            return self._last_write + self._keepalive_s - now
        return None

    def _take(self) -> _Batch:
        self._touch(None)  # every write is a heartbeat
        batch, self._pending = self._pending, _Batch()
        batch.serves, self._inflight = self._requested, batch
        self._last_write = time.monotonic()
        return batch

    def _write(self, batch: _Batch) -> Exception | None:
        """One transaction for `batch`; the error it raised, if any."""
        try:
            with self._engine.begin() as conn:
                run = {**batch.run, "heartbeat_at": server_now()}
                conn.execute(update(Run).where(Run.id == self.id).values(**run))
                _upsert(conn, MetricPoint, list(batch.points.values()), ("run_id", "name", "step"))
                _upsert(conn, MetricLatest, list(batch.latest.values()), ("run_id", "name"))
                _upsert(conn, Checkpoint, list(batch.checkpoints.values()), ("run_id", "step"))
                _write_evaluations(conn, list(batch.evaluations.values()))
        except Exception as err:  # the writer must outlive any error; _settle sorts them
            return err
        return None

    def _settle(self, batch: _Batch, err: Exception | None) -> None:
        with self._cond:
            self._inflight = None
            self._last_ok = err is None
            if err is None:
                notes = self._written(batch)
            elif _transient(err):
                notes = self._failed(batch, err)
            else:
                notes = self._refused(batch, err)
        _emit(notes)
        with self._cond:
            # Only now, so that a caller of flush or finish finds the attempt logged.
            self._served = max(self._served, batch.serves)
            self._cond.notify_all()

    def _written(self, batch: _Batch) -> list[Note]:
        notes: list[Note] = []
        if self._failing:
            message = "registry %s reachable again: wrote %d pending metric points of run %s"
            notes.append((logging.INFO, message, (self._url, len(batch.points), self.id)))
            self._failing, self._backoff_s = False, 0.0
        if self._dropping:
            message = (
                "registry %s: %d metric points of run %s dropped so far while it was slow "
                "or unreachable (buffer of %d points full)"
            )
            args = (self._url, self._dropped, self.id, self._max_pending)
            notes.append((logging.WARNING, message, args))
            self._dropping = False
        return notes

    def _failed(self, batch: _Batch, err: Exception) -> list[Note]:
        """Put `batch` back under what was logged since, and retry after a back-off."""
        self._pending = batch.under(self._pending)
        notes = self._bound()
        if self._failing:
            notes.append(
                (logging.DEBUG, "registry %s still unreachable: %s", (self._url, describe(err)))
            )
        else:
            message = (
                "registry %s unreachable (%s); training goes on, run %s's writes are kept "
                "in memory and retried"
            )
            notes.append((logging.WARNING, message, (self._url, describe(err), self.id)))
        self._failing = True
        self._backoff_s = min(max(2 * self._backoff_s, 1.0), self._max_backoff_s)
        self._retry_at = time.monotonic() + self._backoff_s
        return notes

    def _refused(self, batch: _Batch, err: Exception) -> list[Note]:
        """An error a retry would repeat (a constraint, a missing table): drop `batch`."""
        self._rejected += batch.size
        message = "registry %s rejected the writes of run %s (%s); %d pending writes dropped"
        return [(logging.WARNING, message, (self._url, self.id, describe(err), batch.size))]


def _write_evaluations(conn: Connection, evaluations: list[EvaluationRows]) -> None:
    """Upserts, like every other row: a batch retried after a commit whose answer was
    lost finds its rows there and writes them again."""
    _upsert(conn, Evaluation, [e.evaluation for e in evaluations], ("id",))
    rows = [row for e in evaluations for row in e.predictions]
    _upsert(conn, EvalPrediction, rows, ("evaluation_id", "item_id"))


class RegistryWriter:
    """A `MetricWriter` (tunixrt.writers) that records scalars in the registry."""

    def __init__(self, recorder: RunRecorder) -> None:
        self.recorder = recorder

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        self.recorder.log_metrics(step, scalars)

    def write_text(self, step: int, tag: str, text: str) -> None:
        """Text (the config, samples) belongs in TensorBoard; the run row has the config."""

    def flush(self) -> None:
        self.recorder.flush()

    def close(self) -> None:
        self.recorder.flush()


def _float(value: Any) -> float | None:
    value = float(value)
    return value if not math.isnan(value) else None


def _masked(error: str | None) -> str | None:
    return None if error is None else mask_text(error)


def _emit(notes: list[Note]) -> None:
    for level, message, args in notes:
        log.log(level, message, *args)
