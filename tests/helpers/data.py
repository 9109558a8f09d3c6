"""Small training data: reasoning traces, JSONL files and a tokenizer trained on them."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path


def trace(prompt: str, steps: Sequence[str], answer: str) -> dict:
    """A trace record as the dataset files hold it, every step of type "compute"."""
    return {
        "trace_version": "1.0",
        "prompt": prompt,
        "steps": [{"i": i, "type": "compute", "content": c} for i, c in enumerate(steps)],
        "final_answer": answer,
        "meta": {},
    }


def write_jsonl(path: Path, records: Sequence[dict | str]) -> Path:
    """One line per record; strings are written as they are (to test malformed lines)."""
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def addition_traces(n: int, seed: int = 0) -> list[dict]:
    """`n` one-step traces adding two numbers below 30, the same for the same seed."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rng.randint(0, 29), rng.randint(0, 29)
        out.append(trace(f"What is {a} + {b}?", [f"{a} + {b} = {a + b}."], str(a + b)))
    return out


def build_small_tokenizer(path: Path) -> Path:
    """A byte-level BPE tokenizer with tunixrt's special tokens, trained on the sums
    that `addition_traces` asks about, saved to `path`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from tunixrt.data import SPECIAL_TOKENS

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    corpus = [f"What is {a} + {b}? {a} + {b} = {a + b}." for a in range(30) for b in range(30)]
    tok.train_from_iterator(corpus, trainer)
    tok.save(str(path))
    return path


def cache_folders(root: Path, source: Path | None = None) -> list[Path]:
    """The complete token-cache folders under `root` (those with a manifest), only those
    built from `source` if given."""
    found = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        manifest = folder / "manifest.json"
        if manifest.is_file() and (
            source is None or json.loads(manifest.read_text())["source"] == str(source)
        ):
            found.append(folder)
    return found
