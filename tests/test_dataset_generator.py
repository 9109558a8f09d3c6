"""The bundled dev reasoning dataset: its generator, its files and its answers.

Answers are recomputed here from the structured problem in `meta.params` with independent
code (datetime for dates, math.gcd, Fraction arithmetic with this file's own unit table),
so a bug in a generator's arithmetic shows up as a mismatch.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from fractions import Fraction
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.paths import DEV_DATA, ROOT
from tunixrt.data.synthetic import FAMILIES, build

GENERATOR = ROOT / "scripts" / "make_dataset.py"
TRACE_KEYS = {"trace_version", "prompt", "steps", "final_answer", "meta"}
EVAL_KEYS = {"id", "prompt", "expected_answer", "category", "difficulty", "section"}
STEP_TYPES = {"parse", "compute", "convert", "compare", "check", "conclude"}
DIFFICULTIES = {"easy", "medium", "hard"}
SPECIAL_TOKENS = ["<|pad|>", "<|bos|>", "<|eos|>", "<|prompt|>", "<|completion|>", "<|answer|>"]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    return json.loads((DEV_DATA / "manifest.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def traces() -> list[dict[str, Any]]:
    return read_jsonl(DEV_DATA / "train.jsonl") + read_jsonl(DEV_DATA / "valid.jsonl")


# ---------------------------------------------------------------------------------------
# The generator


def run_generator(out: Path, *extra: str) -> None:
    subprocess.run(
        [
            sys.executable,
            str(GENERATOR),
            "--out",
            str(out),
            "--train",
            "120",
            "--valid",
            "20",
            "--eval",
            "40",
            *extra,
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_generator_is_byte_deterministic(tmp_path: Path) -> None:
    first, second, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    run_generator(first)
    run_generator(second)
    names = sorted(p.name for p in first.iterdir())
    assert names == ["eval.jsonl", "manifest.json", "train.jsonl", "valid.jsonl"]
    assert sorted(p.name for p in second.iterdir()) == names
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    run_generator(other, "--seed", "99")
    assert (other / "train.jsonl").read_bytes() != (first / "train.jsonl").read_bytes()


def test_generator_reproduces_shipped_files(manifest: dict[str, Any], tmp_path: Path) -> None:
    sizes = {
        name: manifest["files"][f"{name}.jsonl"]["records"] for name in ("train", "valid", "eval")
    }
    build(tmp_path, manifest["seed"], sizes["train"], sizes["valid"], sizes["eval"])
    for name in ("train.jsonl", "valid.jsonl", "eval.jsonl"):
        assert (tmp_path / name).read_bytes() == (DEV_DATA / name).read_bytes(), name


def test_generator_small_run_counts(tmp_path: Path) -> None:
    run_generator(tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))
    counts = {name: entry["records"] for name, entry in manifest["files"].items()}
    assert counts == {"train.jsonl": 120, "valid.jsonl": 20, "eval.jsonl": 40}
    assert "tokenizer.json" not in manifest["files"]  # no tokenizer trained here
    for split, n in (("train", 120), ("valid", 20), ("eval", 40)):
        assert sum(manifest["composition"][split].values()) == n


# ---------------------------------------------------------------------------------------
# The shipped files


def test_manifest_matches_shipped_files(manifest: dict[str, Any]) -> None:
    assert manifest["key"] == "dev_reasoning"
    assert manifest["generator"] == "scripts/make_dataset.py"
    assert isinstance(manifest["seed"], int)
    assert set(manifest["files"]) == {
        "train.jsonl",
        "valid.jsonl",
        "eval.jsonl",
        "tokenizer.json",
        "tokenizer-bytes.json",
    }
    for name, entry in manifest["files"].items():
        path = DEV_DATA / name
        assert entry["sha256"] == sha256(path), f"{name}: sha256 differs from manifest"
        if "records" in entry:
            lines = path.read_text(encoding="utf-8").splitlines()
            assert entry["records"] == len(lines), name
    trained_on = manifest["files"]["tokenizer.json"]["trained_on"]
    assert trained_on == {n: sha256(DEV_DATA / n) for n in ("train.jsonl", "valid.jsonl")}


def test_shipped_sizes_and_composition(manifest: dict[str, Any]) -> None:
    files, composition = manifest["files"], manifest["composition"]
    assert files["train.jsonl"]["records"] >= 2000
    assert files["eval.jsonl"]["records"] >= 300
    assert len(composition["train"]) >= 12
    for split in ("train", "valid", "eval"):
        assert sum(composition[split].values()) == files[f"{split}.jsonl"]["records"]
        assert set(composition[split]) == set(composition["train"])
    counts = composition["train"].values()
    assert max(counts) - min(counts) <= 1  # balanced


def test_shipped_files_are_canonical_text() -> None:
    for name in ("train.jsonl", "valid.jsonl", "eval.jsonl", "manifest.json"):
        data = (DEV_DATA / name).read_bytes()
        assert data.endswith(b"\n") and b"\r" not in data, name


def test_trace_lines_have_the_schema(traces: list[dict[str, Any]]) -> None:
    ids = set()
    for record in traces:
        assert set(record) == TRACE_KEYS
        assert record["trace_version"] == "1.0"
        assert isinstance(record["prompt"], str) and record["prompt"]
        assert isinstance(record["final_answer"], str) and record["final_answer"]
        steps = record["steps"]
        assert isinstance(steps, list) and len(steps) >= 2
        assert [s["i"] for s in steps] == list(range(1, len(steps) + 1))
        for step in steps:
            assert set(step) == {"i", "type", "content"}
            assert type(step["i"]) is int
            assert step["type"] in STEP_TYPES
            assert isinstance(step["content"], str) and step["content"]
        meta = record["meta"]
        assert isinstance(meta["family"], str) and isinstance(meta["id"], str)
        assert meta["difficulty"] in DIFFICULTIES
        assert isinstance(meta["params"], dict)
        ids.add(meta["id"])
    assert len(ids) == len(traces)


def test_every_family_has_every_difficulty(traces: list[dict[str, Any]]) -> None:
    pairs = Counter((r["meta"]["family"], r["meta"]["difficulty"]) for r in traces)
    families = {family for family, _ in pairs}
    assert all(pairs[(f, d)] >= 20 for f in families for d in DIFFICULTIES)


def test_eval_items(manifest: dict[str, Any], traces: list[dict[str, Any]]) -> None:
    items = read_jsonl(DEV_DATA / "eval.jsonl")
    for item in items:
        assert set(item) == EVAL_KEYS
        assert all(isinstance(item[k], str) and item[k] for k in EVAL_KEYS)
        assert item["difficulty"] in DIFFICULTIES
        assert item["category"] in manifest["composition"]["train"]
    assert len({item["id"] for item in items}) == len(items)
    seen = {record["prompt"] for record in traces}
    assert len(seen) == len(traces)  # no prompt repeats within or across train and valid
    assert not [item["id"] for item in items if item["prompt"] in seen]
    assert Counter(item["category"] for item in items) == Counter(manifest["composition"]["eval"])


# ---------------------------------------------------------------------------------------
# Answers, recomputed from meta.params

UNIT = {
    "mm": Fraction(1, 1000),
    "cm": Fraction(1, 100),
    "m": Fraction(1),
    "km": Fraction(1000),
    "mg": Fraction(1, 1000),
    "g": Fraction(1),
    "kg": Fraction(1000),
    "s": Fraction(1),
    "min": Fraction(60),
    "h": Fraction(3600),
    "mL": Fraction(1, 1000),
    "L": Fraction(1),
}


def check_arithmetic_word(p: dict[str, Any], prompt: str) -> Fraction:
    template = p["template"]
    if template == "add_remove":
        return Fraction(p["start"] + p["gain"] - p["lose"])
    assert f"{p['b']} " in prompt and f" {p['k']} " in prompt
    total = p["b"] * p["k"]
    if template == "total":
        return Fraction(total)
    if template == "sell":
        return Fraction(total - p["s"])
    if template == "share":
        assert total % p["g"] == 0
        return Fraction(total // p["g"])
    if template == "two_groups_sell":
        return Fraction(total + p["c"] * p["m"] - p["s"])
    assert template == "sell_then_share" and (total - p["s"]) % p["g"] == 0
    return Fraction(total - p["s"], p["g"])


def check_unit_conversion(p: dict[str, Any], prompt: str) -> Fraction:
    for value, _ in p["quantities"]:
        assert value in prompt
    total = sum(Fraction(value) * UNIT[unit] for value, unit in p["quantities"])
    return total / UNIT[p["to"]]


def check_percentage(p: dict[str, Any], prompt: str) -> Fraction:
    base, rate = Fraction(p["base"]), Fraction(p["p"], 100)
    assert f"{p['base']}" in prompt and f"{p['p']}%" in prompt
    kind = p["kind"]
    if kind == "of":
        return base * rate
    if kind in ("discount", "increase"):
        return base * (1 - rate if kind == "discount" else 1 + rate)
    second = 1 - Fraction(p["q"], 100)
    first = 1 - rate if kind == "discount_then_discount" else 1 + rate
    assert kind in ("discount_then_discount", "increase_then_decrease")
    return base * first * second


def check_string_reversal(p: dict[str, Any], prompt: str) -> str:
    assert f"'{p['text']}'" in prompt
    return p["text"][::-1]


def check_sorting(p: dict[str, Any], prompt: str) -> str:
    if p["kind"] == "letters":
        assert f"'{p['word']}'" in prompt
        return "".join(sorted(p["word"]))
    assert ", ".join(map(str, p["items"])) in prompt
    return ", ".join(map(str, sorted(p["items"], reverse=p["order"] == "descending")))


def check_counting(p: dict[str, Any], prompt: str) -> Fraction:
    kind = p["kind"]
    if kind == "length":
        return Fraction(len(p["text"]))
    if kind == "letter":
        return Fraction(p["text"].count(p["letter"]))
    assert ", ".join(map(str, p["items"])) in prompt
    if kind == "even":
        return Fraction(sum(1 for x in p["items"] if x % 2 == 0))
    return Fraction(sum(1 for x in p["items"] if x > p["threshold"]))


def check_sequence(p: dict[str, Any], prompt: str) -> Fraction:
    terms = p["terms"]
    assert ", ".join(map(str, terms)) in prompt
    if p["kind"] == "arithmetic":
        step = terms[1] - terms[0]
        assert all(b - a == step for a, b in pairwise(terms))
        return Fraction(terms[0] + (p["position"] - 1) * step)
    ratio = Fraction(terms[1], terms[0])
    assert all(Fraction(b, a) == ratio for a, b in pairwise(terms))
    assert ratio == Fraction(p["ratio"])
    return terms[0] * ratio ** (p["position"] - 1)


def check_comparison(p: dict[str, Any], prompt: str) -> str:
    values = {text: Fraction(text) for text in p["values"]}
    assert len(set(values.values())) == len(values)
    assert all(text in prompt for text in values)
    pick = max if p["ask"] in ("larger", "largest") else min
    return pick(values, key=values.__getitem__)


SYLLOGISM_ANSWERS = {
    "barbara": "yes",
    "darii": "yes",
    "celarent": "no",
    "undistributed": "no",
    "converse": "no",
}


def check_logic(p: dict[str, Any], prompt: str) -> str:
    if p["kind"] == "syllogism":
        return SYLLOGISM_ANSWERS[p["form"]]
    assert p["expression"] in prompt
    words = p["expression"].replace("(", " ( ").replace(")", " ) ").split()
    python = " ".join({"AND": "and", "OR": "or", "NOT": "not"}.get(w, w) for w in words)
    env = {name: bool(value) for name, value in p["values"].items()}
    value = eval(python, {"__builtins__": {}}, env)  # noqa: S307 - letters and and/or/not only
    return "true" if value else "false"


def check_date_arithmetic(p: dict[str, Any], prompt: str) -> str:
    start = datetime.date.fromisoformat(p["start"])
    assert f" {p['days']} days" in prompt
    return (start + datetime.timedelta(days=p["days"])).isoformat()


def check_clock_time(p: dict[str, Any], prompt: str) -> str:
    assert p["start"] in prompt and f"{p['minutes']} minutes" in prompt
    hours, minutes = map(int, p["start"].split(":"))
    total = (hours * 60 + minutes + p["minutes"]) % (24 * 60)
    return f"{total // 60:02d}:{total % 60:02d}"


def check_gcd_lcm(p: dict[str, Any], prompt: str) -> Fraction:
    assert all(str(n) in prompt for n in p["numbers"])
    op = math.gcd if p["op"] == "gcd" else math.lcm
    return Fraction(op(*p["numbers"]))


def check_divisibility(p: dict[str, Any], prompt: str) -> str:
    n, d = p["number"], p["divisor"]
    assert str(n) in prompt
    if d == 2:
        return "even" if n % 2 == 0 else "odd"
    return "yes" if n % d == 0 else "no"


def check_linear_equation(p: dict[str, Any], prompt: str) -> Fraction:
    a, b, c, d = p["a"], p["b"], p["c"], p["d"]
    assert a != c
    x = Fraction(d - b, a - c)
    assert x.denominator == 1
    assert a * x + b == c * x + d
    return x


CHECKERS: dict[str, Callable[[dict[str, Any], str], Any]] = {
    "arithmetic_word": check_arithmetic_word,
    "unit_conversion": check_unit_conversion,
    "percentage": check_percentage,
    "string_reversal": check_string_reversal,
    "sorting": check_sorting,
    "counting": check_counting,
    "sequence": check_sequence,
    "comparison": check_comparison,
    "logic": check_logic,
    "date_arithmetic": check_date_arithmetic,
    "clock_time": check_clock_time,
    "gcd_lcm": check_gcd_lcm,
    "divisibility": check_divisibility,
    "linear_equation": check_linear_equation,
}


def test_every_family_has_a_checker(manifest: dict[str, Any]) -> None:
    assert set(manifest["composition"]["train"]) == set(CHECKERS)
    assert set(FAMILIES) == set(CHECKERS)


@pytest.mark.parametrize("family", sorted(CHECKERS))
def test_answers_recomputed_from_params(family: str, traces: list[dict[str, Any]]) -> None:
    records = [r for r in traces if r["meta"]["family"] == family]
    assert records
    for record in records:
        expected = CHECKERS[family](record["meta"]["params"], record["prompt"])
        answer = record["final_answer"]
        where = f"{record['meta']['id']}: {record['prompt']!r}"
        if isinstance(expected, Fraction):
            assert Fraction(answer) == expected, where
            assert answer == str(Fraction(answer)) or "." in answer, where  # no "6/1" forms
            assert not (answer.endswith("0") and "." in answer), where  # no "2.50"
        else:
            assert answer == expected, where
        assert answer in record["steps"][-1]["content"], where


# ---------------------------------------------------------------------------------------
# The tokenizer


def test_tokenizer_special_tokens_and_round_trip(traces: list[dict[str, Any]]) -> None:
    tokenizers = pytest.importorskip("tokenizers")
    tok = tokenizers.Tokenizer.from_file(str(DEV_DATA / "tokenizer.json"))
    assert [tok.token_to_id(t) for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    assert tok.get_vocab_size(with_added_tokens=True) == 2048
    samples = [
        "Hello,  world!\n\tx = 3.5 * (-2)  ",
        " leading and trailing spaces ",
        "~`{}[]|\\^_@#$%&",
        "",
    ]
    samples += [r["prompt"] for r in traces[:50]]
    samples += ["\n".join(s["content"] for s in r["steps"]) for r in traces[:50]]
    for text in samples:
        assert tok.decode(tok.encode(text).ids) == text


def test_tokenizer_script_reproduces_the_shipped_tokenizer(tmp_path: Path) -> None:
    """scripts/train_tokenizer.py on the shipped traces writes the shipped tokenizer.json
    byte for byte, and records it in the manifest as the shipped manifest does."""
    for name in ("train.jsonl", "valid.jsonl", "eval.jsonl", "manifest.json"):
        (tmp_path / name).write_bytes((DEV_DATA / name).read_bytes())
    script = ROOT / "scripts" / "train_tokenizer.py"
    subprocess.run([sys.executable, str(script), "--data", str(tmp_path)], check=True, cwd=ROOT)
    assert (tmp_path / "tokenizer.json").read_bytes() == (DEV_DATA / "tokenizer.json").read_bytes()
    made = json.loads((tmp_path / "manifest.json").read_text())
    shipped = json.loads((DEV_DATA / "manifest.json").read_text())
    assert made["files"]["tokenizer.json"] == shipped["files"]["tokenizer.json"]


def test_the_byte_tokenizer_reads_one_byte_a_token(traces: list[dict[str, Any]]) -> None:
    tokenizers = pytest.importorskip("tokenizers")
    tok = tokenizers.Tokenizer.from_file(str(DEV_DATA / "tokenizer-bytes.json"))
    assert [tok.token_to_id(t) for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    assert tok.get_vocab_size(with_added_tokens=True) == len(SPECIAL_TOKENS) + 256
    samples = ["Write 'koala' backwards.", "x = 3.5 * (-2)  \n\t", "é 日本 ½", ""]
    samples += ["\n".join(s["content"] for s in r["steps"]) for r in traces[:50]]
    for text in samples:
        ids = tok.encode(text).ids
        assert len(ids) == len(text.encode("utf-8")), text
        assert tok.decode(ids) == text


def test_byte_tokenizer_script_reproduces_the_shipped_one_and_rebuilds_keep_it(
    tmp_path: Path,
) -> None:
    """scripts/train_tokenizer.py --bytes writes the shipped tokenizer-bytes.json and its
    manifest entry; regenerating the dataset keeps that entry while the file is unchanged."""
    for name in ("train.jsonl", "valid.jsonl", "eval.jsonl", "manifest.json"):
        (tmp_path / name).write_bytes((DEV_DATA / name).read_bytes())
    script = ROOT / "scripts" / "train_tokenizer.py"
    subprocess.run(
        [sys.executable, str(script), "--data", str(tmp_path), "--bytes"], check=True, cwd=ROOT
    )
    name = "tokenizer-bytes.json"
    assert (tmp_path / name).read_bytes() == (DEV_DATA / name).read_bytes()
    shipped = json.loads((DEV_DATA / "manifest.json").read_text())
    assert (
        json.loads((tmp_path / "manifest.json").read_text())["files"][name]
        == (shipped["files"][name])
    )
    sizes = {n: shipped["files"][f"{n}.jsonl"]["records"] for n in ("train", "valid", "eval")}
    rebuilt = build(tmp_path, shipped["seed"], sizes["train"], sizes["valid"], sizes["eval"])
    assert rebuilt["files"][name] == shipped["files"][name]
    (tmp_path / name).write_text("{}")
    rebuilt = build(tmp_path, shipped["seed"], sizes["train"], sizes["valid"], sizes["eval"])
    assert name not in rebuilt["files"]
