"""Generate the bundled dev reasoning dataset (datasets/dev-reasoning).

Writes train.jsonl and valid.jsonl (reasoning traces), eval.jsonl (eval items) and
manifest.json; the same arguments always write the same bytes. The generators live in
tunixrt.data.synthetic. Retrain the tokenizer afterwards if the traces changed:

    python scripts/make_dataset.py && python scripts/train_tokenizer.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tunixrt.data.synthetic import FAMILIES, build

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "datasets" / "dev-reasoning")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--train", type=int, default=2400)
    parser.add_argument("--valid", type=int, default=200)
    parser.add_argument("--eval", type=int, default=360)
    args = parser.parse_args(argv)
    manifest = build(args.out, args.seed, args.train, args.valid, args.eval)
    counts = ", ".join(
        f"{name} {entry['records']}"
        for name, entry in manifest["files"].items()
        if "records" in entry
    )
    print(f"wrote {args.out}: {counts} records, {len(FAMILIES)} families")
    if "tokenizer.json" not in manifest["files"]:
        print("tokenizer.json is missing or stale: run scripts/train_tokenizer.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
