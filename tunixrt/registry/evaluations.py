"""The rows an `EvalReport` becomes: one `evaluations` row (scores and how they were
made) and one `predictions` row per item, and a stored prediction back as the dict
`Prediction.to_dict()` gives.

Both write paths build their rows here: `Registry.record_evaluation` (one transaction)
and `RunRecorder.evaluation` (the writer thread, during training). Only plain values
cross: the report is read, never imported at run time, so the registry stays free of
JAX.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunixrt.registry.errors import RegistryError
from tunixrt.registry.info import json_safe
from tunixrt.registry.models import EvalPrediction, utcnow

if TYPE_CHECKING:
    from tunixrt.evaluation.runner import EvalReport

# The keys of Prediction.to_dict(), in its order, and the column each is stored in.
PREDICTION_COLUMNS = {
    "id": "item_id",
    "category": "category",
    "section": "section",
    "difficulty": "difficulty",
    "prompt": "prompt",
    "generated": "generated",
    "extracted": "extracted",
    "expected": "expected",
    "correct": "correct",
    "new_tokens": "new_tokens",
}
LABELS = ("id", "category", "section", "difficulty")  # String(255) columns
MAX_LABEL = 255
# PostgreSQL text cannot hold NUL, which a byte-level tokenizer can decode to; stored
# as U+FFFD on every backend so both read back the same.
NUL, REPLACEMENT = "\x00", "\ufffd"


@dataclass(frozen=True)
class EvaluationRows:
    evaluation: dict[str, Any]  # column -> value of the evaluations row
    predictions: list[dict[str, Any]]  # one per item, in the report's order

    @property
    def id(self) -> str:
        return str(self.evaluation["id"])


def evaluation_rows(
    report: EvalReport, *, run_id: str | None, target: str | Path
) -> EvaluationRows:
    """The rows of `report` under a new id. `target` (the folder evaluated) is made
    absolute. Raises RegistryError when an item cannot be stored: a duplicated id, or
    an id or label longer than the column."""
    evaluation_id = uuid.uuid4().hex
    items = [p.to_dict() for p in report.predictions]
    _check_items(items)
    predictions = [_prediction_row(evaluation_id, n, item) for n, item in enumerate(items)]
    evaluation = {
        "id": evaluation_id,
        "run_id": run_id,
        "step": report.step,
        "target": os.path.abspath(target),
        "eval_path": report.eval_path,
        "eval_sha256": report.eval_sha256,
        "scorer": report.scorer,
        "scorer_version": report.scorer_version,
        "generation": json_safe(report.settings.to_dict()),
        "items": len(predictions),
        "correct": sum(bool(row["correct"]) for row in predictions),
        "accuracy": report.accuracy,
        "aggregates": json_safe(report.aggregates),
        "seconds": report.seconds,
        "new_tokens": report.new_tokens,
        "created_at": utcnow(),
    }
    return EvaluationRows(evaluation, predictions)


def prediction_dict(row: EvalPrediction) -> dict[str, Any]:
    """A stored prediction in `Prediction.to_dict()`'s format."""
    return {key: getattr(row, column) for key, column in PREDICTION_COLUMNS.items()}


def _prediction_row(evaluation_id: str, position: int, item: Mapping[str, Any]) -> dict[str, Any]:
    row = {"evaluation_id": evaluation_id, "position": position}
    for key, column in PREDICTION_COLUMNS.items():
        value = item[key]
        row[column] = value.replace(NUL, REPLACEMENT) if isinstance(value, str) else value
    return row


def _check_items(items: list[dict[str, Any]]) -> None:
    """Refuse what the predictions table cannot hold, before any write: the item id is
    part of its key, and PostgreSQL enforces the labels' length (SQLite would not)."""
    repeated = [i for i, n in Counter(item["id"] for item in items).items() if n > 1]
    if repeated:
        shown = ", ".join(repr(i) for i in repeated[:5])
        raise RegistryError(f"eval set item ids must be unique to be stored; repeated: {shown}")
    for item in items:
        for key in LABELS:
            value = item[key]
            if value is not None and len(value) > MAX_LABEL:
                raise RegistryError(
                    f"eval item {item['id'][:40]!r}: {key} is {len(value)} characters; the "
                    f"registry stores at most {MAX_LABEL}"
                )
