"""`tunixrt data prepare [overrides]`: tokenize the data of a training config into the
token cache (dataset.cache_dir) ahead of training, and show what the cache holds.

The config composes as `tunixrt-train` composes it, so the same overrides name the same
cache that training then reads: `tunixrt data prepare dataset=jsonl dataset.path=F`.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tunixrt.data.cache import Summary

HEADERS = ["role", "file", "examples", "tokens", "truncated", "dropped", "filtered", "repeated"]


def prepare(args: argparse.Namespace) -> int:
    from tunixrt.composition import compose
    from tunixrt.config import validate
    from tunixrt.data.pipeline import prepare_caches

    cfg = validate(compose(args.overrides))
    done = prepare_caches(cfg.dataset, seq_len=cfg.trainer.seq_len, model_path=cfg.model.path)
    if args.json:
        rows = [{"role": role, **asdict(summary)} for role, summary in done]
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
    else:
        sys.stdout.write(report(done) + "\n")
    return 0


def report(done: list[tuple[str, Summary]]) -> str:
    """A table of the caches, then each one's folder and length percentiles."""
    from tunixrt.cli.runs import table

    if not done:
        return "nothing to prepare: the config trains on generated traces and has no valid_path"
    seq_len = done[0][1].seq_len
    headers = [*HEADERS, *done[0][1].percentiles]
    rows = [
        [
            role,
            s.source,
            s.examples,
            s.tokens,
            s.truncated,
            s.dropped,
            s.filtered,
            s.repeated,
            *s.percentiles.values(),
        ]
        for role, s in done
    ]
    notes = [
        f"tokens per example: p50/p90/p99/max; truncated: longer than trainer.seq_len={seq_len}; "
        "dropped: fewer than two tokens; filtered: not in dataset.families; repeated: "
        "the prompt of an earlier example",
        *(f"{role} cache: {s.folder}" for role, s in done),
    ]
    return "\n".join([table(headers, rows), "", *notes])


def add_parser(sub: Any) -> None:
    d = sub.add_parser(
        "data",
        help="prepare the token cache of a training config's data",
        description="Work on the training data of a config composed as tunixrt-train composes it.",
    )
    commands = d.add_subparsers(dest="data_command", required=True)
    p = commands.add_parser(
        "prepare",
        help="tokenize the train and valid files into dataset.cache_dir; show what it holds",
        description="Compose the training config with Hydra overrides, tokenize every file "
        "of dataset.path and dataset.valid_path into the token cache (dataset.cache_dir, "
        "default outputs/cache), which training then reads memory-mapped, and print what "
        "each cache holds: examples, tokens, examples longer than trainer.seq_len "
        "(truncated), examples too short to train on (dropped), records left out by "
        "dataset.families (filtered), examples whose prompt an earlier one has (repeated) "
        "and length percentiles. A file already in the cache "
        "is not tokenized again.",
    )
    p.add_argument(
        "overrides", nargs="*", help="Hydra overrides, e.g. dataset=jsonl dataset.path=F"
    )
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per file")
    p.set_defaults(func=prepare, more_positionals="overrides")
