"""Data: read and validate JSONL, render, tokenize (once, into a memory-mapped token cache),
and batch with a resumable, shardable iterator."""

from tunixrt.data.batching import BatchIterator, HostBatch, IteratorState, fixed_batches
from tunixrt.data.render import Rendered, render
from tunixrt.data.schema import DataError, EvalItem, Example, read_eval_items, read_examples
from tunixrt.data.tokenize import SPECIAL_TOKENS, Encoded, TextTokenizer

__all__ = [
    "SPECIAL_TOKENS",
    "HostBatch",
    "BatchIterator",
    "DataError",
    "Encoded",
    "EvalItem",
    "Example",
    "IteratorState",
    "Rendered",
    "TextTokenizer",
    "fixed_batches",
    "read_eval_items",
    "read_examples",
    "render",
]
