"""A sweep's runs ranked by its optimized metric, with the swept keys as columns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from tunixrt.config import METRIC_MODES
from tunixrt.registry.errors import RegistryError
from tunixrt.registry.models import Sweep
from tunixrt.registry.queries import RunSummary, list_runs
from tunixrt.registry.store import Registry
from tunixrt.registry.urls import mask_text


def swept(overrides: Sequence[Sequence[str]]) -> list[list[str]]:
    """Each job's overrides reduced to the keys whose values differ between jobs."""
    values: dict[str, set[str]] = {}
    for job in overrides:
        for o in job:
            key, _, value = o.partition("=")
            values.setdefault(key, set()).add(value)
    varying = {k for k, v in values.items() if len(v) > 1 or len(overrides) == 1}
    return [[o for o in job if o.partition("=")[0] in varying] for job in overrides]


@dataclass
class Leaderboard:
    sweep_id: str
    folder: str
    status: str
    metric: str
    keys: list[str]  # the swept keys, one column each
    rows: list[dict[str, Any]]  # id, name, status, each key, the metric; best first

    def to_json(self) -> dict[str, Any]:
        return {
            "sweep": self.sweep_id,
            "folder": self.folder,
            "status": self.status,
            "metric": self.metric,
            "keys": self.keys,
            "runs": self.rows,
        }


def _find_sweep(registry: Registry, sweep: str) -> Sweep:
    with registry.failures_as("reading sweeps"), registry.session(read_only=True) as session:
        query = select(Sweep).order_by(Sweep.created_at.desc())
        if sweep != "latest":
            query = query.where(Sweep.id.startswith(sweep.strip().lower(), autoescape=True))
        found = list(session.scalars(query.limit(2)))
        for s in found:
            session.expunge(s)
    if not found:
        raise RegistryError(f"no sweep matches {sweep!r} (sweeps are made by tunixrt-train -m)")
    if sweep != "latest" and len(found) > 1:
        raise RegistryError(f"sweep id prefix {sweep!r} is ambiguous; give more characters")
    return found[0]


def _row(run: RunSummary, overrides: list[str], metric: str) -> dict[str, Any]:
    row: dict[str, Any] = {"id": run.id, "name": run.name, "status": run.status}
    row.update(dict(o.partition("=")[::2] for o in overrides))
    row[metric] = run.metrics.get(metric)
    return row


def leaderboard(registry: Registry, sweep: str = "latest") -> Leaderboard:
    """The runs of `sweep` (an id, a prefix or "latest"), best metric first (lowest,
    or highest for eval/accuracy); runs without the metric (failed, still running) last."""
    from tunixrt.registry.queries import get_run

    found = _find_sweep(registry, sweep)
    metric = found.optimized_metric or "eval/loss"
    runs = list_runs(registry, sweep=found.id)
    overrides = [[mask_text(o) for o in get_run(registry, r.id).overrides] for r in runs]
    shown = swept(overrides)
    keys = sorted({o.partition("=")[0] for job in shown for o in job})
    rows = [_row(r, o, metric) for r, o in zip(runs, shown, strict=True)]
    sign = -1.0 if METRIC_MODES.get(metric) == "max" else 1.0
    rows.sort(key=lambda r: (r[metric] is None, sign * r[metric] if r[metric] is not None else 0.0))
    return Leaderboard(found.id, found.folder, found.status, metric, keys, rows)
