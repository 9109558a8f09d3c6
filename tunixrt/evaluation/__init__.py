"""Evaluation: generate answers with a KV cache and score them against expected answers."""

from tunixrt.evaluation.generate import (
    compiled_programs,
    cut_at_stop,
    decode_completion,
    generate_text,
    generate_tokens,
    prompt_ids,
)
from tunixrt.evaluation.scoring import (
    SCORER_NAME,
    SCORER_VERSION,
    EvalItem,
    ItemResult,
    aggregate,
    extract_answer,
    is_correct,
    normalize,
    read_eval_set,
    score,
)

__all__ = [
    "SCORER_NAME",
    "SCORER_VERSION",
    "EvalItem",
    "ItemResult",
    "aggregate",
    "compiled_programs",
    "cut_at_stop",
    "decode_completion",
    "extract_answer",
    "generate_text",
    "generate_tokens",
    "is_correct",
    "normalize",
    "prompt_ids",
    "read_eval_set",
    "score",
]
