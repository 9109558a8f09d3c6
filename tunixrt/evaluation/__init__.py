"""Evaluation: generate answers with a KV cache and score them against expected answers."""

from tunixrt.evaluation.generate import (
    compiled_programs,
    cut_at_stop,
    decode_completion,
    generate_text,
    generate_tokens,
    prompt_ids,
)
from tunixrt.evaluation.runner import (
    EvalReport,
    GenerationSettings,
    Prediction,
    file_sha256,
    predict,
    run_eval,
    select_items,
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
    "EvalReport",
    "GenerationSettings",
    "Prediction",
    "ItemResult",
    "aggregate",
    "compiled_programs",
    "cut_at_stop",
    "decode_completion",
    "extract_answer",
    "file_sha256",
    "generate_text",
    "generate_tokens",
    "is_correct",
    "normalize",
    "predict",
    "prompt_ids",
    "read_eval_set",
    "run_eval",
    "score",
    "select_items",
]
