"""Registry test helpers: URLs of test databases, and PostgreSQL administration.

When the server at 127.0.0.1:5432 is unreachable a test that needs it skips, or fails
when TUNIXRT_REQUIRE_POSTGRES=1 (as in CI).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tunixrt.registry.engine import make_engine

PG_HOST, PG_ADMIN_DB = "127.0.0.1", "test"
PG_PORT = int(os.environ.get("TUNIXRT_TEST_PG_PORT", "5432"))  # to check the skip path


def pg_url(database: str, schema: str | None = None, password: str | None = None) -> str:
    auth = "postgres" if password is None else f"postgres:{password}"
    url = f"postgresql+psycopg://{auth}@{PG_HOST}:{PG_PORT}/{database}"
    return url if schema is None else f"{url}?options=-csearch_path%3D{schema}"


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


@contextmanager
def pg_admin(database: str = PG_ADMIN_DB) -> Iterator[Any]:
    """An autocommit psycopg connection; skips (or fails in CI) without a server."""
    try:
        import psycopg

        conn = psycopg.connect(
            host=PG_HOST,
            port=PG_PORT,
            user="postgres",
            dbname=database,
            autocommit=True,
            connect_timeout=5,
        )
    except Exception as err:  # ImportError or any connection failure
        reason = f"PostgreSQL at {PG_HOST}:{PG_PORT} unavailable: {err}"
        if os.environ.get("TUNIXRT_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    with conn:
        yield conn


def create_database(prefix: str = "tunixrt_test") -> str:
    from psycopg import sql

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with pg_admin() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name


def drop_database(name: str) -> None:
    from psycopg import sql

    with pg_admin() as conn:
        stmt = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        conn.execute(stmt)


@contextmanager
def fresh_pg_database() -> Iterator[str]:
    """A database of its own, for tests that take it offline or need it whole."""
    name = create_database()
    try:
        yield name
    finally:
        drop_database(name)


@contextmanager
def database_hung(url: str) -> Iterator[None]:
    """Writes to the registry at `url` block until exit, as on a server that stopped
    answering: another session holds the locks they need (PostgreSQL: ACCESS EXCLUSIVE
    on the tables a run writes; SQLite: the database's write lock)."""
    engine = make_engine(url, statement_timeout_s=None)
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql(
                    "LOCK TABLE runs, metric_history, metric_latest, checkpoints "
                    "IN ACCESS EXCLUSIVE MODE"
                )
            else:
                conn.exec_driver_sql("SELECT 1")  # the engine's BEGIN IMMEDIATE takes the lock
            yield
            conn.rollback()
    finally:
        engine.dispose()
