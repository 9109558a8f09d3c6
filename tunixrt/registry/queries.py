"""Reading the registry (what `tunixrt runs` shows), evaluations, tags and sweeps.

The lost rule: a run whose status is `running` and whose heartbeat is older than the
registry's `lost_after_s` (120 s by default) is lost. Every listing first stores that
status on such rows (best effort; a read-only database still shows it), and a recorder
whose process was only stalled sets its run back to running with its next write.
"Older" is measured on the database server's clock, which also stamps heartbeats, so
hosts whose clocks are skewed agree on which runs are alive.
"""

from __future__ import annotations

import logging
import math
import os
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, Result, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from tunixrt.dotted import flatten
from tunixrt.registry.errors import RegistryError, describe
from tunixrt.registry.evaluations import prediction_dict
from tunixrt.registry.info import json_safe
from tunixrt.registry.models import (
    Checkpoint,
    EvalPrediction,
    Evaluation,
    MetricLatest,
    Run,
    RunStatus,
    Sweep,
    SweepStatus,
    Tag,
    server_time,
    utcnow,
)
from tunixrt.registry.store import Registry

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    id: str
    name: str
    status: str
    created_at: datetime
    started_at: datetime
    ended_at: datetime | None
    heartbeat_at: datetime
    last_step: int
    run_dir: str
    sweep_id: str | None
    resume_count: int
    metrics: dict[str, float | None] = field(default_factory=dict)  # latest values
    tags: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types: ISO 8601 times, null for NaN or infinite values."""
        return {k: _jsonable(v) for k, v in asdict(self).items()}


@dataclass
class CheckpointRecord:
    step: int
    path: str
    metrics: dict[str, Any]
    time: datetime


@dataclass
class RunDetails(RunSummary):
    config: dict[str, Any] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)
    config_hash: str = ""
    git_commit: str | None = None
    git_dirty: bool | None = None
    host: str = ""
    device_kind: str | None = None
    device_count: int | None = None
    versions: dict[str, str] = field(default_factory=dict)
    tb_dir: str | None = None
    checkpoint_dir: str | None = None
    error: str | None = None
    metric_steps: dict[str, int] = field(default_factory=dict)  # step of each latest value
    checkpoints: list[CheckpointRecord] = field(default_factory=list)
    init_from: str | None = None  # the folder its initial weights came from (init.from)
    # The runs it descends from, parent first: each one's weights started the one before.
    lineage: list[Ancestor] = field(default_factory=list)


@dataclass
class Ancestor:
    id: str | None  # None: a parent id no longer registered here
    name: str | None
    init_from: str | None  # the folder this ancestor's own weights started from


@dataclass
class Comparison:
    runs: list[RunSummary]
    config: dict[str, list[Any]]  # dotted key -> value per run, only keys that differ
    metrics: dict[str, list[float | None]]  # latest value per run, every metric

    def to_json(self) -> dict[str, Any]:
        return {
            "runs": [r.to_json() for r in self.runs],
            "config": _jsonable(self.config),
            "metrics": _jsonable(self.metrics),
        }


@dataclass(frozen=True)
class EvaluationSummary:
    """An evaluation's scores and what made them (see models.Evaluation)."""

    id: str
    run_id: str | None
    step: int | None
    target: str
    eval_path: str
    eval_sha256: str
    scorer: str
    scorer_version: str
    generation: dict[str, Any]
    items: int
    correct: int
    accuracy: float
    aggregates: dict[str, Any]
    seconds: float
    new_tokens: int
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {k: _jsonable(v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class EvaluationDetails(EvaluationSummary):
    predictions: tuple[dict[str, Any], ...] = ()  # as Prediction.to_dict(), in file order


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


# -- the lost rule ----------------------------------------------------------------------


def mark_lost(registry: Registry, now: datetime | None = None) -> int:
    """Store `lost` on running runs whose heartbeat is too old at `now` (by default
    the server's time); returns how many."""
    try:
        with registry.session() as session:
            cutoff = (now or server_time(session)) - timedelta(seconds=registry.lost_after_s)
            stmt = (
                update(Run)
                .where(Run.status == RunStatus.running.value, Run.heartbeat_at < cutoff)
                .values(status=RunStatus.lost.value)
            )
            return _rowcount(session.execute(stmt))
    except SQLAlchemyError as err:
        log.warning("registry %s: could not mark lost runs: %s", registry.url, describe(err))
        return 0


def _status(registry: Registry, run: Run, now: datetime) -> str:
    """The status to show at `now`, the server's time (see the lost rule)."""
    stale = now - run.heartbeat_at > timedelta(seconds=registry.lost_after_s)
    return RunStatus.lost.value if run.status == RunStatus.running and stale else run.status


# -- reading runs -----------------------------------------------------------------------


def _summary(registry: Registry, run: Run, now: datetime) -> RunSummary:
    return RunSummary(
        id=run.id,
        name=run.name,
        status=_status(registry, run, now),
        created_at=run.created_at,
        started_at=run.started_at,
        ended_at=run.ended_at,
        heartbeat_at=run.heartbeat_at,
        last_step=run.last_step,
        run_dir=run.run_dir,
        sweep_id=run.sweep_id,
        resume_count=run.resume_count,
    )


def _attach(session: Session, runs: list[RunSummary]) -> None:
    """Fill in latest metrics and tags with one query each."""
    by_id = {r.id: r for r in runs}
    if not by_id:
        return
    latest = select(MetricLatest).where(MetricLatest.run_id.in_(by_id)).order_by(MetricLatest.name)
    for m in session.scalars(latest):
        by_id[m.run_id].metrics[m.name] = m.value
    for t in session.scalars(select(Tag).where(Tag.run_id.in_(by_id)).order_by(Tag.key)):
        by_id[t.run_id].tags[t.key] = t.value


def list_runs(
    registry: Registry,
    *,
    status: str | None = None,
    sweep: str | None = None,
    name: str | None = None,
    limit: int | None = None,
) -> list[RunSummary]:
    """Runs newest first. `sweep` matches a sweep id or its prefix, `name` a substring."""
    if status is not None:
        status = RunStatus(status).value
    mark_lost(registry)
    query = select(Run).order_by(Run.created_at.desc(), Run.id)
    if status is not None:
        query = query.where(Run.status == status)
    if sweep is not None:
        query = query.where(Run.sweep_id.startswith(sweep, autoescape=True))
    if name is not None:
        query = query.where(Run.name.contains(name, autoescape=True))
    if limit is not None:
        query = query.limit(limit)
    with registry.failures_as("listing runs"), registry.session(read_only=True) as session:
        now = server_time(session)
        runs = [_summary(registry, run, now) for run in session.scalars(query)]
        _attach(session, runs)
    return runs


def run_id_of_folder(registry: Registry, run_dir: str | Path) -> str | None:
    """The id of the run registered with folder `run_dir`; None when none is."""
    query = select(Run.id).where(Run.run_dir == os.path.abspath(run_dir))
    with registry.failures_as("finding a run"), registry.session(read_only=True) as session:
        return session.scalars(query).first()


def resolve_run_id(session: Session, id_or_prefix: str) -> str:
    """The full id of the one run whose id is or starts with `id_or_prefix`."""
    return _resolve_id(session, Run, id_or_prefix, " (see `tunixrt runs list`)")


def _resolve_id(
    session: Session, model: type[Run | Evaluation], id_or_prefix: str, hint: str = ""
) -> str:
    """The full id of the one `model` row whose id is or starts with `id_or_prefix`."""
    noun = model.__tablename__.removesuffix("s")
    key = id_or_prefix.strip().lower()
    if not key:
        raise RegistryError(f"empty {noun} id")
    if session.get(model, key) is not None:
        return key
    query = select(model.id).where(model.id.startswith(key, autoescape=True)).limit(6)
    matches = list(session.scalars(query))
    if not matches:
        raise RegistryError(f"no {noun} with id {id_or_prefix!r}{hint}")
    if len(matches) > 1:
        shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
        raise RegistryError(
            f"{noun} id prefix {id_or_prefix!r} is ambiguous: it matches {shown}; give more "
            "characters"
        )
    return matches[0]


def _lineage(session: Session, run: Run) -> list[Ancestor]:
    """`run`'s parent, its parent's parent and so on (a cycle, impossible by
    construction, would stop at the first repeat)."""
    chain: list[Ancestor] = []
    seen = {run.id}
    child = run
    while child.parent_id is not None and child.parent_id not in seen:
        parent = session.get(Run, child.parent_id)
        if parent is None:
            chain.append(Ancestor(None, None, None))
            break
        chain.append(Ancestor(parent.id, parent.name, parent.init_from))
        seen.add(parent.id)
        child = parent
    return chain


def get_run(registry: Registry, id_or_prefix: str) -> RunDetails:
    mark_lost(registry)
    with registry.failures_as("reading a run"), registry.session(read_only=True) as session:
        now = server_time(session)
        run = session.get_one(Run, resolve_run_id(session, id_or_prefix))
        details = RunDetails(
            **vars(_summary(registry, run, now)),
            config=run.config,
            overrides=run.overrides,
            config_hash=run.config_hash,
            git_commit=run.git_commit,
            git_dirty=run.git_dirty,
            host=run.host,
            device_kind=run.device_kind,
            device_count=run.device_count,
            versions=run.versions,
            tb_dir=run.tb_dir,
            checkpoint_dir=run.checkpoint_dir,
            error=run.error,
            init_from=run.init_from,
            lineage=_lineage(session, run),
        )
        _attach(session, [details])
        steps = select(MetricLatest.name, MetricLatest.step).where(MetricLatest.run_id == run.id)
        details.metric_steps = {row.name: row.step for row in session.execute(steps)}
        ckpts = select(Checkpoint).where(Checkpoint.run_id == run.id).order_by(Checkpoint.step)
        details.checkpoints = [
            CheckpointRecord(step=c.step, path=c.path, metrics=c.metrics, time=c.time)
            for c in session.scalars(ckpts)
        ]
    return details


def compare_runs(registry: Registry, ids: Sequence[str]) -> Comparison:
    """Config keys whose values differ (a key missing from a run counts as null) and
    every metric's latest value, one column per run in the order given."""
    details = [get_run(registry, i) for i in ids]
    flat = [flatten(d.config) for d in details]
    keys = sorted(set().union(*flat))
    config = {k: [f.get(k) for f in flat] for k in keys}
    config = {k: vals for k, vals in config.items() if any(v != vals[0] for v in vals)}
    names = sorted(set().union(*(d.metrics for d in details)))
    metrics = {n: [d.metrics.get(n) for d in details] for n in names}
    summaries = [
        RunSummary(**{k: getattr(d, k) for k in RunSummary.__dataclass_fields__}) for d in details
    ]
    return Comparison(runs=summaries, config=config, metrics=metrics)


# -- evaluations ------------------------------------------------------------------------


def _evaluation_summary(row: Evaluation) -> EvaluationSummary:
    fields = EvaluationSummary.__dataclass_fields__
    return EvaluationSummary(**{name: getattr(row, name) for name in fields})


def _evaluation_details(session: Session, row: Evaluation) -> EvaluationDetails:
    query = (
        select(EvalPrediction)
        .where(EvalPrediction.evaluation_id == row.id)
        .order_by(EvalPrediction.position)
    )
    predictions = tuple(prediction_dict(p) for p in session.scalars(query))
    return EvaluationDetails(**vars(_evaluation_summary(row)), predictions=predictions)


def get_evaluation(registry: Registry, id_or_prefix: str) -> EvaluationDetails:
    """The evaluation whose id is or starts with `id_or_prefix`, with its predictions."""
    with registry.failures_as("reading an evaluation"), registry.session(read_only=True) as session:
        row = session.get_one(Evaluation, _resolve_id(session, Evaluation, id_or_prefix))
        return _evaluation_details(session, row)


def latest_evaluation(registry: Registry, run_id: str) -> EvaluationDetails | None:
    """The evaluation of run `run_id` (an id or its prefix) recorded last, with its
    predictions; None when the run has none."""
    with registry.failures_as("reading an evaluation"), registry.session(read_only=True) as session:
        query = (
            select(Evaluation)
            .where(Evaluation.run_id == resolve_run_id(session, run_id))
            .order_by(Evaluation.created_at.desc(), Evaluation.id.desc())
            .limit(1)
        )
        row = session.scalars(query).first()
        return None if row is None else _evaluation_details(session, row)


def list_evaluations(
    registry: Registry, run_id: str | None = None, *, limit: int | None = None
) -> list[EvaluationSummary]:
    """Evaluations newest first, of run `run_id` (an id or its prefix) or of every
    folder; without their predictions."""
    query = select(Evaluation).order_by(Evaluation.created_at.desc(), Evaluation.id.desc())
    with registry.failures_as("listing evaluations"), registry.session(read_only=True) as session:
        if run_id is not None:
            query = query.where(Evaluation.run_id == resolve_run_id(session, run_id))
        return [_evaluation_summary(row) for row in session.scalars(query.limit(limit))]


# -- tags and sweeps --------------------------------------------------------------------


def tag_run(registry: Registry, id_or_prefix: str, key: str, value: str) -> str:
    """Set tag `key` of a run to `value` (replacing it); returns the full run id."""
    if not key:
        raise RegistryError("a tag needs a key: KEY=VALUE")
    with registry.failures_as("tagging a run"), registry.session() as session:
        run_id = resolve_run_id(session, id_or_prefix)
        tag = session.get(Tag, (run_id, key))
        if tag is None:
            session.add(Tag(run_id=run_id, key=key, value=value))
        else:
            tag.value = value
    return run_id


def create_sweep(
    registry: Registry,
    *,
    folder: str,
    sweeper: str,
    search_space: Any,
    optimized_metric: str | None = None,
) -> str:
    """Register a running sweep; pass its id as RunInfo.sweep_id of each of its runs."""
    sweep = Sweep(
        id=uuid.uuid4().hex,
        folder=folder,
        sweeper=sweeper,
        search_space=json_safe(search_space),
        status=SweepStatus.running.value,
        optimized_metric=optimized_metric,
        created_at=utcnow(),
    )
    with registry.failures_as("registering a sweep"), registry.session() as session:
        session.add(sweep)
    return sweep.id


def finish_sweep(registry: Registry, sweep_id: str, status: str = "completed") -> None:
    status = SweepStatus(status).value
    stmt = update(Sweep).where(Sweep.id == sweep_id).values(status=status, ended_at=utcnow())
    with registry.failures_as("finishing a sweep"), registry.session() as session:
        if _rowcount(session.execute(stmt)) == 0:
            raise RegistryError(f"no sweep with id {sweep_id!r}")


def _rowcount(result: Result[Any]) -> int:
    """Rows an UPDATE matched: its result is a CursorResult, though Session.execute is
    typed as returning the base Result."""
    return int(cast(CursorResult[Any], result).rowcount)
