"""Alembic migrations agree with the models; empty, outdated and foreign databases."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from tests.helpers.paths import ROOT
from tests.helpers.registry import sqlite_url
from tunixrt.registry import Registry, RegistryError, head_revision, migrate
from tunixrt.registry.engine import make_engine
from tunixrt.registry.models import Base

TABLES = {
    "runs",
    "sweeps",
    "metric_history",
    "metric_latest",
    "checkpoints",
    "tags",
    "evaluations",
    "predictions",
}

# A revision after the code's head, as a newer tunixrt would ship; format with head=.
NEXT_REVISION = """
import sqlalchemy as sa
from alembic import op

revision = "next"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table("extra", sa.Column("id", sa.Integer(), primary_key=True))


def downgrade():
    op.drop_table("extra")
"""


def test_open_creates_schema_and_models_match_migrations(registry_url: str) -> None:
    with Registry.open(registry_url) as reg, reg.engine.connect() as conn:
        assert set(inspect(conn).get_table_names()) >= TABLES
        assert migrate.current_revision(conn) == head_revision()
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_downgrade_base_then_reopen(registry_url: str) -> None:
    Registry.open(registry_url).close()
    engine = make_engine(registry_url)
    try:
        assert migrate.downgrade(engine, "base") is None
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()
    with Registry.open(registry_url) as reg:  # empty again, so created again
        assert set(inspect(reg.engine).get_table_names()) >= TABLES


def test_database_behind_or_ahead_of_the_code(
    registry_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Registry.open(registry_url).close()  # at head
    newer = tmp_path / "migrations"
    shutil.copytree(migrate.migrations_dir(), newer, ignore=shutil.ignore_patterns("__pycache__"))
    (newer / "versions" / "next_extra.py").write_text(NEXT_REVISION.format(head=head_revision()))

    monkeypatch.setattr(migrate, "migrations_dir", lambda: newer)  # code at "next"
    with pytest.raises(RegistryError, match=r"behind .*run `tunixrt db upgrade"):
        Registry.open(registry_url)
    engine = make_engine(registry_url)
    try:
        assert migrate.upgrade(engine) == "next"
    finally:
        engine.dispose()
    Registry.open(registry_url).close()

    monkeypatch.undo()  # code back at head, database at "next"
    with pytest.raises(RegistryError, match="does not know"):
        Registry.open(registry_url)


def test_create_false_refuses_an_empty_database(registry_url: str) -> None:
    with pytest.raises(RegistryError, match="no tables"):
        Registry.open(registry_url, create=False)


def test_alembic_command_line_from_repo_root(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "cli.db")
    env = {**os.environ, "TUNIXRT_REGISTRY_URL": url}
    for args in (["upgrade", "head"], ["check"], ["downgrade", "base"]):
        done = subprocess.run(
            [sys.executable, "-m", "alembic", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
    engine = make_engine(url)
    try:
        assert migrate.read_revision(engine) is None
    finally:
        engine.dispose()
