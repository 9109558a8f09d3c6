"""Registry throughput: run rows and metric points written per second, by one process
and by several at once. It writes throwaway runs: point it at a scratch database."""

from __future__ import annotations

import multiprocessing as mp
import tempfile
import time
from typing import Any

from tunixrt.registry.info import RunInfo
from tunixrt.registry.store import Registry

METRICS = {"train/loss": 1.0, "train/lr": 1e-3, "train/grad_norm": 0.5, "perf/tokens_per_sec": 1e4}


def _single(url: str, folder: str, runs: int, steps: int) -> dict[str, float]:
    with Registry.open(url) as reg:
        start = time.perf_counter()
        for i in range(runs):
            reg.start_run(
                RunInfo(name=f"bench-{i}", run_dir=f"{folder}/run{i}", config={"seed": i})
            )
        rows = runs / (time.perf_counter() - start)
        # write_every_s=0: the writer writes as soon as anything is pending
        rec = reg.start_run(RunInfo(name="bench-metrics", run_dir=f"{folder}/m"), write_every_s=0.0)
        start = time.perf_counter()
        for step in range(steps):
            rec.log_metrics(step, METRICS)
        per_call = (time.perf_counter() - start) / steps  # what the training loop pays
        rec.finish("completed", last_step=steps)
        written = time.perf_counter() - start  # until the last point is in the database
    return {
        "run_rows_per_s": rows,
        "metric_points_per_s": steps * len(METRICS) / written,
        "ms_per_log_call": 1000 * per_call,
    }


def _worker(url: str, folder: str, i: int, steps: int, barrier: Any, out: Any) -> None:
    with Registry.open(url) as reg:
        rec = reg.start_run(
            RunInfo(name=f"bench-p{i}", run_dir=f"{folder}/p{i}"), write_every_s=0.0
        )
        barrier.wait()
        start = time.perf_counter()
        for step in range(steps):
            rec.log_metrics(step, METRICS)
        rec.finish("completed", last_step=steps)
        out.put((start, time.perf_counter()))


def _concurrent(url: str, folder: str, processes: int, steps: int) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(processes), ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(url, folder, i, steps, barrier, out))
        for i in range(processes)
    ]
    for p in procs:
        p.start()
    spans = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    seconds = max(e for _, e in spans) - min(s for s, _ in spans)
    return {
        "concurrent_processes": processes,
        "concurrent_metric_points_per_s": processes * steps * len(METRICS) / seconds,
    }


def bench_registry(url: str | None, *, runs: int, steps: int, processes: int) -> dict[str, Any]:
    """Figures for `url`, or for a temporary SQLite file when `url` is None."""
    with tempfile.TemporaryDirectory() as tmp:
        target = url or f"sqlite:///{tmp}/bench.db"
        result: dict[str, Any] = {"backend": target.split(":", 1)[0]}
        result |= _single(target, f"{tmp}/single", runs, steps)
        if processes > 0:
            result |= _concurrent(target, f"{tmp}/multi", processes, steps)
    return result
