"""`tunixrt`: subcommands around training: `bench`, `data`, `export`, `eval` (and
`eval compare`), `generate`, `runs`, `db`.

Every subcommand reports bad input (an `InputError`: a config value, a file, a run id,
an unreachable registry) here, in one place: one line on stderr naming the command,
with any password masked, and exit code 2. Anything else is a bug and keeps its
traceback."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from tunixrt.cli import bench, data, db, evaluate, export, generate, runs
from tunixrt.errors import InputError

INPUT_ERROR_EXIT = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tunixrt", description="tunixrt tools. Training itself is `tunixrt-train`."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)
    bench.add_parser(sub)
    data.add_parser(sub)
    export.add_parser(sub)
    evaluate.add_parser(sub)
    generate.add_parser(sub)
    runs.add_parser(sub)
    db.add_parser(sub)
    return parser


def command_name(args: argparse.Namespace) -> str:
    """`tunixrt runs show`: the words of the subcommand that ran."""
    sub = getattr(args, f"{args.command}_command", None)
    return " ".join(filter(None, ["tunixrt", args.command, sub]))


def main(argv: Sequence[str] | None = None) -> int:
    from tunixrt.logs import quiet_libraries
    from tunixrt.registry.urls import mask_text

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse fills a `nargs="*"` positional from the words before the first option
    # only; a command naming `more_positionals` takes the words after options too.
    more = getattr(args, "more_positionals", None)
    if extra:
        if more is None or any(word.startswith("-") for word in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        getattr(args, more).extend(extra)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    quiet_libraries()
    try:
        return int(args.func(args))
    except InputError as err:
        sys.stderr.write(f"{command_name(args)}: {mask_text(str(err))}\n")
        return INPUT_ERROR_EXIT


if __name__ == "__main__":
    sys.exit(main())
