"""`tunixrt bench`: time the train step, generation (prefill and decode) and optionally
checkpointing of a config."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import Any


def run(args: argparse.Namespace) -> int:
    from tunixrt.composition import compose
    from tunixrt.config import validate
    from tunixrt.train.setup import enable_compile_cache, setup
    from tunixrt.train.timing import (
        bench_checkpoint,
        bench_generation,
        bench_step,
        format_checkpoint,
        format_generation,
        format_result,
    )

    cfg = validate(compose(args.overrides))
    if not args.no_compile_cache:
        enable_compile_cache(cfg.device.compile_cache_dir)
    s = setup(cfg)
    result = bench_step(s, steps=args.steps, warmup=args.warmup)
    generation = bench_generation(s)
    ckpt = bench_checkpoint(s) if args.checkpoint else None
    if args.json:
        out: dict[str, Any] = {**asdict(result), "generation": asdict(generation)}
        if ckpt is not None:
            out["checkpoint"] = asdict(ckpt)
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
    else:
        text = format_result(result) + "\n" + format_generation(generation)
        if ckpt is not None:
            text += "\n" + format_checkpoint(ckpt)
        sys.stdout.write(text + "\n")
    return 0


def add_parser(sub: Any) -> None:
    b = sub.add_parser(
        "bench",
        help="time the train step and generation of a config (tokens/s, MFU, memory)",
        description="Compose the training config with Hydra overrides and time its train "
        "step, then greedy generation with its model (prefill and decode tokens/s, on the "
        "trainer's rows with prompts of half a row). Writes nothing but a temporary checkpoint (with --checkpoint) and JAX's "
        "compilation cache.",
    )
    b.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=llama_small")
    b.add_argument("--steps", type=int, default=10, help="timed steps (default 10)")
    b.add_argument("--warmup", type=int, default=2, help="untimed steps after compile")
    b.add_argument("--checkpoint", action="store_true", help="also time a save and a restore")
    b.add_argument(
        "--no-compile-cache", action="store_true", help="compile from scratch (no JAX cache)"
    )
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.set_defaults(func=run)
