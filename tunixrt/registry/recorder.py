"""`RunRecorder`: the writes of one run while it trains, and `RegistryWriter`, the
same as a `MetricWriter`.

Training must not stop because the registry did: every write first lands in an
in-memory buffer, and the buffer is written in one transaction when due. If the
database is unreachable the buffer is kept (history bounded to `max_pending` points,
oldest dropped first), one warning is logged, writes are retried with a growing
back-off, and an info line is logged once they go through again. No database
failure raises from here.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Engine, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout

from tunixrt.registry.errors import describe
from tunixrt.registry.info import json_safe
from tunixrt.registry.models import Checkpoint, MetricLatest, MetricPoint, Run, RunStatus, utcnow
from tunixrt.registry.urls import mask_text

log = logging.getLogger(__name__)

_TRANSIENT = (OperationalError, InterfaceError, DisconnectionError, PoolTimeout)


def _transient(err: SQLAlchemyError) -> bool:
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


class RunRecorder:
    """Writes for run `id`. Safe to call from several threads."""

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
        self._lock = threading.RLock()
        self._run: dict[str, Any] = {}
        self._points: dict[tuple[str, int], dict] = {}  # insertion order = age
        self._latest: dict[str, dict] = {}
        self._checkpoints: dict[int, dict] = {}
        self._dropped = 0
        self._last_write = time.monotonic()
        self._failing = False
        self._backoff_s = 0.0
        self._retry_at = 0.0
        self._finished = False
        self._keepalive: tuple[threading.Thread, threading.Event] | None = None

    # -- what training calls ------------------------------------------------------------

    def heartbeat(self, step: int | None = None) -> None:
        """Record that the run is alive (at `step`); written at most every
        `heartbeat_every_s` unless other writes are due."""
        with self._lock:
            self._touch(step)
            self._write_if_due(self._heartbeat_every_s)

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        """Append to the history and update the latest value of each metric."""
        now = utcnow()
        with self._lock:
            for name, value in metrics.items():
                row = {"run_id": self.id, "name": name, "step": step, "value": _float(value)}
                row["time"] = now
                self._points.pop((name, step), None)
                self._points[(name, step)] = row
                self._latest[name] = row
            while len(self._points) > self._max_pending:
                del self._points[next(iter(self._points))]
                self._dropped += 1
            self._touch(step)
            self._write_if_due(self._write_every_s)

    def checkpoint(self, step: int, path: str, metrics: Mapping[str, float] | None = None) -> None:
        """Record a saved checkpoint; written at once."""
        with self._lock:
            self._checkpoints[step] = {
                "run_id": self.id,
                "step": step,
                "path": str(path),
                "metrics": json_safe(dict(metrics or {})),
                "time": utcnow(),
            }
            self._touch(step)
            self._write_if_due(0.0)

    def finish(self, status: str, error: str | None = None, last_step: int | None = None) -> bool:
        """Close the run as completed, failed (with `error`) or preempted, and write
        everything pending. Returns False if the registry could not take it."""
        status = RunStatus(status)
        if status not in (RunStatus.completed, RunStatus.failed, RunStatus.preempted):
            raise ValueError(f"finish status must be completed, failed or preempted: {status}")
        self.stop_keepalive()
        with self._lock:
            self._touch(last_step)
            self._run.update(status=status.value, ended_at=utcnow(), error=_masked(error))
            self._finished = True
            ok = self._write(force=True)
            if not ok:
                log.warning(
                    "registry %s: the final state of run %s (%s) was not recorded; "
                    "it will show as lost",
                    self._url,
                    self.id,
                    status.value,
                )
            return ok

    def flush(self) -> bool:
        """Write what is pending now, ignoring the back-off. True when nothing is left."""
        with self._lock:
            return self._write(force=True)

    @property
    def pending(self) -> int:
        """Buffered writes: metric points, checkpoints and one for the run row."""
        with self._lock:
            return len(self._points) + len(self._checkpoints) + (1 if self._run else 0)

    def start_keepalive(self, interval_s: float = 30.0) -> None:
        """Heartbeat from a daemon thread, so a long compile or evaluation never looks
        like a lost run. Stopped by `finish` or `stop_keepalive`."""
        if self._keepalive is not None:
            return
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(interval_s):
                with self._lock:
                    self._touch(None)
                    self._write_if_due(0.0)

        thread = threading.Thread(target=beat, name=f"registry-keepalive-{self.id[:8]}")
        thread.daemon = True
        self._keepalive = (thread, stop)
        thread.start()

    def stop_keepalive(self) -> None:
        if self._keepalive is not None:
            thread, stop = self._keepalive
            stop.set()
            thread.join(timeout=5.0)
            self._keepalive = None

    # -- buffering and writing ----------------------------------------------------------

    def _touch(self, step: int | None) -> None:
        self._run["heartbeat_at"] = utcnow()
        if not self._finished:
            # Also revives a row that a reader marked lost during a long stall.
            self._run["status"] = RunStatus.running.value
        if step is not None:
            self._run["last_step"] = step

    def _write_if_due(self, every_s: float) -> None:
        now = time.monotonic()
        if self._failing:
            if now >= self._retry_at:
                self._write(force=False)
        elif now - self._last_write >= every_s:
            self._write(force=False)

    def _write(self, *, force: bool) -> bool:
        if not (self._run or self._points or self._checkpoints):
            return True
        if self._failing and not force and time.monotonic() < self._retry_at:
            return False
        points, checkpoints = list(self._points.values()), list(self._checkpoints.values())
        try:
            with self._engine.begin() as conn:
                if self._run:
                    conn.execute(update(Run).where(Run.id == self.id).values(**self._run))
                _upsert(conn, MetricPoint, points, ("run_id", "name", "step"))
                _upsert(conn, MetricLatest, list(self._latest.values()), ("run_id", "name"))
                _upsert(conn, Checkpoint, checkpoints, ("run_id", "step"))
        except SQLAlchemyError as err:
            if not _transient(err):
                self._drop(err)
                return True
            self._failed(err)
            return False
        self._written(len(points))
        return True

    def _clear(self) -> None:
        self._run.clear()
        self._points.clear()
        self._latest.clear()
        self._checkpoints.clear()
        self._last_write = time.monotonic()

    def _written(self, n_points: int) -> None:
        self._clear()
        if self._failing:
            log.info(
                "registry %s reachable again: wrote %d pending metric points of run %s",
                self._url,
                n_points,
                self.id,
            )
            self._failing, self._backoff_s = False, 0.0
        if self._dropped:
            log.warning(
                "registry %s: %d metric points of run %s were dropped while it was "
                "unreachable (buffer of %d points full)",
                self._url,
                self._dropped,
                self.id,
                self._max_pending,
            )
            self._dropped = 0

    def _failed(self, err: SQLAlchemyError) -> None:
        if not self._failing:
            log.warning(
                "registry %s unreachable (%s); training goes on, run %s's writes are "
                "kept in memory and retried",
                self._url,
                describe(err),
                self.id,
            )
        else:
            log.debug("registry %s still unreachable: %s", self._url, describe(err))
        self._failing = True
        self._backoff_s = min(max(2 * self._backoff_s, 1.0), self._max_backoff_s)
        self._retry_at = time.monotonic() + self._backoff_s

    def _drop(self, err: SQLAlchemyError) -> None:
        log.warning(
            "registry %s rejected the writes of run %s (%s); %d pending writes dropped",
            self._url,
            self.id,
            describe(err),
            self.pending,
        )
        self._clear()


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
