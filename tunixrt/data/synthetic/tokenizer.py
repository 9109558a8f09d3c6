"""Train a dataset's byte-level BPE tokenizer and record it in the dataset's manifest.

Trains on the texts the data pipeline encodes (prompt, reasoning, final answer) of
train.jsonl and valid.jsonl, with tunixrt's special tokens at ids 0..5. The manifest entry
holds the sha256 of the files trained on, which `build` checks before keeping the entry.

Also writes the byte tokenizer (tokenizer-bytes.json): the same scheme with no merges, so
every byte of text is one token. A model reading letters and digits one at a time spells,
reverses and compares them by position instead of memorising each merged word.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from tunixrt.data.schema import DataError
from tunixrt.data.synthetic.build import (
    BYTE_TOKENIZER,
    TOKENIZER_SOURCES,
    sha256,
    write_manifest,
)
from tunixrt.data.tokenize import SPECIAL_TOKENS

logger = logging.getLogger(__name__)

GENERATOR = "scripts/train_tokenizer.py"  # the command that retrains, recorded in the manifest


def trace_texts(path: Path) -> Iterator[str]:
    """The texts the data pipeline encodes separately: prompt, reasoning, final answer."""
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                yield record["prompt"]
                yield "\n".join(step["content"] for step in record["steps"])
                yield record["final_answer"]
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise DataError(f"{path}:{lineno}: not a reasoning trace ({err})") from None


def fit_bpe(texts: list[str], vocab_size: int) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    # No prefix space, so decode(encode(s)) == s exactly.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes, any text encodes
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer, length=len(texts))
    for i, token in enumerate(SPECIAL_TOKENS):
        if tokenizer.token_to_id(token) != i:
            raise RuntimeError(f"special token {token} did not get id {i}")
    return tokenizer


def write_byte_tokenizer(data: Path) -> dict[str, Any]:
    """Write data/tokenizer-bytes.json (the special tokens, then the 256 byte symbols; no
    merges) and record it in data/manifest.json; returns the manifest entry."""
    tokenizer = fit_bpe([], len(SPECIAL_TOKENS) + 256)
    out = data / BYTE_TOKENIZER
    tokenizer.save(str(out))
    entry = {
        "sha256": sha256(out),
        "generator": f"{GENERATOR} --bytes",
        "vocab_size": tokenizer.get_vocab_size(with_added_tokens=True),
        "special_tokens": list(SPECIAL_TOKENS),
    }
    path = data / "manifest.json"
    if not path.is_file():
        raise DataError(f"{path}: no manifest; run scripts/make_dataset.py first")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["files"][BYTE_TOKENIZER] = entry
    write_manifest(path, manifest)
    logger.info("wrote %s: vocabulary %d (bytes only)", out, entry["vocab_size"])
    return entry


def update_manifest(data: Path, entry: dict[str, Any]) -> None:
    """Record `entry` as the manifest's tokenizer.json, if the manifest still describes the
    files the tokenizer was trained on."""
    path = data / "manifest.json"
    if not path.is_file():
        raise DataError(f"{path}: no manifest; run scripts/make_dataset.py first")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    for name in TOKENIZER_SOURCES:
        recorded = manifest.get("files", {}).get(name, {}).get("sha256")
        if recorded != entry["trained_on"][name]:
            raise DataError(
                f"{path}: the sha256 of {name} does not match the file; "
                "rerun scripts/make_dataset.py"
            )
    manifest["files"]["tokenizer.json"] = entry
    write_manifest(path, manifest)


def train_tokenizer(data: Path, vocab_size: int) -> dict[str, Any]:
    """Train on `data`'s train/valid traces, write data/tokenizer.json and record it in
    data/manifest.json; returns the manifest entry."""
    texts = [text for name in TOKENIZER_SOURCES for text in trace_texts(data / name)]
    tokenizer = fit_bpe(texts, vocab_size)
    out = data / "tokenizer.json"
    tokenizer.save(str(out))
    entry = {
        "sha256": sha256(out),
        "generator": GENERATOR,
        "vocab_size": tokenizer.get_vocab_size(with_added_tokens=True),
        "special_tokens": list(SPECIAL_TOKENS),
        "trained_on": {name: sha256(data / name) for name in TOKENIZER_SOURCES},
    }
    update_manifest(data, entry)
    logger.info(
        "wrote %s: vocabulary %d, trained on %d texts", out, entry["vocab_size"], len(texts)
    )
    return entry
