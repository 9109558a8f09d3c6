"""`tunixrt`: subcommands around training (`bench` now; runs, db, export, eval to come)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence


def _compose(overrides: Sequence[str]):  # -> TrainConfig
    from hydra import compose, initialize_config_dir

    from tunixrt.config import register_configs, repo_path, validate

    register_configs()
    with initialize_config_dir(version_base="1.3", config_dir=str(repo_path("conf"))):
        return validate(compose("train", overrides=list(overrides)))


def _bench(args: argparse.Namespace) -> int:
    from tunixrt.bench import as_dict, bench, format_result

    result = bench(_compose(args.overrides), steps=args.steps, warmup=args.warmup)
    out = json.dumps(as_dict(result), indent=2) if args.json else format_result(result)
    sys.stdout.write(out + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tunixrt", description="tunixrt tools. Training itself is `tunixrt-train`."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser(
        "bench",
        help="time the train step of a config (tokens/s, MFU, memory)",
        description="Compose the training config with Hydra overrides and time "
        "its train step; writes nothing to disk.",
    )
    b.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=llama_small")
    b.add_argument("--steps", type=int, default=10, help="timed steps (default 10)")
    b.add_argument("--warmup", type=int, default=2, help="untimed steps after compile")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.set_defaults(func=_bench)
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
