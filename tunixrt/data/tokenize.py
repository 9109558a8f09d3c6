"""Tokenize rendered examples into ids plus a loss mask.

Layout of one example (special tokens in angle brackets):

    <|bos|> <|prompt|> prompt... <|completion|> reasoning... [<|answer|> answer...] <|eos|>
    '------------- mask 0 ----------------------' '------------- mask 1 -----------------'

The mask marks the tokens the loss covers: everything after `<|completion|>`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

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


class TextTokenizer:
    """A Hugging Face `tokenizers` tokenizer with tunixrt's template tokens."""

    def __init__(self, tokenizer: Tokenizer, source: str = "<memory>") -> None:
        self._tok = tokenizer
        # A marker such as "<|eos|>" written in the data is text, not a template token.
        self._tok.encode_special_tokens = True
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

    def encode_text(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False).ids) if text else []

    def decode(self, ids: list[int]) -> str:
        return str(self._tok.decode(ids, skip_special_tokens=True))

    def encode(self, rendered: Rendered) -> Encoded:
        prompt = [
            self.bos_id,
            self.prompt_id,
            *self.encode_text(rendered.prompt),
            self.completion_id,
        ]
        completion = self.encode_text(rendered.reasoning)
        if rendered.answer is not None:
            completion += [self.answer_id, *self.encode_text(rendered.answer)]
        completion.append(self.eos_id)
        ids = np.asarray(prompt + completion, dtype=np.int32)
        mask = np.zeros(len(ids), dtype=bool)
        mask[len(prompt) :] = True
        return Encoded(ids, mask)

    def encode_prompt(self, prompt: str) -> list[int]:
        """The ids a generator starts from: the prompt part of `encode`."""
        return [self.bos_id, self.prompt_id, *self.encode_text(prompt), self.completion_id]
