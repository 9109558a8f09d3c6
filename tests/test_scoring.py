"""Tests for tunixrt.evaluation.scoring: extraction, normalisation, eval sets, aggregates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunixrt.data.render import Rendered
from tunixrt.data.schema import DataError
from tunixrt.data.tokenize import SPECIAL_TOKENS, TextTokenizer
from tunixrt.evaluation import (
    SCORER_NAME,
    SCORER_VERSION,
    EvalItem,
    aggregate,
    decode_completion,
    extract_answer,
    is_correct,
    normalize,
    read_eval_set,
    score,
)

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "datasets" / "dev-reasoning"
MARK = "<|answer|>"

# (generated text, expected answer, correct?)
CASES = [
    # extraction: the answer marker, then "the answer is", then the last line
    (f"Add them: 2 + 3 = 5.\n{MARK} 5", "5", True),
    (f"{MARK} 4\nextra words", "4", True),
    (f"first {MARK} 3 then {MARK} 7", "7", True),
    ("Subtract 8. The answer is 7.", "7", True),
    ("The answer is 31.5.", "31.50", True),
    ("The answer is 7. Checking: 7 + 1 = 8.", "7", True),
    ("the answer is 3. No wait, the answer is 4.", "4", True),
    ("Final answer: yes", "yes", True),
    ("Step one.\nStep two.\n42", "42", True),
    ("Step one.\n42\n\n", "42", True),
    ("The answer is 7.\n8", "7", True),
    (f"reasoning mentions 5\n{MARK} 6", "5", False),
    # numbers
    ("0.5", ".5", True),
    ("31.50", "31.5", True),
    ("5.0", "5", True),
    ("+5", "5", True),
    ("-0", "0", True),
    ("1,234", "1234", True),
    ("1,234,567.50", "1234567.5", True),
    ("12", "12.01", False),
    ("-3", "3", False),
    ("41.25%", "41.25", True),
    ("41.25 percent", "41.25", True),
    ("$31.50", "31.5", True),
    ("8726 ml", "8726", True),
    ("12 dollars.", "12", True),
    ("8727 ml", "8726", False),
    # text, case, punctuation, quotes
    ("Yes.", "yes", True),
    ("  TRUE  ", "true", True),
    ("'ztrauq'", "ztrauq", True),
    ("**no**", "no", True),
    ("ztruaq", "ztrauq", False),
    ("no", "yes", False),
    ("x = 10", "10", True),
    (r"\boxed{9}", "9", True),
    # lists, times, dates, fractions
    ("38,52,56,84", "38, 52, 56, 84", True),
    ("38 ,52,  56 , 84.", "38, 52, 56, 84", True),
    ("38, 56, 52, 84", "38, 52, 56, 84", False),
    ("38, 52, 56", "38, 52, 56, 84", False),
    ("9:00", "09:00", True),
    ("09:30", "09:00", False),
    ("2025-02-13", "2025-02-13", True),
    ("2025-02-14", "2025-02-13", False),
    ("5 / 12", "5/12", True),
    ("5/13", "5/12", False),
    ("", "5", False),
]


@pytest.mark.parametrize(("generated", "expected", "correct"), CASES)
def test_scoring_table(generated, expected, correct):
    assert is_correct(generated, expected) is correct


def test_extract_and_normalize_directly():
    assert extract_answer("Work.\nThe final answer is 2,500 kg. Done") == "2,500 kg"
    assert normalize("2,500 kg") == "2500"
    assert normalize(" 38 , 52 ") == "38,52"
    assert normalize("1, 234") == "1,234"  # a list, not one thousand two hundred
    assert normalize("1,234") == "1234"
    assert extract_answer("") == ""


def test_scorer_is_named_and_versioned():
    assert SCORER_NAME and SCORER_VERSION
    summary = aggregate([])
    assert summary["scorer"] == SCORER_NAME and summary["scorer_version"] == SCORER_VERSION
    assert MARK in SPECIAL_TOKENS


# ---------------------------------------------------------------- bundled eval set


def test_bundled_eval_set_reads_and_every_answer_matches_itself():
    items = read_eval_set(BUNDLED / "eval.jsonl")
    assert len(items) == 360
    assert len({item.id for item in items}) == 360
    assert all(item.category and item.section and item.difficulty for item in items)
    tokenizer = TextTokenizer.from_file(BUNDLED / "tokenizer.json")
    for item in items:
        # Rendered as training renders a trace, tokenized, generated back and decoded.
        encoded = tokenizer.encode(Rendered(item.prompt, "Some reasoning.", item.expected_answer))
        completion = encoded.ids[encoded.mask].tolist()[:-1]  # the EOS is not decoded
        text = decode_completion(tokenizer, completion)
        assert is_correct(text, item.expected_answer), (item.id, text)
        assert is_correct(f"The answer is {item.expected_answer}.", item.expected_answer)


def test_a_trace_file_works_as_an_eval_set():
    items = read_eval_set(BUNDLED / "valid.jsonl")
    first = json.loads((BUNDLED / "valid.jsonl").read_text().splitlines()[0])
    assert items[0].prompt == first["prompt"]
    assert items[0].expected_answer == first["final_answer"]
    assert items[0].category == first["meta"]["family"]
    assert items[0].difficulty == first["meta"]["difficulty"]
    assert all(item.id for item in items)


def test_other_keys_are_kept_and_missing_ids_of_traces_are_filled(tmp_path):
    path = tmp_path / "mixed.jsonl"
    rows = [
        {"id": "a", "prompt": "p", "expected_answer": "1", "source": "x"},
        {"prompt": "q", "steps": [], "final_answer": "2"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    items = read_eval_set(path)
    assert items[0].extra == {"source": "x"} and items[0].category is None
    assert items[1] == EvalItem("mixed-1", "q", "2")


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"id": "b", "prompt": "p"}', "missing key 'expected_answer'"),
        ('{"id": 3, "prompt": "p", "expected_answer": "1"}', "key 'id' must be str"),
        ('{"prompt": "p", "final_answer": 4, "steps": []}', "key 'final_answer' must be str"),
        ("not json", "invalid JSON"),
    ],
)
def test_a_bad_line_names_file_and_line(tmp_path, line, reason):
    path = tmp_path / "eval.jsonl"
    good = json.dumps({"id": "a", "prompt": "p", "expected_answer": "1"})
    path.write_text(f"{good}\n\n{line}\n")
    with pytest.raises(DataError, match=rf"{path.name}:3: .*{reason}"):
        read_eval_set(path)


# ---------------------------------------------------------------- aggregates


def test_aggregate_counts_overall_and_per_group():
    def item(i, category, difficulty, section="in"):
        return EvalItem(f"i{i}", "p", "5", category, difficulty, section)

    results = [
        score(item(0, "add", "easy"), f"{MARK} 5"),
        score(item(1, "add", "hard"), f"{MARK} 6"),
        score(item(2, "sort", "easy", "out"), "The answer is 5."),
        score(EvalItem("i3", "p", "5"), "5"),  # no category, section or difficulty
    ]
    assert [r.answer for r in results] == ["5", "6", "5", "5"]
    summary = aggregate(results)
    assert summary["overall"] == {"correct": 3, "total": 4, "accuracy": 0.75}
    assert summary["by_category"] == {
        "add": {"correct": 1, "total": 2, "accuracy": 0.5},
        "sort": {"correct": 1, "total": 1, "accuracy": 1.0},
    }
    assert summary["by_difficulty"]["easy"] == {"correct": 2, "total": 2, "accuracy": 1.0}
    assert summary["by_difficulty"]["hard"]["correct"] == 0
    assert summary["by_section"] == {
        "in": {"correct": 1, "total": 2, "accuracy": 0.5},
        "out": {"correct": 1, "total": 1, "accuracy": 1.0},
    }


def test_aggregate_over_the_bundled_set_counts_every_group():
    items = read_eval_set(BUNDLED / "eval.jsonl")
    summary = aggregate([score(item, f"{MARK} {item.expected_answer}") for item in items])
    assert summary["overall"] == {"correct": 360, "total": 360, "accuracy": 1.0}
    assert sum(g["total"] for g in summary["by_category"].values()) == 360
    assert len(summary["by_category"]) == 14
    assert summary["by_section"]["in_distribution"]["total"] == 360
    assert {k: v["total"] for k, v in summary["by_difficulty"].items()} == {
        "easy": 126,
        "hard": 112,
        "medium": 122,
    }
