"""Tokenize rendered examples into ids plus a loss mask.

Layout of one example (special tokens in angle brackets):

    <|bos|> <|prompt|> prompt... <|completion|> reasoning... [<|answer|> answer...] <|eos|>
    '------------- mask 0 ----------------------' '------------- mask 1 -----------------'

The mask marks the tokens the loss covers: everything after `<|completion|>`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from tunixrt.data.pieces import PieceEncoder
from tunixrt.data.render import Rendered
from tunixrt.data.schema import DataError

ANSWER_MARKER = "<|answer|>"  # before the final answer of a trace
SPECIAL_TOKENS = ("<|pad|>", "<|bos|>", "<|eos|>", "<|prompt|>", "<|completion|>", ANSWER_MARKER)


@dataclass(frozen=True)
class Encoded:
    ids: np.ndarray  # [length] int32
    mask: np.ndarray  # [length] bool, True where the token is part of the completion

    def __len__(self) -> int:
        return int(self.ids.shape[0])


@dataclass(frozen=True)
class Flat:
    """Encoded examples end to end, as the token cache stores them."""

    ids: np.ndarray  # [tokens] int32
    lengths: np.ndarray  # [examples] int64: tokens of each example
    prompt_lengths: np.ndarray  # [examples] int64: its leading tokens outside the loss

    def mask(self) -> np.ndarray:
        """[tokens] bool, True on completion tokens: a token's place in its example
        against that example's prompt length."""
        starts = np.cumsum(self.lengths) - self.lengths
        place = np.arange(len(self.ids)) - np.repeat(starts, self.lengths)
        return place >= np.repeat(self.prompt_lengths, self.lengths)

    def encoded(self) -> list[Encoded]:
        if not len(self.lengths):
            return []
        cuts = np.cumsum(self.lengths)[:-1]
        return [
            Encoded(ids, mask)
            for ids, mask in zip(np.split(self.ids, cuts), np.split(self.mask(), cuts), strict=True)
        ]


def flat(prompts: Sequence[list[int]], completions: Sequence[list[int]]) -> Flat:
    """Each example's prompt ids then its completion ids, all end to end."""
    prompt_lengths = np.fromiter(map(len, prompts), np.int64, len(prompts))
    lengths = prompt_lengths + np.fromiter(map(len, completions), np.int64, len(completions))
    pieces = chain.from_iterable(chain.from_iterable(zip(prompts, completions, strict=True)))
    ids = np.fromiter(pieces, np.int32, int(lengths.sum()))
    return Flat(ids, lengths, prompt_lengths)


def spec_hash(spec: dict[str, Any]) -> str:
    """sha256 of a tokenizer's spec (see `TextTokenizer.spec`), without its source path:
    equal for tokenizers that encode alike wherever their files are."""
    content = {k: v for k, v in spec.items() if k != "source"}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


class TextTokenizer:
    """A Hugging Face `tokenizers` tokenizer with tunixrt's template tokens."""

    def __init__(self, tokenizer: Tokenizer, source: str = "<memory>") -> None:
        self._tok, self.source = tokenizer, source
        # A marker such as "<|eos|>" written in the data is text, not a template token.
        self._tok.encode_special_tokens = True
        self._texts = PieceEncoder(self._tok)
        found = {name: tokenizer.token_to_id(name) for name in SPECIAL_TOKENS}
        ids = {name: i for name, i in found.items() if i is not None}
        missing = [name for name in SPECIAL_TOKENS if name not in ids]
        if missing:
            raise DataError(
                f"{source}: tokenizer lacks the special tokens {missing}; "
                f"it needs all of {list(SPECIAL_TOKENS)}"
            )
        self.pad_id, self.bos_id, self.eos_id = ids["<|pad|>"], ids["<|bos|>"], ids["<|eos|>"]
        self.prompt_id, self.completion_id = ids["<|prompt|>"], ids["<|completion|>"]
        self.answer_id = ids["<|answer|>"]

    @classmethod
    def from_file(cls, path: str | Path) -> TextTokenizer:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: no such tokenizer file")
        try:
            tok = Tokenizer.from_file(str(path))
        except Exception as err:  # the Rust side raises a bare Exception
            raise DataError(f"{path}: not a Hugging Face tokenizer.json ({err})") from None
        return cls(tok, str(path))

    @property
    def vocab_size(self) -> int:
        return int(self._tok.get_vocab_size(with_added_tokens=True))

    def vocab(self) -> dict[str, int]:
        """Every token's id, added tokens included."""
        return dict(self._tok.get_vocab(with_added_tokens=True))

    def encode_text(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False).ids) if text else []

    def decode(self, ids: list[int]) -> str:
        return str(self._tok.decode(ids, skip_special_tokens=True))

    def spec(self) -> dict[str, Any]:
        """Everything that decides the ids, as JSON: another process rebuilds this
        tokenizer from it (`tunixrt.data.cache`), and its hash keys the token cache."""
        return {"kind": "text", "tokenizer": self._tok.to_str(), "source": self.source}

    def encode(self, rendered: Rendered) -> Encoded:
        return self.encode_many([rendered])[0]

    def encode_many(self, rendered: Sequence[Rendered]) -> list[Encoded]:
        return flat(*self.encode_parts(rendered)).encoded()

    def encode_parts(self, rendered: Sequence[Rendered]) -> tuple[list[list[int]], list[list[int]]]:
        """The prompt ids and the completion ids of each example, with one tokenizer
        call per part for all of them."""
        prompts = self._texts.encode([r.prompt for r in rendered])
        reasoning = self._texts.encode([r.reasoning for r in rendered])
        answers = self._texts.encode([r.answer or "" for r in rendered])
        head, mid, end = [self.bos_id, self.prompt_id], [self.completion_id], [self.eos_id]
        marker = [self.answer_id]
        return (
            [head + p + mid for p in prompts],
            [
                c + marker + a + end if r.answer is not None else c + end
                for r, c, a in zip(rendered, reasoning, answers, strict=True)
            ],
        )

    def encode_prompt(self, prompt: str) -> list[int]:
        """The ids a generator starts from: the prompt part of `encode`."""
        return [self.bos_id, self.prompt_id, *self.encode_text(prompt), self.completion_id]
