"""The schema as SQLAlchemy 2 typed models. Alembic's revisions in migrations/ must
describe the same tables: tests compare the two with autogenerate."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Connection,
    DateTime,
    Dialect,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class RunStatus(enum.StrEnum):
    running = "running"
    completed = "completed"
    failed = "failed"
    preempted = "preempted"  # stopped by a signal; resumable
    lost = "lost"  # was running, heartbeat too old (SIGKILL, node failure)


FINAL_STATUSES = frozenset({RunStatus.completed, RunStatus.failed, RunStatus.preempted})


class SweepStatus(enum.StrEnum):
    running = "running"
    completed = "completed"
    failed = "failed"


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on the way in and out. PostgreSQL stores timestamptz; SQLite
    stores naive UTC text (a fixed-width format, so text order is time order)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the registry stores aware UTC times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class ServerNow(FunctionElement[datetime]):
    """The database server's current UTC time. Heartbeats and the lost rule use it
    instead of each client's clock, so hosts whose clocks disagree still agree on which
    runs are alive."""

    type = UTCDateTime()
    inherit_cache = True
    name = "server_now"


@compiles(ServerNow)
def _server_now(element: ServerNow, compiler: SQLCompiler, **kw: Any) -> str:
    return "CURRENT_TIMESTAMP"


@compiles(ServerNow, "sqlite")
def _server_now_sqlite(element: ServerNow, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite's CURRENT_TIMESTAMP (UTC) has whole seconds only; this is the same clock
    # with milliseconds, in the text format the column stores, so text order stays
    # time order.
    return "(strftime('%Y-%m-%d %H:%M:%f', 'now') || '000')"


def server_now() -> ServerNow:
    """`ServerNow()` as an expression to write (heartbeat_at = the server's now)."""
    return ServerNow()


def server_time(bind: Connection | Session) -> datetime:
    """The server's current time, read in `bind`'s transaction."""
    value = bind.execute(select(server_now())).scalar_one()
    if not isinstance(value, datetime):
        raise TypeError(f"the server's time came back as {value!r}")
    return value


# JSONB on PostgreSQL (indexable, compact), plain JSON text elsewhere.
Json = JSON().with_variant(JSONB(), "postgresql")


def _status_check(enum_cls: type[enum.StrEnum]) -> CheckConstraint:
    values = ", ".join(f"'{s.value}'" for s in enum_cls)
    return CheckConstraint(f"status IN ({values})", name="status")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Sweep(Base):
    __tablename__ = "sweeps"
    __table_args__ = (_status_check(SweepStatus),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    folder: Mapped[str] = mapped_column(Text)
    sweeper: Mapped[str] = mapped_column(String(128))  # e.g. "basic", "optuna"
    search_space: Mapped[Any] = mapped_column(Json)  # {key: spec}, or the -m overrides
    status: Mapped[str] = mapped_column(String(16), index=True)
    optimized_metric: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (_status_check(RunStatus), Index(None, "created_at"))

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # uuid4 hex
    name: Mapped[str] = mapped_column(String(255), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)  # the latest (re)start
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime)
    config: Mapped[Any] = mapped_column(Json)  # resolved, password-masked
    overrides: Mapped[Any] = mapped_column(Json)  # list of command-line overrides
    config_hash: Mapped[str] = mapped_column(String(64))
    git_commit: Mapped[str | None] = mapped_column(String(64))
    git_dirty: Mapped[bool | None] = mapped_column(Boolean)
    host: Mapped[str] = mapped_column(String(255))
    device_kind: Mapped[str | None] = mapped_column(String(128))
    device_count: Mapped[int | None] = mapped_column(Integer)
    versions: Mapped[Any] = mapped_column(Json)  # {package: version}
    run_dir: Mapped[str] = mapped_column(Text, unique=True)  # absolute; identifies a resume
    tb_dir: Mapped[str | None] = mapped_column(Text)
    checkpoint_dir: Mapped[str | None] = mapped_column(Text)
    last_step: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    sweep_id: Mapped[str | None] = mapped_column(
        ForeignKey("sweeps.id", ondelete="SET NULL"), index=True
    )
    resume_count: Mapped[int] = mapped_column(Integer)
    # The run whose weights this one started from (`init.from`), when it is registered
    # here; init_from is the source as the run read it (a checkpoint or model folder).
    # No foreign key: see migrations/versions/0003_run_parents.py.
    parent_id: Mapped[str | None] = mapped_column(String(32), index=True)
    init_from: Mapped[str | None] = mapped_column(Text)


def _run_fk() -> Mapped[str]:
    return mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)


class MetricPoint(Base):
    """One value at one logged step; a re-logged step (after a resume) overwrites."""

    __tablename__ = "metric_history"

    run_id: Mapped[str] = _run_fk()
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[float | None] = mapped_column(Double)  # NaN is stored as NULL
    time: Mapped[datetime] = mapped_column(UTCDateTime)


class MetricLatest(Base):
    """The last value written per metric, so listing runs never scans the history."""

    __tablename__ = "metric_latest"

    run_id: Mapped[str] = _run_fk()
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    step: Mapped[int] = mapped_column(Integer)
    value: Mapped[float | None] = mapped_column(Double)
    time: Mapped[datetime] = mapped_column(UTCDateTime)


class Checkpoint(Base):
    __tablename__ = "checkpoints"

    run_id: Mapped[str] = _run_fk()
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    metrics: Mapped[Any] = mapped_column(Json)
    time: Mapped[datetime] = mapped_column(UTCDateTime)


class Tag(Base):
    __tablename__ = "tags"

    run_id: Mapped[str] = _run_fk()
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Evaluation(Base):
    """One evaluation of a model folder on an eval set: its scores, and how they were
    made (file, scorer, generation settings), so two rows are comparable only when
    those agree. `run_id` is null for a folder no registered run wrote (a Hugging Face
    model)."""

    __tablename__ = "evaluations"
    # Leading with run_id, it serves lookups by run and the cascade from runs, and
    # "latest evaluation of a run" reads one index entry.
    __table_args__ = (Index(None, "run_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # uuid4 hex
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    step: Mapped[int | None] = mapped_column(Integer)  # the checkpoint's, when known
    target: Mapped[str] = mapped_column(Text)  # absolute folder evaluated
    eval_path: Mapped[str] = mapped_column(Text)
    eval_sha256: Mapped[str] = mapped_column(String(64))
    scorer: Mapped[str] = mapped_column(String(64))
    scorer_version: Mapped[str] = mapped_column(String(16))
    generation: Mapped[Any] = mapped_column(Json)  # GenerationSettings.to_dict()
    items: Mapped[int] = mapped_column(Integer)
    correct: Mapped[int] = mapped_column(Integer)
    accuracy: Mapped[float] = mapped_column(Double)
    aggregates: Mapped[Any] = mapped_column(Json)  # overall and per category/section/difficulty
    seconds: Mapped[float] = mapped_column(Double)  # generation and scoring, wall clock
    new_tokens: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class EvalPrediction(Base):
    """One item of an evaluation: what was generated, the answer extracted from it and
    whether it matched."""

    __tablename__ = "predictions"

    evaluation_id: Mapped[str] = mapped_column(
        ForeignKey("evaluations.id", ondelete="CASCADE"), primary_key=True
    )
    item_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)  # in the evaluation, from 0: file order
    category: Mapped[str | None] = mapped_column(String(255))
    section: Mapped[str | None] = mapped_column(String(255))
    difficulty: Mapped[str | None] = mapped_column(String(255))
    prompt: Mapped[str] = mapped_column(Text)
    generated: Mapped[str] = mapped_column(Text)
    extracted: Mapped[str] = mapped_column(Text)
    expected: Mapped[str] = mapped_column(Text)
    correct: Mapped[bool] = mapped_column(Boolean)
    new_tokens: Mapped[int] = mapped_column(Integer)
