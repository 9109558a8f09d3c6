"""The tokenizer of a pretrained Hugging Face checkpoint, with its chat template.

Layout of one example:

    chat_template(turns, add_generation_prompt=True)  reasoning [\\n answer] <eos>
    '---------------- mask 0 ----------------------' '-------- mask 1 --------'

Without a chat template the prompt is `<bos>prompt\\n`. The loss covers the completion
and the end-of-sequence token, so the model learns to stop.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer

from tunixrt.data.render import Rendered
from tunixrt.data.schema import DataError
from tunixrt.data.tokenize import Encoded


def _token_text(value: Any) -> str | None:
    """tokenizer_config.json holds a special token as text or as {"content": text}."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _raise(message: str) -> None:
    raise TemplateError(message)


class ChatTokenizer:
    def __init__(self, tokenizer: Tokenizer, config: dict[str, Any], source: str) -> None:
        self._tok, self.source = tokenizer, source
        self.bos = _token_text(config.get("bos_token"))
        self.eos = _token_text(config.get("eos_token"))
        eos_id = tokenizer.token_to_id(self.eos) if self.eos else None
        if eos_id is None:
            raise DataError(f"{source}: tokenizer_config.json names no eos_token in the vocabulary")
        self.eos_id = int(eos_id)
        pad = _token_text(config.get("pad_token"))
        pad_id = tokenizer.token_to_id(pad) if pad else None
        self.pad_id = int(self.eos_id if pad_id is None else pad_id)
        template = config.get("chat_template")
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = _raise
        self._template = env.from_string(template) if isinstance(template, str) else None

    @classmethod
    def from_folder(cls, folder: str | Path) -> ChatTokenizer:
        folder = Path(folder)
        if not (folder / "tokenizer.json").is_file():
            raise DataError(f"{folder}: no tokenizer.json (a fast tokenizer) in the checkpoint")
        config_path = folder / "tokenizer_config.json"
        config = json.loads(config_path.read_text()) if config_path.is_file() else {}
        template_file = folder / "chat_template.jinja"
        if "chat_template" not in config and template_file.is_file():
            config["chat_template"] = template_file.read_text()
        try:
            tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception as err:  # the Rust side raises a bare Exception
            raise DataError(f"{folder / 'tokenizer.json'}: not a tokenizer ({err})") from None
        return cls(tokenizer, config, str(folder))

    @property
    def vocab_size(self) -> int:
        return int(self._tok.get_vocab_size(with_added_tokens=True))

    @property
    def has_chat_template(self) -> bool:
        return self._template is not None

    def encode_text(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False).ids) if text else []

    def decode(self, ids: list[int]) -> str:
        return str(self._tok.decode(ids, skip_special_tokens=True))

    def prompt_text(self, rendered: Rendered) -> str:
        if self._template is None:
            return (self.bos or "") + rendered.prompt + "\n"
        messages = [{"role": role, "content": content} for role, content in rendered.turns]
        try:
            return str(
                self._template.render(
                    messages=messages,
                    add_generation_prompt=True,
                    bos_token=self.bos or "",
                    eos_token=self.eos,
                )
            )
        except TemplateError as err:
            raise DataError(f"{self.source}: the chat template failed: {err}") from None

    def encode(self, rendered: Rendered) -> Encoded:
        prompt = self.encode_text(self.prompt_text(rendered))
        text = rendered.reasoning
        if rendered.answer is not None:
            text += "\n" + rendered.answer
        completion = [*self.encode_text(text), self.eos_id]
        ids = np.asarray(prompt + completion, dtype=np.int32)
        mask = np.zeros(len(ids), dtype=bool)
        mask[len(prompt) :] = True
        return Encoded(ids, mask)
