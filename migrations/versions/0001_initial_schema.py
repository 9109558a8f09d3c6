"""Initial schema: sweeps, runs, metric history and latest values, checkpoints, tags.

Revision ID: 0001
Revises:
Create Date: 2026-12-01

Types are spelled out here rather than imported from tunixrt.registry.models, so that
this revision keeps meaning the same tables when the models change later.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RUN_STATUSES = ("running", "completed", "failed", "preempted", "lost")
SWEEP_STATUSES = ("running", "completed", "failed")


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _time(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _status_check(table: str, values: Sequence[str]) -> sa.CheckConstraint:
    listed = ", ".join(f"'{v}'" for v in values)
    return sa.CheckConstraint(f"status IN ({listed})", name=op.f(f"ck_{table}_status"))


def _run_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["run_id"], ["runs.id"], name=op.f(f"fk_{table}_run_id_runs"), ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "sweeps",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("folder", sa.Text(), nullable=False),
        sa.Column("sweeper", sa.String(128), nullable=False),
        sa.Column("search_space", _json(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("optimized_metric", sa.String(255), nullable=True),
        _time("created_at"),
        _time("ended_at", nullable=True),
        _status_check("sweeps", SWEEP_STATUSES),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sweeps")),
    )
    op.create_index(op.f("ix_sweeps_status"), "sweeps", ["status"])

    op.create_table(
        "runs",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        _time("created_at"),
        _time("started_at"),
        _time("ended_at", nullable=True),
        _time("heartbeat_at"),
        sa.Column("config", _json(), nullable=False),
        sa.Column("overrides", _json(), nullable=False),
        sa.Column("config_hash", sa.String(64), nullable=False),
        sa.Column("git_commit", sa.String(64), nullable=True),
        sa.Column("git_dirty", sa.Boolean(), nullable=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("device_kind", sa.String(128), nullable=True),
        sa.Column("device_count", sa.Integer(), nullable=True),
        sa.Column("versions", _json(), nullable=False),
        sa.Column("run_dir", sa.Text(), nullable=False),
        sa.Column("tb_dir", sa.Text(), nullable=True),
        sa.Column("checkpoint_dir", sa.Text(), nullable=True),
        sa.Column("last_step", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("sweep_id", sa.String(32), nullable=True),
        sa.Column("resume_count", sa.Integer(), nullable=False),
        _status_check("runs", RUN_STATUSES),
        sa.ForeignKeyConstraint(
            ["sweep_id"], ["sweeps.id"], name=op.f("fk_runs_sweep_id_sweeps"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
        sa.UniqueConstraint("run_dir", name=op.f("uq_runs_run_dir")),
    )
    for column in ("created_at", "name", "status", "sweep_id"):
        op.create_index(op.f(f"ix_runs_{column}"), "runs", [column])

    for table, key in (("metric_history", ["name", "step"]), ("metric_latest", ["name"])):
        op.create_table(
            table,
            sa.Column("run_id", sa.String(32), nullable=False),
            sa.Column("name", sa.String(255), nullable=False),
            sa.Column("step", sa.Integer(), nullable=False),
            sa.Column("value", sa.Double(), nullable=True),
            _time("time"),
            _run_fk(table),
            sa.PrimaryKeyConstraint("run_id", *key, name=op.f(f"pk_{table}")),
        )

    op.create_table(
        "checkpoints",
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("metrics", _json(), nullable=False),
        _time("time"),
        _run_fk("checkpoints"),
        sa.PrimaryKeyConstraint("run_id", "step", name=op.f("pk_checkpoints")),
    )

    op.create_table(
        "tags",
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        _run_fk("tags"),
        sa.PrimaryKeyConstraint("run_id", "key", name=op.f("pk_tags")),
    )


def downgrade() -> None:
    for table in ("tags", "checkpoints", "metric_latest", "metric_history"):
        op.drop_table(table)
    for column in ("sweep_id", "status", "name", "created_at"):
        op.drop_index(op.f(f"ix_runs_{column}"), table_name="runs")
    op.drop_table("runs")
    op.drop_index(op.f("ix_sweeps_status"), table_name="sweeps")
    op.drop_table("sweeps")
