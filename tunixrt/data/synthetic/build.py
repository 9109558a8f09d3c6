"""Draw a dataset's problems and write its files: train/valid traces, eval items, manifest.

Every problem comes from a `random.Random` seeded from the seed and the split name, and its
steps are computed from the problem itself, so the same arguments write byte-identical files.
The manifest's tokenizer entry belongs to `tunixrt.data.synthetic.tokenizer`: it is kept
only while tokenizer.json is unchanged and was trained on exactly the train/valid files
written now; otherwise it is dropped and the tokenizer must be retrained.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tunixrt.data.synthetic.arithmetic import (
    gen_arithmetic_word,
    gen_linear_equation,
    gen_percentage,
)
from tunixrt.data.synthetic.common import Generator, Problem
from tunixrt.data.synthetic.comparison import gen_comparison
from tunixrt.data.synthetic.dates import gen_clock_time, gen_date_arithmetic
from tunixrt.data.synthetic.logic import gen_logic
from tunixrt.data.synthetic.number_theory import gen_divisibility, gen_gcd_lcm
from tunixrt.data.synthetic.sequences import gen_sequence
from tunixrt.data.synthetic.strings import (
    WORD_FAMILIES,
    Lexicon,
    gen_counting,
    gen_sorting,
    gen_string_reversal,
)
from tunixrt.data.synthetic.units import gen_unit_conversion

logger = logging.getLogger(__name__)

DATASET_KEY = "dev_reasoning"
DATASET_VERSION = "1.0.0"
SCHEMA_VERSION = "1.0"
TRACE_VERSION = "1.0"
GENERATOR = "scripts/make_dataset.py"  # the command that regenerates the files
DIFFICULTIES = ("easy", "medium", "hard")
EVAL_SECTION = "in_distribution"
MAX_ATTEMPTS = 2000  # draws per record before giving up on finding an unseen problem
TOKENIZER_SOURCES = ("train.jsonl", "valid.jsonl")
BYTE_TOKENIZER = "tokenizer-bytes.json"  # written by scripts/train_tokenizer.py --bytes

# Sorted by name. The order decides which family fills which slot of a split, so changing
# it changes the generated files.
FAMILIES: dict[str, Generator] = {
    "arithmetic_word": gen_arithmetic_word,
    "clock_time": gen_clock_time,
    "comparison": gen_comparison,
    "counting": gen_counting,
    "date_arithmetic": gen_date_arithmetic,
    "divisibility": gen_divisibility,
    "gcd_lcm": gen_gcd_lcm,
    "linear_equation": gen_linear_equation,
    "logic": gen_logic,
    "percentage": gen_percentage,
    "sequence": gen_sequence,
    "sorting": gen_sorting,
    "string_reversal": gen_string_reversal,
    "unit_conversion": gen_unit_conversion,
}

Row = tuple[str, str, Problem]  # (family, difficulty, problem)


def problem_key(family: str, params: dict[str, Any]) -> str:
    return family + ":" + json.dumps(params, sort_keys=True)


def draw_problems(
    split: str,
    n: int,
    seed: int,
    seen_keys: set[str],
    seen_prompts: set[str],
    families: Sequence[str] | None = None,
) -> list[Row]:
    """n new (family, difficulty, problem) of `families` (None: all); families and
    difficulties balanced, order shuffled.

    A problem whose parameters or prompt already appeared in an earlier split (or earlier in
    this one) is redrawn, so no eval prompt is a train prompt.
    """
    rng = random.Random(f"{DATASET_KEY}:{seed}:{split}")
    names = list(FAMILIES) if families is None else list(families)
    slots = [
        (names[i % len(names)], DIFFICULTIES[(i // len(names)) % len(DIFFICULTIES)])
        for i in range(n)
    ]
    rng.shuffle(slots)
    out = []
    for family, difficulty in slots:
        for _ in range(MAX_ATTEMPTS):
            problem = FAMILIES[family](rng, difficulty)
            key = problem_key(family, problem.params)
            if key not in seen_keys and problem.prompt not in seen_prompts:
                break
        else:
            raise RuntimeError(
                f"{split}: no unseen {difficulty} {family} problem after "
                f"{MAX_ATTEMPTS} draws; the family's problem space is too small"
            )
        seen_keys.add(key)
        seen_prompts.add(problem.prompt)
        out.append((family, difficulty, problem))
    return out


def held_out_problems(manifest: dict[str, Any]) -> tuple[set[str], list[Row]]:
    """The problem keys and rows of the valid and eval splits of a dataset `build`
    wrote, drawn again from its manifest's seed and split sizes."""
    keys: set[str] = set()
    prompts: set[str] = set()
    splits = {
        name: draw_problems(
            name,
            manifest["files"][f"{name}.jsonl"]["records"],
            int(manifest["seed"]),
            keys,
            prompts,
        )
        for name in ("train", "valid", "eval")
    }
    rows = splits["valid"] + splits["eval"]
    return {problem_key(family, problem.params) for family, _, problem in rows}, rows


def with_words(family: str, lexicon: Lexicon, tally_counts: bool = False) -> Generator:
    """The family's generator, drawing its words from `lexicon` if it uses words;
    `tally_counts`: counting's traces keep a running count (`gen_counting`)."""
    if family == "counting":
        return lambda rng, difficulty: gen_counting(rng, difficulty, lexicon, tally_counts)
    word_family = WORD_FAMILIES.get(family)
    if word_family is None:
        return FAMILIES[family]
    return lambda rng, difficulty: word_family(rng, difficulty, lexicon)


def draw_training(
    families: Sequence[str],
    per_family: int,
    seed: int,
    held_out: set[str],
    held_out_keys: set[str],
    invented_words: float = 0.0,
    tally_counts: bool = False,
) -> list[Row]:
    """per_family problems of each family (difficulties balanced, order shuffled) whose
    prompts are not in `held_out` and whose problems (keys) are not in `held_out_keys`,
    so a problem asked in other words is held out too. Unlike a split, repeats are
    allowed: several families have fewer distinct problems than a long run draws.
    `invented_words`: the share of the string families' words that are random letters
    (`Lexicon`); `tally_counts`: counting's traces keep a running count."""
    lexicon = Lexicon(invented_words)
    generators = {family: with_words(family, lexicon, tally_counts) for family in families}
    rng = random.Random(f"{DATASET_KEY}:{seed}:generated:{','.join(families)}")
    slots = [
        (family, DIFFICULTIES[i % len(DIFFICULTIES)])
        for i in range(per_family)
        for family in families
    ]
    rng.shuffle(slots)
    out = []
    for family, difficulty in slots:
        for _ in range(MAX_ATTEMPTS):
            problem = generators[family](rng, difficulty)
            if (
                problem.prompt not in held_out
                and problem_key(family, problem.params) not in held_out_keys
            ):
                break
        else:
            raise RuntimeError(
                f"no {difficulty} {family} problem outside the held-out prompts after "
                f"{MAX_ATTEMPTS} draws"
            )
        out.append((family, difficulty, problem))
    return out


def trace_record(
    split: str, index: int, family: str, difficulty: str, problem: Problem
) -> dict[str, Any]:
    return {
        "trace_version": TRACE_VERSION,
        "prompt": problem.prompt,
        "steps": [
            {"i": i, "type": kind, "content": content}
            for i, (kind, content) in enumerate(problem.steps, start=1)
        ],
        "final_answer": problem.answer,
        "meta": {
            "family": family,
            "difficulty": difficulty,
            "id": f"{split}-{index:05d}",
            "params": problem.params,
        },
    }


def eval_record(index: int, family: str, difficulty: str, problem: Problem) -> dict[str, Any]:
    return {
        "id": f"eval-{index:04d}",
        "prompt": problem.prompt,
        "expected_answer": problem.answer,
        "category": family,
        "difficulty": difficulty,
        "section": EVAL_SECTION,
    }


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    path.write_text(text, encoding="utf-8", newline="\n")


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    text = json.dumps(manifest, ensure_ascii=False, indent=2) + "\n"
    path.write_text(text, encoding="utf-8", newline="\n")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def kept_tokenizer_entry(out: Path, files: dict[str, Any]) -> dict[str, Any] | None:
    """The old manifest's tokenizer entry, if it still describes tokenizer.json and was
    trained on the train/valid files just written."""
    manifest, tokenizer = out / "manifest.json", out / "tokenizer.json"
    if not manifest.is_file() or not tokenizer.is_file():
        return None
    entry = json.loads(manifest.read_text(encoding="utf-8")).get("files", {}).get("tokenizer.json")
    if not isinstance(entry, dict) or entry.get("sha256") != sha256(tokenizer):
        return None
    trained_on = {name: files[name]["sha256"] for name in TOKENIZER_SOURCES}
    return entry if entry.get("trained_on") == trained_on else None


def kept_byte_tokenizer_entry(out: Path) -> dict[str, Any] | None:
    """The old manifest's entry of the byte tokenizer, if it still describes the file."""
    manifest, tokenizer = out / "manifest.json", out / BYTE_TOKENIZER
    if not manifest.is_file() or not tokenizer.is_file():
        return None
    entry = json.loads(manifest.read_text(encoding="utf-8")).get("files", {}).get(BYTE_TOKENIZER)
    return entry if isinstance(entry, dict) and entry.get("sha256") == sha256(tokenizer) else None


def build(out: Path, seed: int, n_train: int, n_valid: int, n_eval: int) -> dict[str, Any]:
    """Write train.jsonl, valid.jsonl, eval.jsonl and manifest.json into `out`; returns the
    manifest. Its "files" has a "tokenizer.json" entry only if the old one is still valid."""
    out.mkdir(parents=True, exist_ok=True)
    seen_keys: set[str] = set()
    seen_prompts: set[str] = set()
    splits = {
        name: draw_problems(name, n, seed, seen_keys, seen_prompts)
        for name, n in (("train", n_train), ("valid", n_valid), ("eval", n_eval))
    }
    for name in ("train", "valid"):
        write_jsonl(
            out / f"{name}.jsonl",
            [trace_record(name, i, *row) for i, row in enumerate(splits[name])],
        )
    write_jsonl(out / "eval.jsonl", [eval_record(i, *row) for i, row in enumerate(splits["eval"])])
    files: dict[str, Any] = {
        f"{name}.jsonl": {"records": len(rows), "sha256": sha256(out / f"{name}.jsonl")}
        for name, rows in splits.items()
    }
    tokenizer = kept_tokenizer_entry(out, files)
    if tokenizer is not None:
        files["tokenizer.json"] = tokenizer
    byte_tokenizer = kept_byte_tokenizer_entry(out)
    if byte_tokenizer is not None:  # depends on no data: kept while the file is unchanged
        files[BYTE_TOKENIZER] = byte_tokenizer
    manifest = {
        "key": DATASET_KEY,
        "version": DATASET_VERSION,
        "schema_version": SCHEMA_VERSION,
        "generator": GENERATOR,
        "seed": seed,
        "files": files,
        "composition": {
            name: dict(sorted(Counter(f for f, _, _ in rows).items()))
            for name, rows in splits.items()
        },
    }
    write_manifest(out / "manifest.json", manifest)
    logger.info(
        "wrote %s: %s records, %d families%s",
        out,
        ", ".join(f"{name} {len(rows)}" for name, rows in splits.items()),
        len(FAMILIES),
        "" if tokenizer is not None else "; tokenizer.json is missing or stale",
    )
    return manifest
