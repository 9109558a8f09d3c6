"""Scoring generated answers: extract, normalise, exact match, aggregate.

A result records SCORER_NAME and SCORER_VERSION; the version changes whenever a rule
here changes what counts as correct, so stored accuracies stay comparable.

Extraction takes the text after the last answer marker of the training template, else
the last "the answer is X" sentence, else the last non-empty line. Normalisation folds
case and whitespace, trailing punctuation, wrapping quotes, thousands separators,
currency signs, unit words after a number, numeric spelling (31.50 = 31.5, .5 = 0.5)
and the spacing of comma-separated lists.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from tunixrt.data.schema import (
    DataError,
    EvalItem,
    Trace,
    parse_eval_item,
    parse_example,
    read_jsonl,
)
from tunixrt.data.tokenize import ANSWER_MARKER

SCORER_NAME = "exact_normalized"
SCORER_VERSION = "1"

# "The answer is X." / "Final answer: X", X ending at a sentence stop or the line end.
# A period counts as a stop only before whitespace, so 31.5 stays whole.
_ANSWER_IS = re.compile(
    r"(?:\bthe\s+(?:final\s+)?answer\s+is\b|\b(?:final\s+)?answer\s*:)\s*:?\s*(.+?)\s*(?:\.(?=\s|$)|$)",
    re.IGNORECASE | re.MULTILINE,
)
_BOXED = re.compile(r"\\boxed\{(.*)\}")
_WRAPPERS = "\"'`*"
_TRAILING = ".,;:!?"
_CURRENCY = "$€£¥"
_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
# A number, then at most two unit or currency words (or %): "8726 ml", "12 us dollars".
_UNIT = r"(?:%|°|[a-z°]+(?:\s+[a-z]+)?)"
_WITH_UNIT = re.compile(rf"({_NUMBER})\s*{_UNIT}")
# One number grouped in thousands ("1,234.5 kg"), as opposed to a list ("1, 234").
_THOUSANDS = re.compile(rf"[+-]?[$€£¥]?\d{{1,3}}(?:,\d{{3}})+(?:\.\d+)?(?:\s*{_UNIT})?")
_ASSIGNMENT = re.compile(r"^[a-z]\s*=\s*")  # "x = 10"
_CLOCK = re.compile(r"(\d{1,2}):(\d{2})")


# ---------------------------------------------------------------------------- extraction


def extract_answer(text: str) -> str:
    """The answer part of generated text (see the module docstring for the order)."""
    if ANSWER_MARKER in text:
        after = text.rsplit(ANSWER_MARKER, 1)[1]
        return _first_line(after)
    matches = list(_ANSWER_IS.finditer(text))
    if matches:
        return matches[-1].group(1).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def marks_answer(text: str) -> bool:
    """Whether `text` marks its answer (the answer marker, or a "the answer is X"
    sentence) rather than leaving extraction to its last line."""
    return ANSWER_MARKER in text or _ANSWER_IS.search(text) is not None


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


# ---------------------------------------------------------------------------- normalisation


def normalize(answer: str) -> str:
    """A canonical form of an answer: equal forms mean the same answer."""
    text = unicodedata.normalize("NFKC", answer).lower()
    text = " ".join(text.split())
    if boxed := _BOXED.search(text):
        text = boxed.group(1)
    text = _strip_edges(text)
    text = _ASSIGNMENT.sub("", text)
    if _THOUSANDS.fullmatch(text):
        text = text.replace(",", "")
    parts = [_atom(part) for part in text.split(",")]
    return ",".join(parts)


def _strip_edges(text: str) -> str:
    """Drop wrapping quotes or emphasis and trailing punctuation, repeatedly."""
    previous = None
    while text != previous:
        previous = text
        text = text.strip().strip(_WRAPPERS).rstrip(_TRAILING)
    return text


def _atom(text: str) -> str:
    """One answer or list element: a canonical number when it is one."""
    text = _strip_edges(text).lstrip(_CURRENCY).strip()
    text = re.sub(r"\s*([/:])\s*", r"\1", text)
    if clock := _CLOCK.fullmatch(text):
        return f"{int(clock.group(1)):02d}:{clock.group(2)}"
    if unit := _WITH_UNIT.fullmatch(text):
        text = unit.group(1)
    if re.fullmatch(_NUMBER, text):
        return _canonical_number(text)
    return text


def _canonical_number(text: str) -> str:
    try:
        value = Decimal(text)
    except InvalidOperation:
        return text
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def is_correct(generated_text: str, expected: str) -> bool:
    """Whether the answer extracted from generated_text equals expected, normalised."""
    return normalize(extract_answer(generated_text)) == normalize(expected)


# ---------------------------------------------------------------------------- eval sets


def _meta_text(meta: dict[str, Any], *keys: str) -> str | None:
    return next((v for k in keys if isinstance(v := meta.get(k), str)), None)


def _parse_eval_record(obj: Any) -> EvalItem:
    """An eval item, or a trace read as one (its final_answer is the expected answer)."""
    if not isinstance(obj, dict) or "expected_answer" in obj or "final_answer" not in obj:
        return parse_eval_item(obj)
    trace = parse_example(obj)
    if not isinstance(trace, Trace):
        raise DataError("a record needs 'expected_answer' (an eval item) or a trace")
    return trace_item(trace)


def trace_item(trace: Trace) -> EvalItem:
    """A trace as an eval item: its final answer is the expected one, its family the
    category."""
    meta = trace.meta
    return EvalItem(
        id=_meta_text(meta, "id") or "",
        prompt=trace.prompt,
        expected_answer=trace.final_answer,
        category=_meta_text(meta, "category", "family"),
        difficulty=_meta_text(meta, "difficulty"),
        section=_meta_text(meta, "section"),
    )


def read_eval_set(path: str | Path) -> list[EvalItem]:
    """Eval items from an eval JSONL or a trace JSONL; a bad line raises `file:line: why`."""
    items = read_jsonl(path, _parse_eval_record)
    stem = Path(path).stem
    return [
        item if item.id else EvalItem(**{**item.__dict__, "id": f"{stem}-{n}"})
        for n, item in enumerate(items)
    ]


# ---------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ItemResult:
    item: EvalItem
    generated: str
    answer: str  # extracted from generated
    correct: bool


def score(item: EvalItem, generated_text: str) -> ItemResult:
    answer = extract_answer(generated_text)
    correct = normalize(answer) == normalize(item.expected_answer)
    return ItemResult(item, generated_text, answer, correct)


def _tally(results: Sequence[ItemResult]) -> dict[str, Any]:
    correct = sum(r.correct for r in results)
    total = len(results)
    return {"correct": correct, "total": total, "accuracy": correct / total if total else 0.0}


def _by(results: Sequence[ItemResult], key: str) -> dict[str, dict[str, Any]]:
    """Tallies per value of the item field `key`; items without it are left out."""
    groups: dict[str, list[ItemResult]] = {}
    for result in results:
        value = getattr(result.item, key)
        if value is not None:
            groups.setdefault(value, []).append(result)
    return {value: _tally(group) for value, group in sorted(groups.items())}


def aggregate(results: Sequence[ItemResult]) -> dict[str, Any]:
    """Accuracy and counts overall and per category, section and difficulty."""
    return {
        "scorer": SCORER_NAME,
        "scorer_version": SCORER_VERSION,
        "overall": _tally(results),
        "by_category": _by(results, "category"),
        "by_section": _by(results, "section"),
        "by_difficulty": _by(results, "difficulty"),
    }
