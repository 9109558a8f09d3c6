"""Evaluations of model folders on eval sets, and their per-item predictions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-15

Types are spelled out here rather than imported from tunixrt.registry.models, so that
this revision keeps meaning the same tables when the models change later.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _label(name: str) -> sa.Column:
    return sa.Column(name, sa.String(255), nullable=True)


def upgrade() -> None:
    op.create_table(
        "evaluations",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("run_id", sa.String(32), nullable=True),
        sa.Column("step", sa.Integer(), nullable=True),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("eval_path", sa.Text(), nullable=False),
        sa.Column("eval_sha256", sa.String(64), nullable=False),
        sa.Column("scorer", sa.String(64), nullable=False),
        sa.Column("scorer_version", sa.String(16), nullable=False),
        sa.Column("generation", _json(), nullable=False),
        sa.Column("items", sa.Integer(), nullable=False),
        sa.Column("correct", sa.Integer(), nullable=False),
        sa.Column("accuracy", sa.Double(), nullable=False),
        sa.Column("aggregates", _json(), nullable=False),
        sa.Column("seconds", sa.Double(), nullable=False),
        sa.Column("new_tokens", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_evaluations_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evaluations")),
    )
    op.create_index(
        op.f("ix_evaluations_run_id_created_at"), "evaluations", ["run_id", "created_at"]
    )

    op.create_table(
        "predictions",
        sa.Column("evaluation_id", sa.String(32), nullable=False),
        sa.Column("item_id", sa.String(255), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        _label("category"),
        _label("section"),
        _label("difficulty"),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("generated", sa.Text(), nullable=False),
        sa.Column("extracted", sa.Text(), nullable=False),
        sa.Column("expected", sa.Text(), nullable=False),
        sa.Column("correct", sa.Boolean(), nullable=False),
        sa.Column("new_tokens", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["evaluation_id"],
            ["evaluations.id"],
            name=op.f("fk_predictions_evaluation_id_evaluations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("evaluation_id", "item_id", name=op.f("pk_predictions")),
    )


def downgrade() -> None:
    op.drop_table("predictions")
    op.drop_index(op.f("ix_evaluations_run_id_created_at"), table_name="evaluations")
    op.drop_table("evaluations")
