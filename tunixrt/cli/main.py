"""`tunixrt`: subcommands around training: `bench`, `export`, `runs`, `db`."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from tunixrt.cli import bench, db, export, runs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tunixrt", description="tunixrt tools. Training itself is `tunixrt-train`."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)
    bench.add_parser(sub)
    export.add_parser(sub)
    runs.add_parser(sub)
    db.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
