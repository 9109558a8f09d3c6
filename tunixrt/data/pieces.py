"""Encode many texts with a `tokenizers` tokenizer, fast where the tokenizer allows it.

A byte-level BPE tokenizer (GPT-2's scheme, which the bundled tokenizer uses) first splits
a text into pieces with one regular expression, then encodes each piece on its own: a
text's ids are its pieces' ids end to end. Real data repeats its pieces (words, numbers,
punctuation) endlessly, so for plain-ASCII texts this module splits with Python's `re`
(equivalent to the tokenizer's expression on that alphabet) and looks each piece up in a
dictionary, asking the tokenizer only for pieces it has not seen. The `tokenizers` split
costs more than the BPE itself; this path is several times cheaper per token, and gives
the ids `tokenizer.encode` gives (tests/test_data_pieces.py compares them).

Any other text (non-ASCII, control characters) and any other tokenizer goes through
`encode_batch_fast` unchanged.
"""

from __future__ import annotations

import json
import re

from tokenizers import Tokenizer

# GPT-2's split, `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`,
# written for texts of printable ASCII, tab, newline and carriage return only.
_SPACE = " \t\n\r"
_PIECE = re.compile(
    rf"'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^{_SPACE}A-Za-z0-9]+"
    rf"|[{_SPACE}]+(?![^{_SPACE}])|[{_SPACE}]+"
)
_NOT_PLAIN = re.compile(rf"[^\x20-\x7e{_SPACE}]")
MAX_PIECES = 1_000_000  # remembered pieces; the table starts again past this


def splits_like_gpt2(tok: Tokenizer) -> bool:
    """Whether `tok`'s ids for any plain-ASCII text are its GPT-2 pieces' ids end to end:
    no normalizer, a byte-level split with GPT-2's expression and no prefix space, BPE
    without dropout, no truncation or padding, and no added token it would match in a
    text (added tokens are special ones, written in texts as plain text)."""
    if tok.truncation is not None or tok.padding is not None:
        return False
    spec = json.loads(tok.to_str())
    pre, model = spec.get("pre_tokenizer") or {}, spec.get("model") or {}
    added = spec.get("added_tokens") or []
    return (
        spec.get("normalizer") is None
        and pre.get("type") == "ByteLevel"
        and pre.get("use_regex", True) is True
        and pre.get("add_prefix_space") is False
        and model.get("type") == "BPE"
        and model.get("dropout") is None
        and (not added or (tok.encode_special_tokens and all(t["special"] for t in added)))
    )


class PieceEncoder:
    """Ids of many texts, each equal to `tok.encode(text, add_special_tokens=False).ids`."""

    def __init__(self, tok: Tokenizer) -> None:
        self._tok = tok
        self._fast: bool | None = None  # decided at the first call: reading the spec costs
        self._pieces: dict[str, list[int]] = {}

    def encode(self, texts: list[str]) -> list[list[int]]:
        if self._fast is None:
            self._fast = splits_like_gpt2(self._tok)
        if not self._fast:
            return self._rust(texts)
        out: list[list[int]] = []
        other: list[int] = []  # indices of texts the tokenizer encodes itself
        for i, text in enumerate(texts):
            if _NOT_PLAIN.search(text):
                other.append(i)
                out.append([])
            else:
                out.append(self._plain(text))
        for i, ids in zip(other, self._rust([texts[i] for i in other]), strict=True):
            out[i] = ids
        return out

    def _plain(self, text: str) -> list[int]:
        pieces, ids = self._pieces, []
        for piece in _PIECE.findall(text):
            known = pieces.get(piece)
            if known is None:
                if len(pieces) >= MAX_PIECES:
                    pieces.clear()
                known = pieces[piece] = self._tok.encode(piece, add_special_tokens=False).ids
            ids.extend(known)
        return ids

    def _rust(self, texts: list[str]) -> list[list[int]]:
        if not texts:
            return []
        return [e.ids for e in self._tok.encode_batch_fast(texts, add_special_tokens=False)]
