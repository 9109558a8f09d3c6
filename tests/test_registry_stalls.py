"""A registry that never stalls training, on SQLite and PostgreSQL: while the database
hangs (another session holds the locks a run's writes need) the recorder's calls
return at once, the backlog is written once it answers, a full buffer drops the
oldest points and says so, and `finish` waits no longer than told. Heartbeats and the
lost rule use the database server's clock."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, select, update
from sqlalchemy.engine import make_url

from tests.helpers.registry import database_hung, pg_url
from tunixrt.registry import Registry, RunInfo, RunRecorder, get_run, list_runs, mark_lost, queries
from tunixrt.registry import recorder as recorder_module
from tunixrt.registry import store as store_module
from tunixrt.registry.engine import libpq_args, make_engine
from tunixrt.registry.models import MetricPoint, Run, server_time

WAIT_S = 0.5  # how long a blocked write waits: statement timeout, or SQLite's busy timeout
FAST_CALL_S = 0.05  # a call that did database I/O would take at least WAIT_S


def open_registry(url: str, wait_s: float = WAIT_S, **options: Any) -> Registry:
    return Registry.open(url, busy_timeout_s=wait_s, statement_timeout_s=wait_s, **options)


def start(reg: Registry, tmp_path: Path, name: str = "r", **options: Any) -> RunRecorder:
    return reg.start_run(RunInfo(name=name, run_dir=tmp_path / name), **options)


def timed(call: Callable[[], object]) -> float:
    begin = time.perf_counter()
    call()
    return time.perf_counter() - begin


def steps_written(reg: Registry, run_id: str, name: str) -> list[int]:
    with reg.session(read_only=True) as s:
        query = select(MetricPoint.step).where(
            MetricPoint.run_id == run_id, MetricPoint.name == name
        )
        return sorted(s.scalars(query))


@contextmanager
def statement_threads(engine: Engine) -> Iterator[set[int]]:
    """The ids of the threads that ran statements on `engine` meanwhile."""
    threads: set[int] = set()

    def record(*_: Any) -> None:
        threads.add(threading.get_ident())

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield threads
    finally:
        event.remove(engine, "before_cursor_execute", record)


def warnings_in(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_calls_return_at_once_while_the_database_hangs(
    registry_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Training's calls, with the keepalive beating, cost no database time during a
    hang longer than the statement timeout; all of it is written afterwards."""
    with open_registry(registry_url) as reg:
        rec = start(reg, tmp_path, write_every_s=0.0)
        rec.start_keepalive(interval_s=0.05)
        durations, step = [], 0
        with (
            statement_threads(reg.engine) as threads,
            caplog.at_level(logging.WARNING, logger="tunixrt.registry"),
        ):
            with database_hung(registry_url):
                until = time.perf_counter() + 3 * WAIT_S
                while time.perf_counter() < until:
                    step += 1
                    durations.append(timed(partial(rec.log_metrics, step, {"loss": 1 / step})))
                    durations.append(timed(partial(rec.heartbeat, step)))
                    if step % 50 == 0:
                        durations.append(timed(partial(rec.checkpoint, step, f"/ckpt/{step}")))
                    time.sleep(0.002)
                assert rec.pending > 0
            assert rec.finish("completed", last_step=step, timeout_s=10.0)
        assert max(durations) < FAST_CALL_S, sorted(durations)[-5:]
        assert threads and threading.get_ident() not in threads  # the writer's only
        (outage,) = warnings_in(caplog)  # the writer's attempt timed out during the hang
        assert "unreachable" in outage and ("timeout" in outage or "locked" in outage)
        assert steps_written(reg, rec.id, "loss") == list(range(1, step + 1))
        run = get_run(reg, rec.id)
    assert (run.status, run.last_step, rec.dropped) == ("completed", step, 0)
    assert [c.step for c in run.checkpoints] == list(range(50, step + 1, 50))
    assert run.metric_steps == {"loss": step}


def test_a_full_buffer_drops_the_oldest_points(
    registry_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Each point is either written or counted as dropped, the newest are kept,
    checkpoints and the final status are never dropped, and finish returns False."""
    keep, total = 20, 100
    with open_registry(registry_url) as reg:
        rec = start(reg, tmp_path, write_every_s=0.0, max_pending=keep)
        with caplog.at_level(logging.WARNING, logger="tunixrt.registry"):
            with database_hung(registry_url):
                rec.checkpoint(1, "/ckpt/1")
                for step in range(1, total + 1):
                    rec.log_metrics(step, {"loss": 1 / step})
                assert rec.dropped >= total - 2 * keep  # the buffer, and the batch in flight
                time.sleep(WAIT_S + 0.2)  # the write in flight times out and is put back
            assert not rec.finish("completed", last_step=total, timeout_s=10.0)
        written = steps_written(reg, rec.id, "loss")
        run = get_run(reg, rec.id)
    assert len(written) + rec.dropped == total
    assert written[-keep:] == list(range(total - keep + 1, total + 1))
    assert (run.status, run.last_step, [c.step for c in run.checkpoints]) == ("completed", 100, [1])
    assert run.metric_steps == {"loss": total}
    messages = warnings_in(caplog)
    assert any("the oldest are dropped" in m for m in messages)
    assert any(f"{rec.dropped} metric points of run {rec.id} were dropped" in m for m in messages)


def test_finish_waits_no_longer_than_its_timeout(
    registry_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with open_registry(registry_url, wait_s=5.0) as reg:  # a write blocks for 5 s
        rec = start(reg, tmp_path, write_every_s=0.0)
        with caplog.at_level(logging.WARNING, logger="tunixrt.registry"):
            with database_hung(registry_url):
                rec.log_metrics(1, {"loss": 1.0})
                finished: list[bool] = []
                waited = timed(lambda: finished.append(rec.finish("completed", timeout_s=0.3)))
            assert finished == [False] and 0.3 <= waited < 2.0
            assert any("was not recorded" in m for m in warnings_in(caplog))
        # The write under way when finish gave up goes through once the locks are free.
        deadline = time.monotonic() + 10.0
        while steps_written(reg, rec.id, "loss") != [1] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert steps_written(reg, rec.id, "loss") == [1]


def test_libpq_arguments() -> None:
    url = make_url("postgresql+psycopg://u@h/db?options=-csearch_path%3Ds&keepalives_idle=5")
    assert libpq_args(url, 10, 2.5) == {
        "connect_timeout": 10,
        "keepalives": 1,
        "keepalives_interval": 10,
        "keepalives_count": 3,
        "options": "-csearch_path=s -c statement_timeout=2500",
    }
    own = make_url("postgresql+psycopg://u@h/db?options=-c%20statement_timeout%3D9s")
    assert libpq_args(own, 10, 2.5)["options"] == "-c statement_timeout=9s"
    assert "options" not in libpq_args(make_url("postgresql+psycopg://u@h/db"), 10, None)


def test_postgres_sessions_have_a_statement_timeout_and_keepalives(pg_database: str) -> None:
    for timeout_s, shown in ((2.5, "2500ms"), (None, "0")):
        engine = make_engine(pg_url(pg_database, "some_schema"), statement_timeout_s=timeout_s)
        try:
            with engine.connect() as conn:
                assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == shown
                assert conn.exec_driver_sql("SHOW search_path").scalar() == "some_schema"
                params = conn.connection.dbapi_connection.info.get_parameters()  # type: ignore[union-attr]
        finally:
            engine.dispose()
        assert (params["keepalives_idle"], params["keepalives_count"]) == ("30", "3")


@pytest.mark.parametrize("skew", [timedelta(hours=-1), timedelta(hours=1)])
def test_heartbeats_and_the_lost_rule_use_the_server_clock(
    registry_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, skew: timedelta
) -> None:
    """The recording host's clock is `skew` off the server's and the reading host's
    clock the other way; neither decides which run is lost."""

    def skewed(offset: timedelta) -> Callable[[], datetime]:
        return lambda: datetime.now(UTC) + offset

    with open_registry(registry_url, lost_after_s=60) as reg:
        with monkeypatch.context() as writer_host:
            for module in (recorder_module, store_module):
                writer_host.setattr(module, "utcnow", skewed(skew), raising=False)
            fresh, stale = start(reg, tmp_path, "fresh"), start(reg, tmp_path, "stale")
            fresh.log_metrics(1, {"loss": 1.0})
            assert fresh.flush()
        with reg.session() as s:
            now = server_time(s)
            old = now - timedelta(seconds=61)
            s.execute(update(Run).where(Run.id == stale.id).values(heartbeat_at=old))
        monkeypatch.setattr(queries, "utcnow", skewed(-skew))
        assert mark_lost(reg) == 1
        assert {r.name: r.status for r in list_runs(reg)} == {"fresh": "running", "stale": "lost"}
        beat = get_run(reg, fresh.id).heartbeat_at
    assert abs(beat - now) < timedelta(seconds=30)
