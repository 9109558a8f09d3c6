"""Registry fixtures, loaded by `pytest_plugins = ["tests.registry_fixtures"]` in the
test modules that use them: `registry_url` runs a test on SQLite and on PostgreSQL.

PostgreSQL isolation: one fresh database per test session (dropped at the end) and
one schema per test inside it, selected through the URL's search_path.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.registry_helpers import fresh_pg_database, pg_admin, pg_url, sqlite_url


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    with fresh_pg_database() as name:
        yield name


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def registry_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """An empty registry database: a SQLite file, or a fresh PostgreSQL schema."""
    if backend == "sqlite":
        yield sqlite_url(tmp_path / "registry.db")
        return
    from psycopg import sql

    database = request.getfixturevalue("pg_database")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with pg_admin(database) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    yield pg_url(database, schema)
    with pg_admin(database) as conn:
        stmt = sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema))
        conn.execute(stmt)
