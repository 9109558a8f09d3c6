"""Engines set up for many concurrent writers, and for a server that stops answering.

SQLite: WAL (readers never block the writer), a busy timeout (writers queue instead
of failing with "database is locked"), foreign keys on, and write transactions that
start with BEGIN IMMEDIATE. A deferred transaction that reads and then writes can fail
at once with "database is locked" when another process committed in between (the busy
handler cannot help a stale snapshot); taking the write lock at BEGIN avoids that.

PostgreSQL (psycopg, psycopg2): a connect timeout, a statement timeout (a statement
blocked by a lock, or by a server too busy to answer, fails instead of waiting for
ever) and TCP keepalives (a peer that vanished without closing the connection is
noticed in about a minute instead of the kernel's two hours). A URL that sets any of
these itself keeps its own value.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import URL, Engine, create_engine, event
from sqlalchemy.engine import make_url

from tunixrt.registry.urls import sqlite_path

READ_ONLY = {"tunixrt_read_only": True}  # execution options of a read-only connection
STATEMENT_TIMEOUT_S = 5.0
# libpq: probe after 30 s of silence, every 10 s, give up after 3 unanswered probes.
KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}


def make_engine(
    url: str | URL,
    *,
    busy_timeout_s: float = 30.0,
    connect_timeout_s: int = 10,
    statement_timeout_s: float | None = STATEMENT_TIMEOUT_S,
) -> Engine:
    """An engine for `url`. `statement_timeout_s` None (or 0) sets no statement
    timeout on PostgreSQL."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    connect_args: dict[str, Any] = {}
    if backend == "sqlite":
        connect_args["timeout"] = busy_timeout_s
        path = sqlite_path(parsed)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
    elif backend == "postgresql" and parsed.get_driver_name() in ("psycopg", "psycopg2"):
        connect_args = libpq_args(parsed, connect_timeout_s, statement_timeout_s)
    # pre_ping: a server restart or a dropped connection costs one reconnect, not an error
    engine = create_engine(parsed, pool_pre_ping=True, connect_args=connect_args)
    if backend == "sqlite":
        _configure_sqlite(engine, busy_timeout_s)
    return engine


def libpq_args(
    url: URL, connect_timeout_s: int, statement_timeout_s: float | None
) -> dict[str, Any]:
    """Connection parameters added to those of `url`; connect_args replace the URL's
    query parameters of the same name, so `options` carries the URL's own too."""
    defaults = {"connect_timeout": connect_timeout_s, **KEEPALIVES}
    args: dict[str, Any] = {k: v for k, v in defaults.items() if k not in url.query}
    options = _joined(url.query.get("options"))
    if statement_timeout_s and "statement_timeout" not in options:
        # libpq's `options`: settings the server applies to every session of the pool
        options = f"{options} -c statement_timeout={round(statement_timeout_s * 1000)}".strip()
    if options:
        args["options"] = options
    return args


def _joined(value: str | tuple[str, ...] | None) -> str:
    """A query parameter given once, several times, or not at all, as one string."""
    if value is None:
        return ""
    return value if isinstance(value, str) else " ".join(value)


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
