"""Render a record as text: a prompt, the reasoning, and an optional final answer.

The tokenizer frames these three parts with special tokens (see tokenize.py), so the
rendered text itself never contains a template marker a user could collide with.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tunixrt.data.schema import Chat, Example, Pair, Trace


@dataclass(frozen=True)
class Rendered:
    prompt: str
    reasoning: str  # completion text before the answer marker
    answer: str | None  # traces only: the final answer after the answer marker
    # The prompt as chat turns (role, content), for tokenizers with a chat template.
    context: tuple[tuple[str, str], ...] = ()

    @property
    def turns(self) -> tuple[tuple[str, str], ...]:
        return self.context or (("user", self.prompt),)


def render(example: Example) -> Rendered:
    if isinstance(example, Trace):
        steps = "\n".join(step.content for step in sorted(example.steps, key=lambda s: s.i))
        return Rendered(example.prompt, steps, example.final_answer)
    if isinstance(example, Pair):
        return Rendered(example.prompt, example.completion, None)
    if isinstance(example, Chat):
        return _render_chat(example)
    raise TypeError(f"cannot render {type(example).__name__}")


def _render_chat(chat: Chat) -> Rendered:
    # Earlier turns (any role) form the prompt; the last assistant turn is the completion.
    *context, last = chat.messages
    prompt = "\n".join(f"{m.role}: {m.content}" for m in context)
    return Rendered(prompt, last.content, None, tuple((m.role, m.content) for m in context))


def prompt_keys(rendered: Sequence[Rendered]) -> np.ndarray:
    """[n] uint64: a 64-bit hash of each prompt (its chat turns), to find examples that
    share a prompt (a held-out example whose prompt is also trained on)."""
    out = np.empty(len(rendered), np.uint64)
    for n, r in enumerate(rendered):
        text = "\x1e".join(f"{role}\x1f{content}" for role, content in r.turns)
        out[n] = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
    return out
