"""Alembic from Python: the code's head revision, the database's, and an upgrade that
several processes can start at once.

Concurrent first use: the upgrade runs inside one transaction that first takes a lock
every other upgrader waits on (PostgreSQL: a transaction-level advisory lock; SQLite:
BEGIN IMMEDIATE, the database's single write lock), then re-reads the revision, so
the second process finds the work done. Both backends run DDL transactionally.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, column, inspect, select, table, text

from tunixrt.paths import repo_path
from tunixrt.registry.engine import READ_ONLY
from tunixrt.registry.errors import RegistryError
from tunixrt.registry.urls import mask_url

# pg_advisory_xact_lock takes a signed 64-bit key; derive a stable one from a name.
LOCK_KEY = int.from_bytes(hashlib.sha256(b"tunixrt.registry.migrate").digest()[:8], signed=True)
VERSION_TABLE = table("alembic_version", column("version_num"))


def migrations_dir() -> Path:
    """migrations/ of the source checkout, or its copy packaged in the wheel."""
    return repo_path("migrations")


def alembic_config(connection: Connection | None = None) -> Config:
    """A Config without alembic.ini; migrations/env.py uses `connection` when given."""
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()).replace("%", "%%"))
    cfg.attributes["connection"] = connection
    return cfg


def script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    head = script_directory().get_current_head()
    if head is None:
        raise RegistryError(f"no Alembic revisions in {migrations_dir()}")
    return head


def current_revision(conn: Connection) -> str | None:
    """The database's revision; None when empty. Read directly rather than through
    MigrationContext, which logs two INFO lines per call into every training log."""
    if not inspect(conn).has_table(VERSION_TABLE.name):
        return None
    revisions = list(conn.execute(select(VERSION_TABLE.c.version_num)).scalars())
    if len(revisions) > 1:
        raise RegistryError(f"the registry has several Alembic heads: {revisions}")
    return revisions[0] if revisions else None


def read_revision(engine: Engine) -> str | None:
    with engine.connect().execution_options(**READ_ONLY) as conn:
        return current_revision(conn)


@contextmanager
def migration_lock(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that holds the registry's migration lock."""
    with engine.connect() as conn, conn.begin():
        if conn.dialect.name == "postgresql":
            # The engine's statement timeout is for a run's writes; waiting for another
            # process's upgrade, or a migration of a large table, may take longer.
            conn.execute(text("SET LOCAL statement_timeout = 0"))
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
        # SQLite: the engine's "begin" hook already issued BEGIN IMMEDIATE.
        yield conn


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Upgrade to `revision` under the migration lock; returns the new revision."""
    with migration_lock(engine) as conn:
        command.upgrade(alembic_config(conn), revision)
        return current_revision(conn)


def downgrade(engine: Engine, revision: str) -> str | None:
    with migration_lock(engine) as conn:
        command.downgrade(alembic_config(conn), revision)
        return current_revision(conn)


def ensure_schema(engine: Engine, *, create: bool = True) -> None:
    """Return if the database is at the code's head. An empty database is upgraded
    (when `create`); one behind or ahead raises RegistryError saying what to do."""
    script = script_directory()
    head = script.get_current_head()
    current = read_revision(engine)
    if current == head:
        return
    if current is None and create:
        with migration_lock(engine) as conn:
            if current_revision(conn) is None:
                command.upgrade(alembic_config(conn), "head")
            current = current_revision(conn)
        if current == head:
            return
    where = mask_url(engine.url)
    if current is None:
        raise RegistryError(f"registry {where} has no tables; run `tunixrt db upgrade`")
    known = {rev.revision for rev in script.walk_revisions()}
    if current not in known:
        raise RegistryError(
            f"registry {where} is at revision {current}, which this tunixrt does not know "
            f"(head {head}); it was upgraded by a newer tunixrt: upgrade tunixrt"
        )
    raise RegistryError(
        f"registry {where} is at revision {current}, behind this tunixrt's {head}; "
        f"run `tunixrt db upgrade --registry URL` (or `alembic upgrade head` with "
        f"TUNIXRT_REGISTRY_URL set) to migrate it"
    )
