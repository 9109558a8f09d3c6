"""`tunixrt db`: the registry's schema revision, and upgrading it (the same as
`alembic upgrade head` from the repo root with TUNIXRT_REGISTRY_URL set)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from tunixrt.cli.runs import registry_options

if TYPE_CHECKING:
    from sqlalchemy import Engine

T = TypeVar("T")


def _with_engine(args: argparse.Namespace, action: str, use: Callable[[Engine], T]) -> T:
    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from tunixrt.registry.errors import RegistryError, describe
    from tunixrt.registry.store import engine_for
    from tunixrt.registry.urls import cli_url, mask_url

    url = cli_url(args.registry)
    engine = engine_for(url)
    try:
        return use(engine)
    except (SQLAlchemyError, CommandError) as err:
        raise RegistryError(f"registry {mask_url(url)}: {action} failed: {describe(err)}") from None
    finally:
        engine.dispose()


def _current(args: argparse.Namespace) -> int:
    from tunixrt.registry.migrate import head_revision, read_revision
    from tunixrt.registry.urls import cli_url, sqlite_path

    path = sqlite_path(cli_url(args.registry))
    if path is not None and not path.exists():
        current = None  # reading would create the file
    else:
        current = _with_engine(args, "reading the revision", read_revision)
    head = head_revision()
    state = "up to date" if current == head else "run `tunixrt db upgrade`"
    sys.stdout.write(f"current: {current or 'empty'}\nhead:    {head} ({state})\n")
    return 0


def _upgrade(args: argparse.Namespace) -> int:
    from tunixrt.registry.migrate import read_revision, upgrade
    from tunixrt.registry.urls import cli_url, mask_url

    def run(engine: Engine) -> tuple[str | None, str | None]:
        return read_revision(engine), upgrade(engine, args.revision)

    before, after = _with_engine(args, "upgrading", run)
    where = mask_url(cli_url(args.registry))
    if before == after:
        sys.stdout.write(f"registry {where} already at {after}\n")
    else:
        sys.stdout.write(f"registry {where} upgraded: {before or 'empty'} -> {after}\n")
    return 0


def _bench(args: argparse.Namespace) -> int:
    import json

    from tunixrt.registry.throughput import bench_registry

    result = bench_registry(
        args.registry, runs=args.runs, steps=args.steps, processes=args.processes
    )
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        for key, value in result.items():
            shown = f"{value:,.1f}" if isinstance(value, float) else str(value)
            sys.stdout.write(f"{key:<32} {shown}\n")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    db = sub.add_parser(
        "db",
        help="the registry's schema: current revision, upgrade",
        description="Manage the run registry's schema with Alembic.",
    )
    cmds = db.add_subparsers(dest="db_command", required=True)
    common = registry_options()
    p = cmds.add_parser("current", parents=[common], help="the database's and the code's revision")
    p.set_defaults(func=_current)
    p = cmds.add_parser("upgrade", parents=[common], help="migrate the database to the code's")
    p.add_argument("--revision", default="head", help="target revision (default head)")
    p.set_defaults(func=_upgrade)
    p = cmds.add_parser(
        "bench",
        help="rows and metric points written per second (writes throwaway runs)",
        description="Measure registry throughput. It writes throwaway runs, so give "
        "--registry a scratch database; without it, a temporary SQLite file is used.",
    )
    p.add_argument("--registry", metavar="URL", help="a scratch database (default: temp SQLite)")
    p.add_argument("--runs", type=int, default=200, help="run rows to create (default 200)")
    p.add_argument("--steps", type=int, default=500, help="log calls per run (default 500)")
    p.add_argument("--processes", type=int, default=8, help="concurrent writers (default 8)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_bench)
