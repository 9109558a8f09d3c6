"""Hydra multirun sweeps: a registry row per sweep that its runs link to, and a summary
table of every job at the end.

`SweepCallback` is listed under `hydra.callbacks` in conf/train.yaml, so it runs for any
sweeper (grids, tunixrt's Optuna sweeper) and any launcher. The sweep's registry id is
written to `<sweep dir>/sweep.json`, where each job (in this process, a joblib worker
or a SLURM node) reads it when it registers its run.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from tunixrt.files import mask_secrets_in_file
from tunixrt.logs import mask_secrets_in_logs, quiet_libraries
from tunixrt.paths import OUTPUTS
from tunixrt.registry import (
    Registry,
    create_sweep,
    finish_sweep,
    get_run,
    list_runs,
    mask_config,
    mask_text,
    resolve_url,
    swept,
)

log = logging.getLogger(__name__)

SWEEP_FILE = "sweep.json"  # in a sweep's folder: its registry id, for the jobs to link to


def read_sweep_id(sweep_dir: Path) -> str | None:
    """The registry id of the sweep in `sweep_dir`; None when it is not registered."""
    path = sweep_dir / SWEEP_FILE
    return str(json.loads(path.read_text())["id"]) if path.is_file() else None


@dataclass
class JobRow:
    folder: str
    overrides: str
    status: str
    metric: float | None
    error: str = ""


def _job_overrides(job_dir: Path) -> list[str]:
    path = job_dir / ".hydra" / "overrides.yaml"
    return [str(o) for o in OmegaConf.load(path)] if path.is_file() else []


def _last_error(job_dir: Path) -> str:
    """The last ERROR line of a job's log: the error of a job that failed before it
    could register (an invalid config value)."""
    logs = sorted(job_dir.glob("*.log"))
    lines = [
        ln for f in logs for ln in f.read_text(errors="replace").splitlines() if "[ERROR]" in ln
    ]
    return lines[-1].split("] - ", 1)[-1] if lines else "no log"


def job_rows(
    registry: Registry, sweep_id: str, sweep_dir: Path, metric: str, since: float = 0.0
) -> list[JobRow]:
    """One row per job folder of this sweep, joined with its run in the registry. A
    folder left by an earlier sweep in the same place (a restarted search) is skipped:
    its run belongs to another sweep, or it predates this one (`since`, epoch seconds)."""
    runs = {r.run_dir: r for r in list_runs(registry, sweep=sweep_id)}
    rows = []
    job_dirs = [
        p.parent.parent
        for p in sweep_dir.glob("*/.hydra/overrides.yaml")
        if str(p.parent.parent.resolve()) in runs or p.stat().st_mtime >= since
    ]
    job_dirs.sort(key=lambda p: (len(p.name), p.name))
    shown = swept([_job_overrides(d) for d in job_dirs])
    for job_dir, job_overrides in zip(job_dirs, shown, strict=True):
        overrides = mask_text(" ".join(job_overrides))
        run = runs.get(str(job_dir.resolve()))
        if run is None:
            rows.append(JobRow(job_dir.name, overrides, "failed", None, _last_error(job_dir)))
            continue
        error = ""
        if run.status != "completed":
            error = get_run(registry, run.id).error or run.status
        rows.append(JobRow(job_dir.name, overrides, run.status, run.metrics.get(metric), error))
    return rows


def format_table(rows: list[JobRow], metric: str) -> str:
    header = ("job", "overrides", "status", metric)
    body = [
        (r.folder, r.overrides, r.status, "-" if r.metric is None else f"{r.metric:.4f}")
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body, strict=True)]
    lines = [
        "  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True))
        for line in (header, *body)
    ]
    failures = [f"  {r.folder}: {r.error}" for r in rows if r.status != "completed"]
    return "\n".join(lines + (["failures:", *failures] if failures else []))


class SweepCallback(Callback):
    """Registers the sweep when it starts; prints and records its outcome at the end."""

    def __init__(self) -> None:
        self.sweep_id: str | None = None
        self.url: str | None = None
        self.started = 0.0

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        quiet_libraries()
        mask_secrets_in_logs()  # the launchers log each job's overrides
        self.started = time.time() - 1.0  # file times have a coarse resolution
        self.url = resolve_url(config.registry.url, OUTPUTS)
        if self.url is None:
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        params = config.hydra.sweeper.get("params")
        space = {
            "overrides": mask_config(list(config.hydra.overrides.task)),
            "params": OmegaConf.to_container(params) if isinstance(params, DictConfig) else {},
        }
        with Registry.open(self.url) as registry:
            self.sweep_id = create_sweep(
                registry,
                folder=str(sweep_dir.resolve()),
                sweeper=str(config.hydra.sweeper.get("_target_", "")),
                search_space=space,
                optimized_metric=config.optimized_metric,
            )
        (sweep_dir / SWEEP_FILE).write_text(json.dumps({"id": self.sweep_id}) + "\n")
        log.info("sweep %s registered in %s", self.sweep_id, registry.url)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        # The sweeper has written multirun.yaml (the config with its overrides) by now.
        self._mask_multirun_file(config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._mask_multirun_file(config)
        if self.url is None or self.sweep_id is None:
            return
        metric = config.optimized_metric
        with Registry.open(self.url) as registry:
            sweep_dir = Path(config.hydra.sweep.dir)
            rows = job_rows(registry, self.sweep_id, sweep_dir, metric, self.started)
            failed = [r for r in rows if r.status != "completed"]
            finish_sweep(registry, self.sweep_id, "failed" if failed else "completed")
        log.info(
            "sweep %s: %d jobs, %d failed\n%s",
            self.sweep_id,
            len(rows),
            len(failed),
            format_table(rows, metric),
        )
        # A grid's jobs are all wanted: a failure fails the sweep. A search (Optuna) counts
        # failed trials as part of the search and has reported them already.
        if failed and str(config.hydra.sweeper.get("_target_", "")).endswith("BasicSweeper"):
            raise SystemExit(1)

    @staticmethod
    def _mask_multirun_file(config: DictConfig) -> None:
        path = Path(config.hydra.sweep.dir) / "multirun.yaml"
        if path.is_file():
            mask_secrets_in_file(path)
