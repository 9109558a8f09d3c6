"""`tunixrt bench`: time the train step, generation (prefill and decode) and optionally
checkpointing of a config; with `--reference torch` and `--bare`, the same step in
transformers + PyTorch and as a bare jitted step, in alternating rounds; with
algorithm=grpo, GRPO steps split into sampling and training."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import Any


def run(args: argparse.Namespace) -> int:
    from tunixrt.composition import compose
    from tunixrt.config import ConfigError, validate
    from tunixrt.train.init_from import find_origin, start_from
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
    if min(args.steps, args.rounds) < 1 or args.warmup < 0:
        raise ConfigError(
            f"--steps {args.steps} and --rounds {args.rounds} must be at least 1, "
            f"--warmup {args.warmup} at least 0"
        )
    if not args.no_compile_cache:
        enable_compile_cache(cfg.device.compile_cache_dir)
    s = setup(cfg)
    origin = find_origin(cfg)
    if origin is not None:  # a trained model's completions end as a run's would
        start_from(origin, s.model, s.data.tokenizer)
    if s.algorithm is not None:
        return _algorithm(s, args)
    result = bench_step(
        s,
        steps=args.steps,
        warmup=args.warmup,
        rounds=args.rounds,
        bare=args.bare,
        reference=args.reference,
    )
    generation = None if args.no_generation else bench_generation(s)
    ckpt = bench_checkpoint(s) if args.checkpoint else None
    if args.json:
        out: dict[str, Any] = {**asdict(result)}
        if generation is not None:
            out["generation"] = asdict(generation)
        if ckpt is not None:
            out["checkpoint"] = asdict(ckpt)
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
    else:
        text = format_result(result)
        if generation is not None:
            text += "\n" + format_generation(generation)
        if ckpt is not None:
            text += "\n" + format_checkpoint(ckpt)
        sys.stdout.write(text + "\n")
    return 0


def _algorithm(s: Any, args: argparse.Namespace) -> int:
    """algorithm=grpo or dpo: sampling and training time of its steps instead of the
    SFT step."""
    from tunixrt.train.timing_algorithm import bench_algorithm, format_algorithm

    result = bench_algorithm(s, steps=args.steps, warmup=args.warmup)
    text = json.dumps(asdict(result), indent=2) if args.json else format_algorithm(result)
    sys.stdout.write(text + "\n")
    return 0


def add_parser(sub: Any) -> None:
    b = sub.add_parser(
        "bench",
        help="time the train step and generation of a config (tokens/s, MFU, memory)",
        description="Compose the training config with Hydra overrides and time its train "
        "step through the loop's input path (rounds of --steps steps; tokens/s over all "
        "positions, non-padding and loss tokens; MFU against the vendor's dense bf16 peak on "
        "a known GPU/TPU, against a jnp matmul measured in the same run on a CPU), then "
        "greedy generation with its model (prefill and decode tokens/s, on the "
        "trainer's rows with prompts of half a row). Writes nothing but a temporary "
        "checkpoint (with --checkpoint) and JAX's compilation cache. Example: tunixrt bench "
        "model=llama_small --reference torch --bare --json. With algorithm=grpo or dpo it "
        "times --warmup then --steps of its steps instead: sampling and training time, "
        "sampled and trained tokens/s (--rounds, --reference, --bare and --checkpoint do "
        "not apply). "
        "init.from=RUN starts the model from a run's weights, as training would.",
    )
    b.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=llama_small")
    b.add_argument("--steps", type=int, default=10, help="timed steps per round (default 10)")
    b.add_argument("--warmup", type=int, default=2, help="untimed steps after compile")
    b.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds of --steps steps; with --bare or --reference they alternate "
        "(tunixrt, bare, torch, tunixrt, ...) and every round's figure is printed (default 3)",
    )
    b.add_argument(
        "--reference",
        choices=["torch"],
        help="also time the same model, shapes, batches and precision policy in "
        "transformers + PyTorch (the family's Hugging Face class, random init; AdamW with "
        "the config's lr, betas and weight decay; fp32 eager or bf16 autocast) and print "
        "the ratio of tokens/s",
    )
    b.add_argument(
        "--bare",
        action="store_true",
        help="also time a bare jax.jit of value_and_grad + the optax update of the same "
        "model (no loop, no input pipeline): the loop's overhead",
    )
    b.add_argument("--checkpoint", action="store_true", help="also time a save and a restore")
    b.add_argument("--no-generation", action="store_true", help="leave out the generation figures")
    b.add_argument(
        "--no-compile-cache", action="store_true", help="compile from scratch (no JAX cache)"
    )
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.set_defaults(func=run)
