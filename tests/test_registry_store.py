"""Run lifecycle rows, resume, the lost rule, queries, and writes that outlive an
unreachable registry; on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import math
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from tests.helpers.registry import fresh_pg_database, pg_admin, pg_url, sqlite_url
from tunixrt.registry import (
    Registry,
    RegistryError,
    RegistryWriter,
    RunInfo,
    compare_runs,
    create_sweep,
    finish_sweep,
    get_run,
    list_runs,
    mark_lost,
    tag_run,
)
from tunixrt.registry.models import Checkpoint, MetricLatest, MetricPoint, Run, utcnow

SECRET = "s3cret-pw"


def info(tmp_path: Path, name: str = "r", **kw: object) -> RunInfo:
    return RunInfo(name=name, run_dir=tmp_path / name, **kw)  # type: ignore[arg-type]


def test_run_lifecycle_rows(registry_url: str, tmp_path: Path) -> None:
    config = {"optimizer": {"lr": 3e-4}, "registry": {"url": f"postgresql://u:{SECRET}@h/db"}}
    with Registry.open(registry_url) as reg:
        rec = reg.start_run(
            info(
                tmp_path,
                config=config,
                overrides=["optimizer.lr=3e-4", f"registry.url=postgresql://u:{SECRET}@h/db"],
                tb_dir=tmp_path / "r" / "tb",
                device_kind="cpu",
                device_count=2,
                versions={"jax": "0.10.2"},
                git_commit="abc",
                git_dirty=True,
            ),
            write_every_s=0.0,
        )
        rec.heartbeat(1)
        for step in (5, 10):
            rec.log_metrics(step, {"train/loss": 10.0 / step, "train/lr": 3e-4})
        rec.log_metrics(10, {"eval/loss": float("nan")})
        rec.checkpoint(10, str(tmp_path / "r" / "checkpoints" / "10"), {"train/loss": 1.0})
        assert rec.finish("completed", last_step=10)

        with reg.session() as s:
            run = s.get_one(Run, rec.id)
            history = s.scalars(select(MetricPoint).order_by(MetricPoint.name, MetricPoint.step))
            points = [(p.name, p.step, p.value) for p in history]
            latest = {m.name: (m.step, m.value) for m in s.scalars(select(MetricLatest))}
            ckpts = [(c.step, c.metrics) for c in s.scalars(select(Checkpoint))]
        assert run.status == "completed" and run.last_step == 10 and run.ended_at is not None
        assert run.started_at.tzinfo is not None and run.ended_at >= run.started_at
        assert (run.device_kind, run.device_count, run.git_dirty) == ("cpu", 2, True)
        assert run.run_dir == str(tmp_path / "r") and run.tb_dir == str(tmp_path / "r" / "tb")
        assert SECRET not in str(run.config) + str(run.overrides)
        assert run.config["registry"]["url"] == "postgresql://u:***@h/db"
        assert len(run.config_hash) == 64
        assert points == [
            ("eval/loss", 10, None),
            ("train/loss", 5, 2.0),
            ("train/loss", 10, 1.0),
            ("train/lr", 5, 3e-4),
            ("train/lr", 10, 3e-4),
        ]
        assert latest == {"train/loss": (10, 1.0), "train/lr": (10, 3e-4), "eval/loss": (10, None)}
        assert ckpts == [(10, {"train/loss": 1.0})]


@pytest.mark.parametrize("status", ["failed", "preempted"])
def test_failed_and_preempted(registry_url: str, tmp_path: Path, status: str) -> None:
    with Registry.open(registry_url) as reg:
        rec = reg.start_run(info(tmp_path))
        rec.log_metrics(7, {"loss": 1.0})
        error = f"NonFiniteError: loss is nan (registry postgresql://u:{SECRET}@h/db)"
        assert rec.finish(status, error=error if status == "failed" else None, last_step=7)
        run = get_run(reg, rec.id)
    assert (run.status, run.last_step) == (status, 7)
    if status == "failed":
        assert run.error is not None and "loss is nan" in run.error and SECRET not in run.error
    else:
        assert run.error is None


def test_resume_reuses_the_row(registry_url: str, tmp_path: Path) -> None:
    with Registry.open(registry_url) as reg:
        first = reg.start_run(info(tmp_path, config={"lr": 1}))
        first.log_metrics(20, {"loss": 2.0})
        first.finish("preempted", last_step=20)
        again = reg.start_run(info(tmp_path, config={"lr": 1}))
        again.log_metrics(20, {"loss": 1.5})  # re-logged step after the restore
        again.log_metrics(25, {"loss": 1.0})
        again.finish("completed", last_step=25)
        other = reg.start_run(info(tmp_path, name="other"))
        run = get_run(reg, first.id)
    assert again.id == first.id != other.id
    assert (run.status, run.resume_count, run.last_step) == ("completed", 1, 25)
    assert run.started_at > run.created_at and run.metrics == {"loss": 1.0}
    assert len(list_runs(reg)) == 2


def test_resume_from_a_checkpoint_drops_later_records(registry_url: str, tmp_path: Path) -> None:
    with Registry.open(registry_url) as reg:
        first = reg.start_run(info(tmp_path))
        for step in (10, 20, 30):
            first.log_metrics(step, {"loss": 1.0 / step, "acc": step / 100})
            first.checkpoint(step, f"/ckpt/{step}")
        first.log_metrics(35, {"loss": 0.01})  # "acc" was last logged at 30
        first.finish("preempted", last_step=35)
        again = reg.start_run(info(tmp_path, resume_step=20))
        run = get_run(reg, again.id)
        with reg.session() as s:
            steps = s.scalars(select(MetricPoint.step).where(MetricPoint.name == "loss"))
            assert sorted(steps) == [10, 20]
    assert [c.step for c in run.checkpoints] == [10, 20] and run.last_step == 20
    assert run.metrics == {"acc": 0.2, "loss": 0.05} and run.metric_steps == {"acc": 20, "loss": 20}


def test_lost_rule(registry_url: str, tmp_path: Path) -> None:
    with Registry.open(registry_url, lost_after_s=60) as reg:
        stale = reg.start_run(info(tmp_path, name="stale"))
        fresh = reg.start_run(info(tmp_path, name="fresh"))
        done = reg.start_run(info(tmp_path, name="done"))
        done.finish("completed")
        old = utcnow() - timedelta(seconds=61)
        with reg.session() as s:
            s.execute(update(Run).where(Run.id != fresh.id).values(heartbeat_at=old))
        statuses = {r.name: r.status for r in list_runs(reg)}
        assert statuses == {"stale": "lost", "fresh": "running", "done": "completed"}
        with reg.session() as s:
            assert s.get_one(Run, stale.id).status == "lost"  # stored, not only shown
        assert [r.name for r in list_runs(reg, status="lost")] == ["stale"]
        assert mark_lost(reg) == 0
        stale.heartbeat(5)  # the process was only stalled: its next write revives it
        stale.flush()
        assert get_run(reg, stale.id).status == "running"


def test_queries_tags_sweeps_and_compare(registry_url: str, tmp_path: Path) -> None:
    with Registry.open(registry_url) as reg:
        sweep = create_sweep(reg, folder=str(tmp_path), sweeper="basic", search_space=["lr=1,2"])
        recs = []
        for i, lr in enumerate([1e-3, 3e-4]):
            config = {"optimizer": {"lr": lr, "name": "adamw"}, "seed": i, "model": {"dim": 64}}
            rec = reg.start_run(info(tmp_path, name=f"lr{i}", config=config, sweep_id=sweep))
            rec.log_metrics(10, {"loss": 2.0 - i, "lr": lr})
            rec.finish("completed")
            recs.append(rec)
        reg.start_run(info(tmp_path, name="solo", config={"optimizer": {"lr": 1e-3}}))
        finish_sweep(reg, sweep)

        assert [r.name for r in list_runs(reg)] == ["solo", "lr1", "lr0"]  # newest first
        assert [r.name for r in list_runs(reg, sweep=sweep[:6])] == ["lr1", "lr0"]
        assert [r.name for r in list_runs(reg, name="lr")] == ["lr1", "lr0"]
        assert [r.name for r in list_runs(reg, status="running", limit=5)] == ["solo"]
        assert len(list_runs(reg, limit=1)) == 1

        assert tag_run(reg, recs[0].id[:10], "note", "baseline") == recs[0].id
        tag_run(reg, recs[0].id, "note", "best")  # replaces
        assert get_run(reg, recs[0].id[:5]).tags == {"note": "best"}

        result = compare_runs(reg, [recs[0].id, recs[1].id[:7]])
        assert result.config == {"optimizer.lr": [1e-3, 3e-4], "seed": [0, 1]}
        assert result.metrics == {"loss": [2.0, 1.0], "lr": [1e-3, 3e-4]}
        assert [r.id for r in result.runs] == [recs[0].id, recs[1].id]

        with pytest.raises(RegistryError, match="no run with id"):
            get_run(reg, "zzzz")
        with pytest.raises(RegistryError, match="no sweep"):
            finish_sweep(reg, "nope")


def test_ambiguous_prefix(registry_url: str, tmp_path: Path) -> None:
    with Registry.open(registry_url) as reg:
        ids = {reg.start_run(info(tmp_path, name=f"r{i}")).id for i in range(40)}
        first_chars = [i[0] for i in ids]
        shared = max(set(first_chars), key=first_chars.count)  # 40 runs, 16 digits
        with pytest.raises(RegistryError, match="ambiguous"):
            get_run(reg, shared)


def test_registry_writer(registry_url: str, tmp_path: Path) -> None:
    with Registry.open(registry_url) as reg:
        rec = reg.start_run(info(tmp_path), write_every_s=3600.0)  # buffer until flush
        writer = RegistryWriter(rec)
        writer.write_scalars(1, {"loss": 3.0})
        writer.write_text(1, "config", "ignored")
        writer.write_scalars(2, {"loss": 2.0})
        assert rec.pending > 0 and get_run(reg, rec.id).metrics == {}
        writer.flush()
        assert rec.pending == 0 and get_run(reg, rec.id).metrics == {"loss": 2.0}
        writer.write_scalars(3, {"loss": 1.0})
        writer.close()
        assert get_run(reg, rec.id).last_step == 3


def test_keepalive_heartbeats(registry_url: str, tmp_path: Path) -> None:
    with Registry.open(registry_url) as reg:
        rec = reg.start_run(info(tmp_path))
        before = get_run(reg, rec.id).heartbeat_at
        rec.start_keepalive(interval_s=0.05)
        deadline = utcnow() + timedelta(seconds=5)
        while get_run(reg, rec.id).heartbeat_at == before and utcnow() < deadline:
            pass
        rec.finish("completed")
        assert get_run(reg, rec.id).heartbeat_at > before


def test_unreachable_at_start_is_a_clear_error() -> None:
    url = f"postgresql+psycopg://postgres:{SECRET}@127.0.0.1:1/nope"
    with pytest.raises(RegistryError, match="cannot open registry") as err:
        Registry.open(url)
    assert SECRET not in str(err.value) and "postgres:***@127.0.0.1:1" in str(err.value)


def _outage_checks(
    reg: Registry, rec, caplog: pytest.LogCaptureFixture, go_away, come_back
) -> None:  # type: ignore[no-untyped-def]
    rec.log_metrics(1, {"loss": 3.0})
    go_away()
    with caplog.at_level(logging.INFO, logger="tunixrt.registry"):
        for step in range(2, 12):
            rec.log_metrics(step, {"loss": 3.0 / step})  # must not raise
        rec.checkpoint(11, "/ckpt/11")
        assert not rec.flush()  # waits for the writer's attempt, which fails
        assert rec.pending > 0
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "unreachable" in warnings[0].getMessage()
        come_back()
        assert rec.flush()
        assert any("reachable again" in r.getMessage() for r in caplog.records)
    assert SECRET not in caplog.text
    rec.finish("completed", last_step=11)
    run = get_run(reg, rec.id)
    assert (run.status, run.last_step, [c.step for c in run.checkpoints]) == ("completed", 11, [11])
    with reg.session() as s:
        steps = s.scalars(select(MetricPoint.step).where(MetricPoint.run_id == rec.id))
        assert sorted(steps) == list(range(1, 12))
    assert math.isclose(run.metrics["loss"], 3.0 / 11)


def test_sqlite_locked_mid_run(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Another process holds the write lock longer than the busy timeout."""
    path = tmp_path / "registry.db"
    reg = Registry.open(sqlite_url(path), busy_timeout_s=0.1)
    rec = reg.start_run(info(tmp_path), write_every_s=0.0)
    blocker = sqlite3.connect(path, isolation_level=None)

    def go_away() -> None:
        blocker.execute("BEGIN EXCLUSIVE")

    def come_back() -> None:
        blocker.execute("ROLLBACK")

    try:
        _outage_checks(reg, rec, caplog, go_away, come_back)
    finally:
        blocker.close()
        reg.close()


def test_postgres_offline_mid_run(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    """The database refuses connections and its sessions are killed, then returns."""
    with fresh_pg_database() as name:
        reg = Registry.open(pg_url(name, password=SECRET))
        rec = reg.start_run(info(tmp_path), write_every_s=0.0)

        def allow(flag: bool) -> None:
            with pg_admin() as admin:
                admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(flag).lower()}')
                if not flag:
                    admin.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                        (name,),
                    )

        try:
            _outage_checks(reg, rec, caplog, lambda: allow(False), lambda: allow(True))
        finally:
            allow(True)
            reg.close()
