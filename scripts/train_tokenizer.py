"""Train the byte-level BPE tokenizer of a bundled dataset (datasets/dev-reasoning).

Reads the traces in train.jsonl and valid.jsonl, trains a Hugging Face `tokenizers`
byte-level BPE with tunixrt's special tokens at ids 0..5, saves tokenizer.json and records
it in the dataset's manifest.json (sha256, vocabulary size and the sha256 of the files it
was trained on, which scripts/make_dataset.py checks before keeping the entry).

    python scripts/make_dataset.py && python scripts/train_tokenizer.py
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

REPO = Path(__file__).resolve().parents[1]
# Order fixes the ids: <|pad|> is 0, <|answer|> is 5 (tunixrt/data/tokenize.py reads them).
SPECIAL_TOKENS = ["<|pad|>", "<|bos|>", "<|eos|>", "<|prompt|>", "<|completion|>", "<|answer|>"]
SOURCES = ("train.jsonl", "valid.jsonl")
GENERATOR = "scripts/train_tokenizer.py"


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
                raise SystemExit(f"{path}:{lineno}: not a reasoning trace ({err})") from None


def build_tokenizer(texts: list[str], vocab_size: int) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    # No prefix space, so decode(encode(s)) == s exactly.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes, any text encodes
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return tokenizer


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def update_manifest(data: Path, entry: dict[str, object], trained_on: dict[str, str]) -> None:
    path = data / "manifest.json"
    if not path.is_file():
        raise SystemExit(f"{path}: no manifest; run scripts/make_dataset.py first")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    for name in SOURCES:
        recorded = manifest.get("files", {}).get(name, {}).get("sha256")
        if recorded != trained_on[name]:
            raise SystemExit(f"{path}: the sha256 of {name} does not match the file; "
                             "rerun scripts/make_dataset.py")
    manifest["files"]["tokenizer.json"] = entry
    path.write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n",
                    encoding="utf-8", newline="\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO / "datasets" / "dev-reasoning",
                        help="dataset folder with train.jsonl, valid.jsonl and manifest.json")
    parser.add_argument("--vocab-size", type=int, default=2048)
    args = parser.parse_args(argv)

    texts = [text for name in SOURCES for text in trace_texts(args.data / name)]
    tokenizer = build_tokenizer(texts, args.vocab_size)
    for i, token in enumerate(SPECIAL_TOKENS):
        if tokenizer.token_to_id(token) != i:
            raise SystemExit(f"special token {token} did not get id {i}")
    out = args.data / "tokenizer.json"
    tokenizer.save(str(out))
    trained_on = {name: sha256(args.data / name) for name in SOURCES}
    entry = {
        "sha256": sha256(out),
        "generator": GENERATOR,
        "vocab_size": tokenizer.get_vocab_size(with_added_tokens=True),
        "special_tokens": SPECIAL_TOKENS,
        "trained_on": trained_on,
    }
    update_manifest(args.data, entry, trained_on)
    print(f"wrote {out}: vocabulary {entry['vocab_size']}, trained on {len(texts)} texts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
