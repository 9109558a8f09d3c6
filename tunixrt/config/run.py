"""How a run steps, evaluates, checkpoints, registers and resumes: the trainer, eval,
checkpoint, registry and run sections."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from tunixrt.config._checks import _require


class Progress(enum.StrEnum):
    auto = "auto"  # a bar on a terminal, log lines otherwise
    bar = "bar"
    log = "log"


@dataclass
class TrainerConfig:
    max_steps: int = 300
    batch_size: int = 16  # sequences per optimizer step, summed over grad_accum micro-batches
    seq_len: int = 256  # tokens per row after padding or packing
    grad_accum: int = 1
    eval_every: int = 100  # steps; 0 evaluates only at the end
    eval_batches: int = 4
    log_every: int = 10
    progress: Progress = Progress.auto
    # The loss applies the output head to about this many tokens at a time (a slice of
    # the sequence in every row), so one chunk's float32 logits [tokens, vocab] exist at
    # once instead of a micro-batch's; 0: all at once
    loss_chunk_tokens: int = 1024

    def __post_init__(self) -> None:
        for key in (
            "max_steps",
            "batch_size",
            "seq_len",
            "grad_accum",
            "log_every",
            "eval_batches",
        ):
            value = getattr(self, key)
            _require(value > 0, f"trainer.{key}", value, "a positive integer")
        _require(self.eval_every >= 0, "trainer.eval_every", self.eval_every, "an integer >= 0")
        _require(
            self.loss_chunk_tokens >= 0,
            "trainer.loss_chunk_tokens",
            self.loss_chunk_tokens,
            "an integer >= 0 (0: no chunking)",
        )
        _require(
            self.batch_size % self.grad_accum == 0,
            "trainer.batch_size",
            self.batch_size,
            f"a multiple of trainer.grad_accum={self.grad_accum}",
        )


@dataclass
class EvalConfig:
    """Answer evaluation: generate for the items of an eval set and score the answers
    (tunixrt.evaluation), during training and in `tunixrt eval`."""

    path: str | None = None  # eval JSONL (or traces); null: dataset.eval_path
    every: int | None = None  # steps between evaluations; null: trainer.eval_every
    max_examples: int = 64  # the first N items (after `categories`); 0: no evaluation
    categories: list[str] | None = None  # only these categories; null: dataset.families
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0: greedy
    top_k: int | None = None
    top_p: float | None = None
    seed: int = 0  # sampling seed (temperature > 0)
    batch_size: int = 32  # prompts generated together
    stop: list[str] = field(default_factory=list)  # cut the text at the first of these
    samples: int = 4  # items shown in TensorBoard's sample table

    def __post_init__(self) -> None:
        _require(self.every is None or self.every >= 0, "eval.every", self.every, "an integer >= 0")
        _require(self.max_examples >= 0, "eval.max_examples", self.max_examples, "an integer >= 0")
        for key in ("max_new_tokens", "batch_size"):
            value = getattr(self, key)
            _require(value > 0, f"eval.{key}", value, "a positive integer")
        _require(self.temperature >= 0, "eval.temperature", self.temperature, "a number >= 0")
        _require(
            self.top_k is None or self.top_k > 0, "eval.top_k", self.top_k, "a positive integer"
        )
        _require(
            self.top_p is None or 0.0 < self.top_p <= 1.0,
            "eval.top_p",
            self.top_p,
            "a number in (0, 1] or null",
        )
        _require(self.samples >= 0, "eval.samples", self.samples, "an integer >= 0")


# Metrics known at save time, with the direction that is better: evaluation runs before
# the save of the same step.
METRIC_MODES = {"eval/loss": "min", "eval/accuracy": "max", "train/loss": "min"}


BEST_METRICS = (None, "eval/loss", "eval/accuracy")


class BestMode(enum.StrEnum):
    min = "min"
    max = "max"


@dataclass
class CheckpointConfig:
    every_steps: int = 100  # 0 saves only at the end
    keep: int = 3  # the newest checkpoints kept
    # eval/loss or eval/accuracy: also keep the best checkpoint by it
    keep_best_metric: str | None = None
    best_mode: BestMode | None = None  # null: the metric's own (loss min, accuracy max)

    def __post_init__(self) -> None:
        _require(
            self.every_steps >= 0, "checkpoint.every_steps", self.every_steps, "an integer >= 0"
        )
        _require(self.keep > 0, "checkpoint.keep", self.keep, "a positive integer")
        _require(
            self.keep_best_metric in BEST_METRICS,
            "checkpoint.keep_best_metric",
            self.keep_best_metric,
            f"one of {list(BEST_METRICS)}",
        )

    @property
    def mode(self) -> str:
        """min or max: which value of keep_best_metric is best."""
        if self.best_mode is not None:
            return self.best_mode.value
        return METRIC_MODES.get(self.keep_best_metric or "eval/loss", "min")


@dataclass
class RegistryConfig:
    # auto: $TUNIXRT_REGISTRY_URL, else SQLite in outputs/registry.db; any SQLAlchemy URL
    # (postgresql+psycopg://user@host/db for a shared registry); null: not registered
    url: str | None = "auto"


class Resume(enum.StrEnum):
    auto = "auto"
    never = "never"
    must = "must"


@dataclass
class RunConfig:
    name: str | None = None  # a stable run folder name; null uses a timestamp
    resume: Resume = Resume.auto
