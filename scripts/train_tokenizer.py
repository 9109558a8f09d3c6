"""Train the byte-level BPE tokenizer of a bundled dataset (datasets/dev-reasoning).

Trains on train.jsonl and valid.jsonl, saves tokenizer.json and records it in the dataset's
manifest.json. The training lives in tunixrt.data.synthetic.tokenizer. With --bytes, writes
tokenizer-bytes.json instead: every byte one token, no merges (experiment=learn_check).

    python scripts/make_dataset.py && python scripts/train_tokenizer.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tunixrt.data.schema import DataError
from tunixrt.data.synthetic import train_tokenizer
from tunixrt.data.synthetic.build import BYTE_TOKENIZER
from tunixrt.data.synthetic.tokenizer import write_byte_tokenizer

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=REPO / "datasets" / "dev-reasoning",
        help="dataset folder with train.jsonl, valid.jsonl and manifest.json",
    )
    parser.add_argument("--vocab-size", type=int, default=2048)
    parser.add_argument(
        "--bytes",
        action="store_true",
        help=f"write {BYTE_TOKENIZER}: one token per byte, no merges",
    )
    args = parser.parse_args(argv)
    name = BYTE_TOKENIZER if args.bytes else "tokenizer.json"
    try:
        if args.bytes:
            entry = write_byte_tokenizer(args.data)
        else:
            entry = train_tokenizer(args.data, args.vocab_size)
    except DataError as err:
        raise SystemExit(str(err)) from None
    print(f"wrote {args.data / name}: vocabulary {entry['vocab_size']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
