"""Several processes at once: first use of an empty database, then 8 writers; and a
run killed with SIGKILL, which shows as lost. Processes are spawned, not forked."""

from __future__ import annotations

import multiprocessing as mp
import queue
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select

from tests.helpers import registry_workers
from tunixrt.registry import Registry, get_run, head_revision, list_runs
from tunixrt.registry.migrate import VERSION_TABLE
from tunixrt.registry.models import Checkpoint, MetricLatest, MetricPoint, Run

WORKERS, STEPS, METRICS = 8, 50, 4  # 200 metric points per worker, 50 transactions


def test_first_use_and_concurrent_writers(registry_url: str, tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(WORKERS), ctx.Queue()
    procs = [
        ctx.Process(
            target=registry_workers.open_and_write,
            args=(registry_url, str(tmp_path / f"w{i}"), i, STEPS, barrier, out),
        )
        for i in range(WORKERS)
    ]
    for p in procs:
        p.start()
    results = []
    try:
        for _ in procs:
            results.append(out.get(timeout=120))
    except queue.Empty:
        pass
    for p in procs:
        p.join(timeout=30)
    assert sorted(r["index"] for r in results) == list(range(WORKERS)), results
    for r in results:
        assert r["error"] is None and r["warnings"] == [], r
    assert all(p.exitcode == 0 for p in procs)

    with Registry.open(registry_url) as reg, reg.session() as s:
        assert s.scalars(select(VERSION_TABLE.c.version_num)).all() == [head_revision()]
        assert s.scalar(select(func.count()).select_from(Run)) == WORKERS
        points = s.scalar(select(func.count()).select_from(MetricPoint))
        assert points == WORKERS * STEPS * METRICS
        assert s.scalar(select(func.count()).select_from(MetricLatest)) == WORKERS * METRICS
        assert s.scalar(select(func.count()).select_from(Checkpoint)) == WORKERS
        statuses = s.scalars(select(Run.status).distinct()).all()
        assert statuses == ["completed"]


def test_sigkilled_run_is_lost(registry_url: str, tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    proc = ctx.Process(target=registry_workers.start_and_die, args=(registry_url, str(tmp_path)))
    proc.start()
    proc.join(timeout=60)
    assert proc.exitcode == -9
    with Registry.open(registry_url, lost_after_s=0.5) as reg:
        (run,) = list_runs(reg)
        if run.status == "running":  # killed less than lost_after_s ago
            time.sleep(max(0.0, 0.6 - (time.time() - run.heartbeat_at.timestamp())))
            (run,) = list_runs(reg)
        assert (run.status, run.last_step, run.metrics) == ("lost", 3, {"loss": 2.5})
        details = get_run(reg, run.id)
        assert details.ended_at is None
        assert details.heartbeat_at - details.started_at < timedelta(seconds=30)
