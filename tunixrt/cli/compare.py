"""`tunixrt eval compare A B`: accuracy of two evaluations side by side, and the items
whose answer flipped between them.

A and B are each a folder or report.json written by `tunixrt eval` (predictions.jsonl
beside it), an evaluation id or prefix in the registry, or a run id (its latest
evaluation). Accuracies are tallied from each side's own predictions; items are matched
by id.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunixrt.cli.runs import table
from tunixrt.errors import InputError


@dataclass
class Evaluated:
    source: str  # what the user gave, or the folder it was read from
    eval_path: str
    eval_sha256: str
    scorer: str  # name and version, e.g. "exact_normalized v1"
    predictions: list[dict[str, Any]]  # Prediction.to_dict() of each item

    def header(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "eval_path": self.eval_path,
            "eval_sha256": self.eval_sha256,
            "scorer": self.scorer,
            "items": len(self.predictions),
        }


# -- reading ------------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: cannot read ({err})") from None


def _read_predictions(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise InputError(f"{path}: no such file (written beside report.json by `tunixrt eval`)")
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as err:
            raise InputError(f"{path}:{n}: not JSON ({err})") from None
        if not isinstance(record, dict) or "id" not in record or "correct" not in record:
            raise InputError(f"{path}:{n}: a prediction needs 'id' and 'correct'")
        out.append(record)
    return out


def from_folder(given: str) -> Evaluated:
    """A report written by `tunixrt eval`: its folder or its report.json."""
    path = Path(given)
    report_file = path / "report.json" if path.is_dir() else path
    if not report_file.is_file():
        raise InputError(f"{given}: no report.json (a folder written by `tunixrt eval`)")
    report = _read_json(report_file)
    try:
        return Evaluated(
            source=str(report_file.parent),
            eval_path=str(report["eval_path"]),
            eval_sha256=str(report["eval_sha256"]),
            scorer=f"{report['scorer']} v{report['scorer_version']}",
            predictions=_read_predictions(report_file.parent / "predictions.jsonl"),
        )
    except (KeyError, TypeError) as err:
        raise InputError(f"{report_file}: not a report of `tunixrt eval` (lacks {err})") from None


def from_registry(given: str, registry_url: str | None) -> Evaluated:
    """An evaluation by id or prefix, else the latest evaluation of a run by id or prefix."""
    from tunixrt.registry import Registry, RegistryError, get_evaluation, latest_evaluation
    from tunixrt.registry.urls import cli_url

    with Registry.open_existing(cli_url(registry_url)) as registry:
        try:
            found = get_evaluation(registry, given)
        except RegistryError as err:
            if not str(err).startswith("no evaluation with id"):
                raise  # an ambiguous prefix, or the database failed
            try:
                latest = latest_evaluation(registry, given)
            except RegistryError as run_err:
                if not str(run_err).startswith("no run with id"):
                    raise
                raise RegistryError(
                    f"{given}: neither a report folder, an evaluation id nor a run id"
                ) from None
            if latest is None:
                raise RegistryError(f"run {given}: no evaluation recorded") from None
            found = latest
    return Evaluated(
        source=f"evaluation {found.id[:8]} of {found.target}",
        eval_path=found.eval_path,
        eval_sha256=found.eval_sha256,
        scorer=f"{found.scorer} v{found.scorer_version}",
        predictions=list(found.predictions),
    )


def read(given: str, registry_url: str | None) -> Evaluated:
    if Path(given).exists():
        return from_folder(given)
    return from_registry(given, registry_url)


# -- comparing ----------------------------------------------------------------------------


def _accuracy(predictions: list[dict[str, Any]], category: str | None = None) -> float | None:
    chosen = [p for p in predictions if category is None or p.get("category") == category]
    return sum(bool(p["correct"]) for p in chosen) / len(chosen) if chosen else None


def _row(a: float | None, b: float | None) -> dict[str, float | None]:
    return {"a": a, "b": b, "diff": None if a is None or b is None else b - a}


def _flip(id_: str, pa: dict[str, Any], pb: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": id_,
        "category": pa.get("category"),
        "expected": pa.get("expected"),
        "a_extracted": pa.get("extracted"),
        "b_extracted": pb.get("extracted"),
    }


def warnings(a: Evaluated, b: Evaluated) -> list[str]:
    out = []
    if a.eval_sha256 != b.eval_sha256:
        out.append(
            f"the eval files differ: A {a.eval_path} (sha256 {a.eval_sha256[:12]}), "
            f"B {b.eval_path} (sha256 {b.eval_sha256[:12]}); items are matched by id"
        )
    if a.scorer != b.scorer:
        out.append(f"the scorers differ: A {a.scorer}, B {b.scorer}")
    return out


def compare(a: Evaluated, b: Evaluated) -> dict[str, Any]:
    """Overall and per-category accuracy of A and B (B - A), and the items that flipped."""
    by_a = {str(p["id"]): p for p in a.predictions}
    by_b = {str(p["id"]): p for p in b.predictions}
    both = [i for i in by_a if i in by_b]
    names = {p.get("category") for p in a.predictions + b.predictions}
    categories = sorted(c for c in names if c is not None)
    return {
        "a": a.header(),
        "b": b.header(),
        "warnings": warnings(a, b),
        "overall": _row(_accuracy(a.predictions), _accuracy(b.predictions)),
        "by_category": {
            c: _row(_accuracy(a.predictions, c), _accuracy(b.predictions, c)) for c in categories
        },
        "matched": len(both),
        "right_to_wrong": [
            _flip(i, by_a[i], by_b[i])
            for i in both
            if by_a[i]["correct"] and not by_b[i]["correct"]
        ],
        "wrong_to_right": [
            _flip(i, by_a[i], by_b[i])
            for i in both
            if not by_a[i]["correct"] and by_b[i]["correct"]
        ],
        "only_in_a": [i for i in by_a if i not in by_b],
        "only_in_b": [i for i in by_b if i not in by_a],
    }


# -- output -------------------------------------------------------------------------------


def _fraction(value: float | None, signed: bool = False) -> str | None:
    if value is None:
        return None
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def _flips_text(title: str, flips: list[dict[str, Any]]) -> str:
    if not flips:
        return f"{title}: none"
    rows = [[f["id"], f["expected"], f["a_extracted"], f["b_extracted"]] for f in flips]
    return f"{title} ({len(flips)})\n" + table(["ID", "EXPECTED", "A ANSWER", "B ANSWER"], rows)


def as_text(result: dict[str, Any]) -> str:
    sides = [
        f"{name.upper()}  {s['source']}  ({s['items']} items, {s['scorer']}, "
        f"eval file sha256 {s['eval_sha256'][:12]})"
        for name, s in (("a", result["a"]), ("b", result["b"]))
    ]
    rows = [["overall", *result["overall"].values()]]
    rows += [[c, *v.values()] for c, v in result["by_category"].items()]
    cells = [[r[0], _fraction(r[1]), _fraction(r[2]), _fraction(r[3], signed=True)] for r in rows]
    parts = [
        "\n".join(sides),
        table(["ACCURACY", "A", "B", "B-A"], cells),
        _flips_text("right -> wrong", result["right_to_wrong"]),
        _flips_text("wrong -> right", result["wrong_to_right"]),
    ]
    unmatched = len(result["only_in_a"]) + len(result["only_in_b"])
    if unmatched:
        parts.append(
            f"{len(result['only_in_a'])} items only in A, {len(result['only_in_b'])} only in B"
        )
    return "\n\n".join(parts)


def run(args: argparse.Namespace) -> int:
    """`tunixrt eval compare A B`, parsed by the eval command's parser."""
    for flag, value in (("--out", args.out), ("--step", args.step)):
        if value is not None:
            raise InputError(f"{flag} goes with `tunixrt eval TARGET`, not with compare")
    if len(args.rest) != 2:
        raise InputError(f"compare takes two evaluations A B, got {len(args.rest)}")
    a, b = (read(given, args.registry) for given in args.rest)
    result = compare(a, b)
    for warning in result["warnings"]:
        sys.stderr.write(f"tunixrt eval compare: warning: {warning}\n")
    out = json.dumps(result, indent=2) if args.json else as_text(result)
    sys.stdout.write(out + "\n")
    return 0
