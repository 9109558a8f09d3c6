"""`tunixrt runs`: list, show, compare and tag registered runs.

The registry is --registry URL, else $TUNIXRT_REGISTRY_URL, else outputs/registry.db
under the current folder. Run ids may be shortened to any unique prefix.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tunixrt.registry import Registry, RunDetails, RunSummary

SHORT = 8  # id characters shown in tables; any unique prefix is accepted back
STATUSES = ("running", "completed", "failed", "preempted", "lost")


def registry_options() -> argparse.ArgumentParser:
    """Options every registry command takes (an argparse parent parser)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--registry",
        metavar="URL",
        help="SQLAlchemy URL (default: $TUNIXRT_REGISTRY_URL, else outputs/registry.db)",
    )
    return parent


def open_registry(args: argparse.Namespace) -> Registry:
    from tunixrt.registry import Registry
    from tunixrt.registry.urls import cli_url

    return Registry.open_existing(cli_url(args.registry), lost_after_s=args.lost_after)


# -- output helpers -----------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Plain-text columns; a column of numbers is right-aligned."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    numeric = [all(_is_number(r[i]) for r in cells if r[i] != "-") for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        out = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(out).rstrip()

    return "\n".join([line(headers), *(line(r) for r in cells)])


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _write(text: str) -> int:
    sys.stdout.write(text + "\n")
    return 0


def _write_json(obj: Any) -> int:
    return _write(json.dumps(obj, indent=2))


# -- subcommands --------------------------------------------------------------------------


def _metric_columns(runs: Sequence[RunSummary], chosen: Sequence[str] | None) -> list[str]:
    if chosen:
        return list(chosen)
    names = sorted(
        {n for r in runs for n in r.metrics if n.endswith("loss") or n == "eval/accuracy"}
    )
    return names[:4]


def _list(args: argparse.Namespace) -> int:
    from tunixrt.registry import list_runs

    with open_registry(args) as reg:
        runs = list_runs(
            reg, status=args.status, sweep=args.sweep, name=args.name, limit=args.limit
        )
    if args.json:
        return _write_json([r.to_json() for r in runs])
    metrics = _metric_columns(runs, args.metric)
    headers = ["ID", "NAME", "STATUS", "CREATED (UTC)", "STEP", *metrics]
    rows = [
        [r.id[:SHORT], r.name, r.status, r.created_at, r.last_step]
        + [r.metrics.get(m) for m in metrics]
        for r in runs
    ]
    return _write(table(headers, rows) if runs else "no runs")


def _show_text(d: RunDetails) -> str:
    git = None if d.git_commit is None else d.git_commit[:12] + (" (dirty)" if d.git_dirty else "")
    device = None if d.device_kind is None else f"{d.device_kind} x {d.device_count}"
    fields = [
        ("id", d.id),
        ("name", d.name),
        ("status", d.status + (f" (resumed {d.resume_count}x)" if d.resume_count else "")),
        ("error", d.error),
        ("created", d.created_at),
        ("started", d.started_at),
        ("ended", d.ended_at),
        ("heartbeat", d.heartbeat_at),
        ("last step", d.last_step),
        ("host", d.host),
        ("device", device),
        ("git", git),
        ("sweep", d.sweep_id),
        ("run dir", d.run_dir),
        ("tb dir", d.tb_dir),
        ("checkpoint dir", d.checkpoint_dir),
        ("config hash", d.config_hash),
        ("tags", " ".join(f"{k}={v}" for k, v in d.tags.items()) or None),
    ]
    parts = ["\n".join(f"{k + ':':16}{_cell(v)}" for k, v in fields if v is not None)]
    if d.init_from is not None:
        parts.append("lineage (each started from the weights below it)\n" + _lineage_text(d))
    if d.metrics:
        rows: list[list[Any]] = [[n, d.metric_steps.get(n), v] for n, v in d.metrics.items()]
        parts.append("latest metrics\n" + table(["NAME", "STEP", "VALUE"], rows))
    if d.checkpoints:
        rows = [[c.step, c.time, c.path, c.metrics or None] for c in d.checkpoints]
        parts.append("checkpoints\n" + table(["STEP", "SAVED (UTC)", "PATH", "METRICS"], rows))
    if d.overrides:
        parts.append("overrides\n" + "\n".join(d.overrides))
    from tunixrt.dotted import flatten

    parts.append("config\n" + "\n".join(f"{k} = {_cell(v)}" for k, v in flatten(d.config).items()))
    if d.versions:
        parts.append("versions\n" + "\n".join(f"{k} {v}" for k, v in sorted(d.versions.items())))
    return "\n\n".join(parts)


def _lineage_text(d: RunDetails) -> str:
    rows: list[list[Any]] = [["this run", d.name, d.init_from]]
    for a in d.lineage:
        ident = "(not registered here)" if a.id is None else a.id[:SHORT]
        rows.append([ident, a.name, a.init_from or "its own initialisation"])
    return table(["RUN", "NAME", "STARTED FROM"], rows)


def _show(args: argparse.Namespace) -> int:
    from tunixrt.registry import get_run

    with open_registry(args) as reg:
        details = get_run(reg, args.id)
    return _write_json(details.to_json()) if args.json else _write(_show_text(details))


def _compare_sweep(args: argparse.Namespace) -> int:
    from tunixrt.registry import leaderboard

    with open_registry(args) as reg:
        board = leaderboard(reg, args.sweep)
    columns = ["id", "status", *board.keys, board.metric]
    if args.json:
        return _write_json(board.to_json())
    if args.csv:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[r.get(c, "") for c in columns] for r in board.rows])
        return _write(out.getvalue().rstrip("\n"))
    rows = [[r["id"][:SHORT], *(r.get(c) for c in columns[1:])] for r in board.rows]
    title = f"sweep {board.sweep_id[:SHORT]} ({board.status}, {board.folder}), best first"
    return _write(title + "\n" + table(columns, rows))


def _compare(args: argparse.Namespace) -> int:
    from tunixrt.registry import RegistryError, compare_runs

    if args.sweep:
        if args.ids:
            raise RegistryError("give run ids or --sweep, not both")
        return _compare_sweep(args)
    if args.csv:
        raise RegistryError("--csv goes with --sweep")
    if len(args.ids) < 2:
        raise RegistryError("compare needs at least two run ids, or --sweep ID|latest")
    with open_registry(args) as reg:
        result = compare_runs(reg, args.ids)
    if args.json:
        return _write_json(result.to_json())
    ids = [r.id[:SHORT] for r in result.runs]
    header = table(
        ["", *ids],
        [["name", *(r.name for r in result.runs)], ["status", *(r.status for r in result.runs)]],
    )
    config = [[k, *v] for k, v in result.config.items()]
    metrics = [[k, *v] for k, v in result.metrics.items()]
    parts = [
        header,
        "config keys that differ\n" + (table(["KEY", *ids], config) if config else "none"),
        "latest metrics\n" + (table(["METRIC", *ids], metrics) if metrics else "none"),
    ]
    return _write("\n\n".join(parts))


def _tag(args: argparse.Namespace) -> int:
    from tunixrt.registry import RegistryError, tag_run

    key, sep, value = args.tag.partition("=")
    if not sep or not key:
        raise RegistryError(f"tag {args.tag!r}: expected KEY=VALUE")
    with open_registry(args) as reg:
        run_id = tag_run(reg, args.id, key, value)
    return _write(f"{run_id}: {key}={value}")


def add_parser(sub: argparse._SubParsersAction) -> None:
    common = registry_options()
    common.add_argument(
        "--lost-after",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="a running run with an older heartbeat is lost (default 120)",
    )
    runs = sub.add_parser(
        "runs",
        help="list, show, compare and tag registered runs",
        description="Query the run registry. Run ids may be shortened to a unique prefix.",
    )
    cmds = runs.add_subparsers(dest="runs_command", required=True)

    p = cmds.add_parser("list", parents=[common], help="runs, newest first")
    p.add_argument("--status", choices=STATUSES)
    p.add_argument("--sweep", metavar="ID", help="runs of this sweep (id or prefix)")
    p.add_argument("--name", metavar="SUBSTR", help="names containing SUBSTR")
    p.add_argument("--limit", type=int, metavar="N")
    p.add_argument("--metric", action="append", metavar="NAME", help="a metric column (repeat)")
    p.add_argument("--json", action="store_true", help="print a JSON list of run objects")
    p.set_defaults(func=_list)

    p = cmds.add_parser("show", parents=[common], help="one run: config, metrics, checkpoints")
    p.add_argument("id", help="run id or unique prefix")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_show)

    p = cmds.add_parser(
        "compare",
        parents=[common],
        help="config differences and metrics, or a sweep's runs ranked",
        description="Compare runs side by side, or with --sweep rank a sweep's runs by its "
        "optimized metric (lowest first) with the swept keys as columns.",
    )
    p.add_argument("ids", nargs="*", metavar="ID", help="two or more run ids or prefixes")
    p.add_argument("--sweep", metavar="ID", help="a sweep id, prefix, or 'latest'")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--csv", action="store_true", help="with --sweep: print CSV")
    p.set_defaults(func=_compare)

    p = cmds.add_parser("tag", parents=[common], help="set a tag on a run")
    p.add_argument("id", help="run id or unique prefix")
    p.add_argument("tag", metavar="KEY=VALUE")
    p.set_defaults(func=_tag)
