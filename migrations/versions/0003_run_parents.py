"""Where a run's initial weights came from: the parent run (`init.from` a registered
run or one of its folders) and the source as the run read it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

Types are spelled out here rather than imported from tunixrt.registry.models, so that
this revision keeps meaning the same tables when the models change later.

parent_id has no foreign key: adding one to SQLite's `runs` means rebuilding the table,
and dropping the old one cascades into every table that references runs (their rows
would be deleted). Plain ADD COLUMN and CREATE INDEX touch no row on either backend; a
parent that is no longer registered shows as unknown.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("parent_id", sa.String(32), nullable=True))
    op.add_column("runs", sa.Column("init_from", sa.Text(), nullable=True))
    op.create_index("ix_runs_parent_id", "runs", ["parent_id"])


def downgrade() -> None:
    op.drop_index("ix_runs_parent_id", table_name="runs")
    op.drop_column("runs", "init_from")
    op.drop_column("runs", "parent_id")
