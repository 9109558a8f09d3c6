"""`tunixrt export RUN_OR_CHECKPOINT OUT`: write a Hugging Face checkpoint folder."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def run(args: argparse.Namespace) -> int:
    from tunixrt.export import export

    out = export(args.source, args.out, step=args.step, registry_url=args.registry)
    sys.stdout.write(f"{out}\n")
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="write a run's checkpoint as a Hugging Face folder (transformers loads it)",
        description="Export a checkpoint as config.json + safetensors + tokenizer files. "
        "SOURCE is a run folder (its newest checkpoint), a checkpoint step folder "
        "(RUN/checkpoints/STEP) or a registered run id. LoRA adapters are merged.",
    )
    p.add_argument("source", metavar="RUN_OR_CHECKPOINT")
    p.add_argument("out", metavar="OUT", help="the folder to write")
    p.add_argument("--step", type=int, help="a checkpoint step (default: the newest)")
    p.add_argument(
        "--registry",
        metavar="URL",
        help="registry for a run id (default: $TUNIXRT_REGISTRY_URL, else ./outputs/registry.db)",
    )
    p.set_defaults(func=run)
