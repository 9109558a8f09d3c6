"""`tunixrt generate TARGET --prompt TEXT`: one completion from a checkpoint or a Hugging
Face folder, the prompt rendered exactly as training renders it."""

from __future__ import annotations

import argparse
import sys
from typing import Any

DEFAULT_MAX_NEW_TOKENS = 256


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text}")
    return value


def run(args: argparse.Namespace) -> int:
    from tunixrt.evaluation import generate_text, prompt_ids
    from tunixrt.evaluation.runner import check_length
    from tunixrt.targets import load, resolve

    target = resolve(args.target, step=args.step, registry_url=args.registry)
    tokenizer, model = load(target)
    prompt_len = len(prompt_ids(tokenizer, args.prompt))
    max_new = args.max_new_tokens
    if max_new is None:  # as many as fit, up to the default
        max_new = max(1, min(DEFAULT_MAX_NEW_TOKENS, model.cfg.max_seq_len - prompt_len))
    check_length(model, prompt_len, max_new, "--max-new-tokens")
    text = generate_text(
        model,
        tokenizer,
        [args.prompt],
        max_new_tokens=max_new,
        stop=args.stop,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seed,
    )[0]
    sys.stdout.write(text + "\n")
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "generate",
        help="print one completion of a prompt by a checkpoint or Hugging Face folder",
        description="Render the prompt as training renders it (the bundled tokenizer's "
        "framing, or the checkpoint's chat template), generate with the KV cache until "
        "the end-of-sequence token, --max-new-tokens or a --stop string, and print the "
        "completion. TARGET is a registered run id, a run folder (its newest checkpoint, "
        "or --step), a checkpoint step folder (RUN/checkpoints/STEP) or a Hugging Face "
        "folder (config.json). Greedy unless --temperature is above 0.",
    )
    p.add_argument("target", metavar="TARGET", help="run id, run folder, checkpoint, HF folder")
    p.add_argument("--prompt", required=True, help="the prompt text (a user turn)")
    p.add_argument(
        "--max-new-tokens",
        type=_positive_int,
        metavar="N",
        help=f"at most N new tokens (default: {DEFAULT_MAX_NEW_TOKENS}, or what fits the model)",
    )
    p.add_argument(
        "--temperature", type=_non_negative_float, default=0.0, help="0: greedy (default)"
    )
    p.add_argument("--top-k", type=_positive_int, metavar="K", help="sample from the K likeliest")
    p.add_argument("--top-p", type=_probability, metavar="P", help="sample from the nucleus P")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--stop", action="append", metavar="TEXT", help="cut at TEXT (repeat)")
    p.add_argument("--step", type=int, metavar="N", help="the checkpoint step of a run")
    p.add_argument(
        "--registry",
        metavar="URL",
        help="registry for a run id (default: $TUNIXRT_REGISTRY_URL, else ./outputs/registry.db)",
    )
    p.set_defaults(func=run)
