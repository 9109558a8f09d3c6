"""Record formats read from JSONL, validated line by line.

Training records come in three shapes (DESIGN.md "Data formats"): reasoning traces,
{prompt, completion} pairs and {messages} chats. Every error names the file and the
1-based line so a user can open the exact spot.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tunixrt.errors import InputError


class DataError(InputError, ValueError):
    """A data file is missing, empty or has a malformed record."""


@dataclass(frozen=True)
class Step:
    i: int
    type: str
    content: str


@dataclass(frozen=True)
class Trace:
    prompt: str
    steps: tuple[Step, ...]
    final_answer: str
    meta: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Pair:
    prompt: str
    completion: str


@dataclass(frozen=True)
class Message:
    role: str
    content: str


@dataclass(frozen=True)
class Chat:
    messages: tuple[Message, ...]


@dataclass(frozen=True)
class EvalItem:
    id: str
    prompt: str
    expected_answer: str
    category: str | None = None
    difficulty: str | None = None
    section: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)  # other keys, unused


_EVAL_KEYS = ("id", "prompt", "expected_answer", "category", "difficulty", "section")
Example = Trace | Pair | Chat
T = TypeVar("T")
CHAT_ROLES = ("system", "user", "assistant")


def _field(obj: dict[str, Any], key: str, kind: type, *, optional: bool = False) -> Any:
    if key not in obj:
        if optional:
            return None
        raise DataError(f"missing key {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise DataError(f"key {key!r} must be {kind.__name__}, got {type(value).__name__}")
    return value


def _parse_step(obj: Any, n: int) -> Step:
    if type(obj) is dict:  # the well-formed step, checked in one go (JSON gives exact types)
        i, kind, content = obj.get("i"), obj.get("type"), obj.get("content")
        if type(i) is int and type(kind) is str and type(content) is str:
            return Step(i, kind, content)
    if not isinstance(obj, dict):
        raise DataError(f"steps[{n}] must be an object")
    try:
        return Step(
            i=_field(obj, "i", int),
            type=_field(obj, "type", str),
            content=_field(obj, "content", str),
        )
    except DataError as err:
        raise DataError(f"steps[{n}]: {err}") from None


def _parse_trace(obj: dict[str, Any]) -> Trace:
    steps = _field(obj, "steps", list)
    return Trace(
        prompt=_field(obj, "prompt", str),
        steps=tuple(_parse_step(s, n) for n, s in enumerate(steps)),
        final_answer=_field(obj, "final_answer", str),
        meta=_field(obj, "meta", dict, optional=True) or {},
    )


def _parse_chat(obj: dict[str, Any]) -> Chat:
    messages = []
    for n, m in enumerate(_field(obj, "messages", list)):
        if not isinstance(m, dict):
            raise DataError(f"messages[{n}] must be an object")
        role, content = m.get("role"), m.get("content")
        if role not in CHAT_ROLES or not isinstance(content, str):
            raise DataError(f"messages[{n}] needs role in {list(CHAT_ROLES)} and a string content")
        messages.append(Message(role, content))
    if not messages or messages[-1].role != "assistant":
        raise DataError("a chat must end with an assistant message (the completion)")
    return Chat(tuple(messages))


def parse_example(obj: Any) -> Example:
    """One training record; the shape is told apart by its keys."""
    if not isinstance(obj, dict):
        raise DataError(f"a record must be a JSON object, got {type(obj).__name__}")
    if "messages" in obj:
        return _parse_chat(obj)
    if "steps" in obj or "final_answer" in obj:
        return _parse_trace(obj)
    if "completion" in obj:
        return Pair(prompt=_field(obj, "prompt", str), completion=_field(obj, "completion", str))
    if "prompt" not in obj:
        raise DataError(
            "missing key 'prompt' (expected a trace, a prompt/completion pair or a messages chat)"
        )
    raise DataError(
        "a record with 'prompt' needs 'steps' and 'final_answer' (a trace) or 'completion' (a pair)"
    )


def parse_eval_item(obj: Any) -> EvalItem:
    if not isinstance(obj, dict):
        raise DataError(f"a record must be a JSON object, got {type(obj).__name__}")
    return EvalItem(
        id=_field(obj, "id", str),
        prompt=_field(obj, "prompt", str),
        expected_answer=_field(obj, "expected_answer", str),
        category=_field(obj, "category", str, optional=True),
        difficulty=_field(obj, "difficulty", str, optional=True),
        section=_field(obj, "section", str, optional=True),
        extra={k: v for k, v in obj.items() if k not in _EVAL_KEYS},
    )


def parse_line(line: str, parse: Callable[[Any], T]) -> T:
    """One JSONL line; a DataError says why it is bad (the caller adds file:line)."""
    try:
        return parse(json.loads(line))
    except json.JSONDecodeError as err:
        raise DataError(f"invalid JSON: {err.msg} (column {err.colno})") from None


def read_jsonl(path: str | Path, parse: Callable[[Any], T]) -> list[T]:
    """Parse every non-blank line; the first bad line raises with `file:line: why`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    records = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                records.append(parse_line(line, parse))
            except DataError as err:
                raise DataError(f"{path}:{lineno}: {err}") from None
    if not records:
        raise DataError(f"{path}:1: the file has no records")
    return records


def read_examples(path: str | Path) -> list[Example]:
    return read_jsonl(path, parse_example)


def read_eval_items(path: str | Path) -> list[EvalItem]:
    return read_jsonl(path, parse_eval_item)
