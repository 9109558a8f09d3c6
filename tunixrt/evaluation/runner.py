"""One evaluation: generate for the items of an eval set, score them, and report.

Shared by evaluation during training, `tunixrt eval` and the registry: an `EvalReport`
says which file (path and sha256), which scorer and which generation settings made its
predictions, so two reports are comparable only when those agree.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tunixrt.config import EvalConfig
from tunixrt.errors import InputError
from tunixrt.evaluation.generate import (
    Tokenizer,
    cut_at_stop,
    decode_completion,
    generate_tokens,
    prompt_ids,
)
from tunixrt.evaluation.scoring import (
    SCORER_NAME,
    SCORER_VERSION,
    EvalItem,
    ItemResult,
    aggregate,
    read_eval_set,
    score,
)
from tunixrt.models import Decoder


@dataclass(frozen=True)
class GenerationSettings:
    """How answers are generated; stored with every evaluation."""

    max_new_tokens: int = 256
    temperature: float = 0.0  # 0: greedy
    top_k: int | None = None
    top_p: float | None = None
    seed: int = 0
    batch_size: int = 32
    stop: tuple[str, ...] = ()

    @classmethod
    def of(cls, cfg: EvalConfig) -> GenerationSettings:
        return cls(
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
            top_k=cfg.top_k,
            top_p=cfg.top_p,
            seed=cfg.seed,
            batch_size=cfg.batch_size,
            stop=tuple(cfg.stop),
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "stop": list(self.stop)}


@dataclass(frozen=True)
class Prediction:
    result: ItemResult
    new_tokens: int  # generated, EOS excluded
    prompt_tokens: int

    def to_dict(self) -> dict[str, Any]:
        """One line of a predictions file, and one registry row."""
        item = self.result.item
        return {
            "id": item.id,
            "category": item.category,
            "section": item.section,
            "difficulty": item.difficulty,
            "prompt": item.prompt,
            "generated": self.result.generated,
            "extracted": self.result.answer,
            "expected": item.expected_answer,
            "correct": self.result.correct,
            "new_tokens": self.new_tokens,
        }


@dataclass
class EvalReport:
    eval_path: str
    eval_sha256: str
    settings: GenerationSettings
    predictions: list[Prediction]
    seconds: float  # generation and scoring, wall clock
    step: int | None = None  # the checkpoint step evaluated, when known
    scorer: str = SCORER_NAME
    scorer_version: str = SCORER_VERSION
    aggregates: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.aggregates = aggregate([p.result for p in self.predictions])

    @property
    def accuracy(self) -> float:
        return float(self.aggregates["overall"]["accuracy"])

    @property
    def new_tokens(self) -> int:
        return sum(p.new_tokens for p in self.predictions)

    def scalars(self) -> dict[str, float]:
        """TensorBoard scalars: eval/accuracy, and per category and section."""
        out = {"eval/accuracy": self.accuracy}
        for group in ("by_category", "by_section"):
            for name, tally in self.aggregates[group].items():
                out[f"eval/accuracy/{name}"] = float(tally["accuracy"])
        return out

    def to_dict(self) -> dict[str, Any]:
        """The report file's content (predictions are written apart, one per line)."""
        return {
            "eval_path": self.eval_path,
            "eval_sha256": self.eval_sha256,
            "step": self.step,
            "scorer": self.scorer,
            "scorer_version": self.scorer_version,
            "generation": self.settings.to_dict(),
            "items": len(self.predictions),
            "new_tokens": self.new_tokens,
            "seconds": self.seconds,
            "aggregates": self.aggregates,
        }


def check_length(model: Decoder, longest_prompt: int, max_new_tokens: int, key: str) -> None:
    """Refuse, before anything compiles, a generation longer than the model's positions."""
    limit = model.cfg.max_seq_len
    if longest_prompt + max_new_tokens <= limit:
        return
    room = limit - longest_prompt
    hint = f"give {key}={room} or less" if room > 0 else "the prompt alone is too long"
    raise InputError(
        f"{key}={max_new_tokens}: the longest prompt ({longest_prompt} tokens) plus "
        f"{max_new_tokens} new tokens exceeds the model's max_seq_len={limit}; {hint}"
    )


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def select_items(
    items: Sequence[EvalItem], *, max_examples: int | None, categories: Sequence[str] | None
) -> list[EvalItem]:
    """The first max_examples items (file order) of the given categories."""
    chosen = [i for i in items if categories is None or i.category in categories]
    return chosen if max_examples is None else chosen[:max_examples]


def predict(
    model: Decoder,
    tokenizer: Tokenizer,
    items: Sequence[EvalItem],
    settings: GenerationSettings,
    *,
    on_batch: Callable[[int], None] | None = None,
) -> list[Prediction]:
    """Generate for every item, settings.batch_size prompts at a time, and score.
    `on_batch(n)` is called after each batch of n items (a progress bar)."""
    out: list[Prediction] = []
    for start in range(0, len(items), settings.batch_size):
        batch = items[start : start + settings.batch_size]
        prompts = [prompt_ids(tokenizer, item.prompt) for item in batch]
        generated = generate_tokens(
            model,
            prompts,
            max_new_tokens=settings.max_new_tokens,
            eos_id=tokenizer.eos_id,
            temperature=settings.temperature,
            top_k=settings.top_k,
            top_p=settings.top_p,
            seed=settings.seed + start,
        )
        for item, prompt, ids in zip(batch, prompts, generated, strict=True):
            text = cut_at_stop(decode_completion(tokenizer, ids), settings.stop)
            out.append(Prediction(score(item, text), len(ids), len(prompt)))
        if on_batch is not None:
            on_batch(len(batch))
    return out


def run_eval(
    model: Decoder,
    tokenizer: Tokenizer,
    path: str | Path,
    settings: GenerationSettings,
    *,
    max_examples: int | None = None,
    categories: Sequence[str] | None = None,
    step: int | None = None,
    on_batch: Callable[[int], None] | None = None,
    items: Sequence[EvalItem] | None = None,
) -> EvalReport:
    """Evaluate `model` on the eval set at `path` (items already read may be passed)."""
    started = time.perf_counter()
    all_items = read_eval_set(path) if items is None else items
    chosen = select_items(all_items, max_examples=max_examples, categories=categories)
    predictions = predict(model, tokenizer, chosen, settings, on_batch=on_batch)
    return EvalReport(
        eval_path=str(Path(path).resolve()),
        eval_sha256=file_sha256(path),
        settings=settings,
        predictions=predictions,
        seconds=time.perf_counter() - started,
        step=step,
    )
