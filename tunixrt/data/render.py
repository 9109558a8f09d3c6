"""Render a record as text: a prompt, the reasoning, and an optional final answer.

The tokenizer frames these three parts with special tokens (see tokenize.py), so the
rendered text itself never contains a template marker a user could collide with.
"""

from __future__ import annotations

from dataclasses import dataclass

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
