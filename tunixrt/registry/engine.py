"""Engines set up for many concurrent writers.

SQLite: WAL (readers never block the writer), a busy timeout (writers queue instead
of failing with "database is locked"), foreign keys on, and write transactions that
start with BEGIN IMMEDIATE. A deferred transaction that reads and then writes can fail
at once with "database is locked" when another process committed in between (the busy
handler cannot help a stale snapshot); taking the write lock at BEGIN avoids that.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from tunixrt.registry.urls import sqlite_path

READ_ONLY = {"tunixrt_read_only": True}  # execution options of a read-only connection


def make_engine(url: str, *, busy_timeout_s: float = 30.0, connect_timeout_s: int = 10) -> Engine:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    connect_args: dict[str, Any] = {}
    if backend == "sqlite":
        connect_args["timeout"] = busy_timeout_s
        path = sqlite_path(parsed)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
    elif backend == "postgresql" and parsed.get_driver_name() in ("psycopg", "psycopg2"):
        connect_args["connect_timeout"] = connect_timeout_s
    # pre_ping: a server restart or a dropped connection costs one reconnect, not an error
    engine = create_engine(parsed, pool_pre_ping=True, connect_args=connect_args)
    if backend == "sqlite":
        _configure_sqlite(engine, busy_timeout_s)
    return engine


def _configure_sqlite(engine: Engine, busy_timeout_s: float) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let the "begin" hook below emit BEGIN itself instead of pysqlite's implicit one.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        cur.execute("PRAGMA journal_mode = WAL")
        # NORMAL is durable across process crashes in WAL mode; only a power cut can
        # lose the last commits, and it saves an fsync per commit.
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        read_only = conn.get_execution_options().get("tunixrt_read_only", False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
