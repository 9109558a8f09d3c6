"""`Registry`: one database, opened once per process. Runs start here; the returned
`RunRecorder` writes the rest of their life."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, delete, insert, select
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import Session

from tunixrt.registry.engine import READ_ONLY, STATEMENT_TIMEOUT_S, make_engine
from tunixrt.registry.errors import RegistryError, describe
from tunixrt.registry.evaluations import evaluation_rows
from tunixrt.registry.info import RunInfo, config_hash, json_safe
from tunixrt.registry.migrate import ensure_schema
from tunixrt.registry.models import (
    Checkpoint,
    EvalPrediction,
    Evaluation,
    MetricLatest,
    MetricPoint,
    Run,
    RunStatus,
    server_time,
)
from tunixrt.registry.recorder import RunRecorder
from tunixrt.registry.urls import mask_config, mask_url, sqlite_path

if TYPE_CHECKING:
    from tunixrt.evaluation.runner import EvalReport

log = logging.getLogger(__name__)

LOST_AFTER_S = 120.0  # a running run with an older heartbeat is shown and stored as lost


def engine_for(
    url: str,
    *,
    busy_timeout_s: float = 30.0,
    statement_timeout_s: float | None = STATEMENT_TIMEOUT_S,
) -> Engine:
    """`make_engine`, with a bad URL or a missing driver reported as RegistryError."""
    where = mask_url(url)
    try:
        return make_engine(
            url, busy_timeout_s=busy_timeout_s, statement_timeout_s=statement_timeout_s
        )
    except NoSuchModuleError as err:
        raise RegistryError(
            f"registry {where}: no driver for this URL ({err}); for PostgreSQL "
            "install `tunixrt[postgres]` and use postgresql+psycopg://"
        ) from None
    except (ArgumentError, ValueError) as err:
        raise RegistryError(f"invalid registry URL {where}: {describe(err)}") from None


class Registry:
    def __init__(self, engine: Engine, *, lost_after_s: float = LOST_AFTER_S) -> None:
        self.engine = engine
        self.lost_after_s = lost_after_s
        self._read_engine = engine.execution_options(**READ_ONLY)

    @classmethod
    def open(
        cls,
        url: str,
        *,
        create: bool = True,
        lost_after_s: float = LOST_AFTER_S,
        busy_timeout_s: float = 30.0,
        statement_timeout_s: float | None = STATEMENT_TIMEOUT_S,
    ) -> Registry:
        """Connect and check the schema: an empty database is migrated to head (when
        `create`); an unreachable or outdated one raises RegistryError. SQLite waits
        up to `busy_timeout_s` for another writer; a PostgreSQL statement fails after
        `statement_timeout_s` (None: no limit)."""
        where = mask_url(url)
        engine = engine_for(
            url, busy_timeout_s=busy_timeout_s, statement_timeout_s=statement_timeout_s
        )
        try:
            ensure_schema(engine, create=create)
        except SQLAlchemyError as err:
            engine.dispose()
            raise RegistryError(f"cannot open registry {where}: {describe(err)}") from None
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, lost_after_s=lost_after_s)

    @classmethod
    def open_existing(cls, url: str, **options: Any) -> Registry:
        """`open` for readers: a SQLite file that does not exist is an error (no run has
        been registered there), never created as a side effect of a lookup."""
        path = sqlite_path(url)
        if path is not None and not path.exists():
            raise RegistryError(
                f"no registry at {mask_url(url)}: no run has been registered there; pass "
                "--registry URL or set TUNIXRT_REGISTRY_URL"
            )
        return cls.open(url, **options)

    @property
    def url(self) -> str:
        """The database URL, password hidden."""
        return mask_url(self.engine.url)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def session(self, *, read_only: bool = False) -> Iterator[Session]:
        """A session in one transaction, committed on success."""
        bind = self._read_engine if read_only else self.engine
        with Session(bind, expire_on_commit=False) as session, session.begin():
            yield session

    @contextmanager
    def failures_as(self, action: str) -> Iterator[None]:
        """Turn a database error into a RegistryError that says what failed, masked."""
        try:
            yield
        except SQLAlchemyError as err:
            raise RegistryError(f"registry {self.url}: {action} failed: {describe(err)}") from None

    def start_run(self, info: RunInfo, **recorder_options: Any) -> RunRecorder:
        """Register a run, or reopen the row of an earlier run in the same folder (a
        resume: status running again, resume_count + 1). Raises RegistryError when the
        registry cannot take the write, so a run never starts unrecorded by accident."""
        with self.failures_as(f"registering run {info.name!r}"):
            try:
                run_id = self._upsert_run(info)
            except IntegrityError:
                # Another process inserted this run_dir between our read and write.
                run_id = self._upsert_run(info)
        return RunRecorder(self.engine, run_id, url=self.url, **recorder_options)

    def resume_run_at(self, run_id: str, step: int) -> None:
        """Move a reopened run back to `step`, the checkpoint it actually resumed from
        (the newer ones were damaged): forget what it recorded after that step, as
        `start_run` does for `RunInfo.resume_step`."""
        action = f"moving run {run_id} back to step {step}"
        with self.failures_as(action), self.session() as session:
            _discard_after(session, run_id, step)
            session.get_one(Run, run_id).last_step = step

    def record_evaluation(
        self, report: EvalReport, *, run_id: str | None, target: str | Path
    ) -> str:
        """Store `report`, the evaluation of the folder `target` (made absolute), with
        one row per prediction, in one transaction; returns the evaluation's id.
        `run_id` is the run that wrote `target`, None for a folder of no registered run
        (a Hugging Face model). During training use `RunRecorder.evaluation`, which
        never waits for the database."""
        rows = evaluation_rows(report, run_id=run_id, target=target)
        action = f"recording an evaluation of {rows.evaluation['target']}"
        with self.failures_as(action), self.session() as session:
            if run_id is not None and session.get(Run, run_id) is None:
                raise RegistryError(f"no run with id {run_id!r}: give a run's full id")
            session.execute(insert(Evaluation), [rows.evaluation])
            if rows.predictions:
                session.execute(insert(EvalPrediction), rows.predictions)
        return rows.id

    def _upsert_run(self, info: RunInfo) -> str:
        run_dir = os.path.abspath(info.run_dir)
        config = json_safe(mask_config(dict(info.config)))
        with self.session() as session:
            # The server's clock: the first heartbeat is compared with it by the lost rule.
            now = server_time(session)
            run = session.scalars(select(Run).where(Run.run_dir == run_dir)).one_or_none()
            if run is None:
                run = Run(id=uuid.uuid4().hex, created_at=now, run_dir=run_dir)
                run.resume_count, run.last_step = 0, 0
                run.parent_id, run.init_from = info.parent_id, info.init_from
                session.add(run)
            else:
                if run.status == RunStatus.running:
                    log.warning(
                        "run %s in %s was still marked running; reopening it", run.id, run_dir
                    )
                run.resume_count += 1
                log.info("resuming registered run %s (resume %d)", run.id, run.resume_count)
                if info.resume_step is not None:
                    _discard_after(session, run.id, info.resume_step)
                    run.last_step = info.resume_step
            run.name = info.name
            run.status = RunStatus.running
            run.started_at = run.heartbeat_at = now
            run.ended_at, run.error = None, None
            run.config = config
            run.overrides = json_safe(mask_config(list(info.overrides)))
            run.config_hash = config_hash(config)
            run.git_commit, run.git_dirty = info.git_commit, info.git_dirty
            run.host = info.host
            run.device_kind, run.device_count = info.device_kind, info.device_count
            run.versions = json_safe(dict(info.versions))
            run.tb_dir = _abs(info.tb_dir)
            run.checkpoint_dir = _abs(info.checkpoint_dir)
            run.sweep_id = info.sweep_id
            return run.id


def _discard_after(session: Session, run_id: str, step: int) -> None:
    """Forget what run `run_id` recorded after `step` (metric points, checkpoints,
    evaluations); latest values fall back to the last point at or before it."""
    session.execute(
        delete(MetricPoint).where(MetricPoint.run_id == run_id, MetricPoint.step > step)
    )
    session.execute(delete(Checkpoint).where(Checkpoint.run_id == run_id, Checkpoint.step > step))
    # Their predictions go with them (ON DELETE CASCADE).
    session.execute(delete(Evaluation).where(Evaluation.run_id == run_id, Evaluation.step > step))
    stale = select(MetricLatest).where(MetricLatest.run_id == run_id, MetricLatest.step > step)
    for latest in session.scalars(stale).all():
        last = (
            select(MetricPoint)
            .where(MetricPoint.run_id == run_id, MetricPoint.name == latest.name)
            .order_by(MetricPoint.step.desc())
            .limit(1)
        )
        point = session.scalars(last).first()
        if point is None:
            session.delete(latest)
        else:
            latest.step, latest.value, latest.time = point.step, point.value, point.time


def _abs(path: str | Path | None) -> str | None:
    return None if path is None else os.path.abspath(path)
