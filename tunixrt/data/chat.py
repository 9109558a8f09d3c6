"""The tokenizer of a pretrained Hugging Face checkpoint, with its chat template.

Layout of one example:

    chat_template(turns, add_generation_prompt=True)  reasoning [\\n answer] <eos>
    '---------------- mask 0 ----------------------' '-------- mask 1 --------'

Without a chat template the prompt is `<bos>prompt\\n`. The loss covers the completion
and the end-of-sequence token, so the model learns to stop.

The template text renders through `transformers`' `apply_chat_template` when transformers
is installed, so the prompt is the one the model sees at inference; without it, a
sandboxed jinja2 environment renders it, lacking transformers' extras (`strftime_now`,
loop controls, `tojson` without HTML escaping). Either way the token ids come from
`tokenizers` here, so the loss mask falls exactly on the completion.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from jinja2.exceptions import TemplateError, TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer

from tunixrt.data.pieces import PieceEncoder
from tunixrt.data.render import Rendered
from tunixrt.data.schema import DataError
from tunixrt.data.tokenize import Encoded, flat

log = logging.getLogger(__name__)

# The named special tokens transformers hands to every chat template.
_SPECIAL_TOKENS = (
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
)
# Errors a template's own code raises: jinja2's, and Python's from its expressions.
_TEMPLATE_ERRORS = (TemplateError, TypeError, ValueError)
_SANDBOX_HINT = " (rendered without transformers, which this template may need)"

Messages = list[dict[str, str]]
RenderFn = Callable[[Messages], str]


def _token_text(value: Any) -> str | None:
    """tokenizer_config.json holds a special token as text or as {"content": text}."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _raise(message: str) -> None:
    raise TemplateError(message)


def _special_tokens(config: dict[str, Any]) -> dict[str, str]:
    return {name: text for name in _SPECIAL_TOKENS if (text := _token_text(config.get(name)))}


def _transformers_tokenizer_class() -> type[Any] | None:
    """transformers' fast tokenizer class, or None where transformers is not installed."""
    try:
        from transformers import PreTrainedTokenizerFast
    except ImportError:
        return None
    return PreTrainedTokenizerFast


def _transformers_renderer(
    hf_class: type[Any], tokenizer: Tokenizer, template: str, specials: dict[str, str]
) -> RenderFn:
    """Render with transformers' own chat-template environment, globals and filters."""
    # The constructor deep-copies the tokenizer (and may add special tokens to the copy),
    # so the ids tunixrt encodes stay those of the checkpoint's tokenizer.json. Nothing
    # is read from disk or a hub: every input is already in memory.
    hf = hf_class(tokenizer_object=tokenizer, chat_template=template, **specials)

    def render(messages: Messages) -> str:
        return str(hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))

    return render


def _sandboxed_renderer(template: str, specials: dict[str, str]) -> RenderFn:
    """Render in a jinja2 sandbox with transformers' block options and `raise_exception`."""
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise
    compiled = env.from_string(template)

    def render(messages: Messages) -> str:
        return str(compiled.render(messages=messages, add_generation_prompt=True, **specials))

    return render


def _reason(err: Exception) -> str:
    """The error on one line, with the template line of a syntax error."""
    text = " ".join(str(err).split())
    if isinstance(err, TemplateSyntaxError) and err.lineno:
        text = f"line {err.lineno}: {err.message or text}"
    return text


class ChatTokenizer:
    def __init__(
        self,
        tokenizer: Tokenizer,
        config: dict[str, Any],
        source: str,
        template_file: str = "tokenizer_config.json",
    ) -> None:
        self._tok, self.source = tokenizer, source
        self._texts = PieceEncoder(tokenizer)
        self._config, self._template_file = config, template_file
        self.bos = _token_text(config.get("bos_token"))
        self.eos = _token_text(config.get("eos_token"))
        eos_id = tokenizer.token_to_id(self.eos) if self.eos else None
        if eos_id is None:
            raise DataError(f"{source}: tokenizer_config.json names no eos_token in the vocabulary")
        self.eos_id = int(eos_id)
        pad = _token_text(config.get("pad_token"))
        pad_id = tokenizer.token_to_id(pad) if pad else None
        self.pad_id = int(self.eos_id if pad_id is None else pad_id)
        self._template_path = str(Path(source) / template_file)
        self._sandboxed = False
        self._render: RenderFn | None = None
        template = config.get("chat_template")
        if isinstance(template, str):
            self._render = self._renderer(template, _special_tokens(config))

    def _renderer(self, template: str, specials: dict[str, str]) -> RenderFn:
        hf_class = _transformers_tokenizer_class()
        if hf_class is not None:
            return _transformers_renderer(hf_class, self._tok, template, specials)
        self._sandboxed = True
        log.warning(
            "transformers is not installed: the chat template of %s renders in a jinja2 "
            "sandbox without transformers' globals and filters, and may differ from the "
            "prompt transformers renders",
            self._template_path,
        )
        try:
            return _sandboxed_renderer(template, specials)
        except TemplateError as err:
            raise self._template_error(err) from None

    def _template_error(self, err: Exception) -> DataError:
        hint = _SANDBOX_HINT if self._sandboxed else ""
        return DataError(f"{self._template_path}: the chat template failed: {_reason(err)}{hint}")

    @classmethod
    def from_folder(cls, folder: str | Path) -> ChatTokenizer:
        folder = Path(folder)
        if not (folder / "tokenizer.json").is_file():
            raise DataError(f"{folder}: no tokenizer.json (a fast tokenizer) in the checkpoint")
        config_path = folder / "tokenizer_config.json"
        config = json.loads(config_path.read_text()) if config_path.is_file() else {}
        template_file = "tokenizer_config.json"
        # chat_template.jinja, where present, overrides the config's entry, as in transformers.
        if (folder / "chat_template.jinja").is_file():
            template_file = "chat_template.jinja"
            config["chat_template"] = (folder / template_file).read_text()
        try:
            tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception as err:  # the Rust side raises a bare Exception
            raise DataError(f"{folder / 'tokenizer.json'}: not a tokenizer ({err})") from None
        return cls(tokenizer, config, str(folder), template_file)

    @property
    def vocab_size(self) -> int:
        return int(self._tok.get_vocab_size(with_added_tokens=True))

    def vocab(self) -> dict[str, int]:
        """Every token's id, added tokens included."""
        return dict(self._tok.get_vocab(with_added_tokens=True))

    @property
    def has_chat_template(self) -> bool:
        return self._render is not None

    def encode_text(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False).ids) if text else []

    def decode(self, ids: list[int]) -> str:
        return str(self._tok.decode(ids, skip_special_tokens=True))

    def prompt_text(self, rendered: Rendered) -> str:
        if self._render is None:
            return (self.bos or "") + rendered.prompt + "\n"
        messages = [{"role": role, "content": content} for role, content in rendered.turns]
        try:
            return self._render(messages)
        except _TEMPLATE_ERRORS as err:
            raise self._template_error(err) from None

    def spec(self) -> dict[str, Any]:
        """As `TextTokenizer.spec`, with the config (special tokens, chat template) and
        what renders the template, since transformers and the sandbox may differ."""
        return {
            "kind": "chat",
            "tokenizer": self._tok.to_str(),
            "config": self._config,
            "template_file": self._template_file,
            "renderer": self._renderer_name(),
            "source": self.source,
        }

    def _renderer_name(self) -> str | None:
        from importlib.metadata import version

        if self._render is None:
            return None
        package = "jinja2" if self._sandboxed else "transformers"
        return f"{package} {version(package)}"

    def encode(self, rendered: Rendered) -> Encoded:
        return self.encode_many([rendered])[0]

    def encode_many(self, rendered: Sequence[Rendered]) -> list[Encoded]:
        return flat(*self.encode_parts(rendered)).encoded()

    def encode_parts(self, rendered: Sequence[Rendered]) -> tuple[list[list[int]], list[list[int]]]:
        """The prompt ids and the completion ids of each example, with one tokenizer
        call per part for all of them."""
        prompts = self._texts.encode([self.prompt_text(r) for r in rendered])
        texts = [
            r.reasoning if r.answer is None else f"{r.reasoning}\n{r.answer}" for r in rendered
        ]
        end = [self.eos_id]
        return prompts, [c + end for c in self._texts.encode(texts)]
