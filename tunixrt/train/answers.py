"""Answer evaluation during training: generate for held-out eval items every
`eval.every` steps and at the end, score them, and report accuracy to TensorBoard, the
registry and the log (tunixrt.evaluation does the work)."""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass

from tunixrt.config import ConfigError, TrainConfig
from tunixrt.evaluation.generate import Tokenizer, prompt_ids
from tunixrt.evaluation.runner import (
    EvalReport,
    GenerationSettings,
    check_length,
    run_eval,
    select_items,
)
from tunixrt.evaluation.scoring import EvalItem, read_eval_set
from tunixrt.models import Decoder

log = logging.getLogger(__name__)

_SAMPLE_COLUMNS = ("id", "prompt", "generated", "extracted", "expected", "correct")


@dataclass(frozen=True)
class AnswerEval:
    path: str
    items: list[EvalItem]  # the items scored each time: the same ones at every step
    settings: GenerationSettings
    every: int  # steps; 0: only at the end
    samples: int  # rows of the sample table

    def due(self, step: int, last: bool) -> bool:
        return last or (self.every > 0 and step % self.every == 0)

    def check_fits(self, model: Decoder, tokenizer: Tokenizer) -> None:
        """The longest prompt plus eval.max_new_tokens must fit the model's positions."""
        longest = max(len(prompt_ids(tokenizer, item.prompt)) for item in self.items)
        check_length(model, longest, self.settings.max_new_tokens, "eval.max_new_tokens")

    def run(self, model: Decoder, tokenizer: Tokenizer, step: int) -> EvalReport:
        return run_eval(model, tokenizer, self.path, self.settings, items=self.items, step=step)


def answer_eval(cfg: TrainConfig) -> AnswerEval | None:
    """What to evaluate, read and checked before anything compiles; None when answer
    evaluation is off (no eval set, or eval.max_examples=0)."""
    e = cfg.eval
    path = e.path or cfg.dataset.eval_path
    if path is None or e.max_examples == 0:
        return None
    categories = e.categories if e.categories is not None else cfg.dataset.families
    items = select_items(read_eval_set(path), max_examples=e.max_examples, categories=categories)
    if not items:
        raise ConfigError(
            f"invalid config value eval.categories={categories}: {path} has no item of "
            "these categories"
        )
    every = cfg.trainer.eval_every if e.every is None else e.every
    return AnswerEval(path, items, GenerationSettings.of(e), every, e.samples)


def check_best_metric(cfg: TrainConfig, answers: AnswerEval | None) -> None:
    """eval/accuracy as checkpoint.keep_best_metric or optimized_metric needs an eval set."""
    for key, value in (
        ("checkpoint.keep_best_metric", cfg.checkpoint.keep_best_metric),
        ("optimized_metric", cfg.optimized_metric),
    ):
        if value == "eval/accuracy" and answers is None:
            raise ConfigError(
                f"invalid config value {key}=eval/accuracy: answer evaluation is off "
                "(set eval.path, or dataset.eval_path, and eval.max_examples > 0)"
            )


def sample_table(report: EvalReport, rows: int) -> str:
    """A markdown table of the first `rows` predictions, for TensorBoard's text tab."""
    head = "| " + " | ".join(_SAMPLE_COLUMNS) + " |"
    rule = "|" + "---|" * len(_SAMPLE_COLUMNS)
    lines = [head, rule]
    for p in report.predictions[:rows]:
        row = p.to_dict()
        lines.append("| " + " | ".join(_cell(row[c]) for c in _SAMPLE_COLUMNS) + " |")
    return "\n".join(lines)


def _cell(value: object) -> str:
    # One table cell: newlines and pipes would break the row; markdown is escaped.
    text = html.escape(str(value)).replace("|", "&#124;")
    return "<br>".join(text.splitlines()) or " "


def log_report(report: EvalReport, step: int) -> None:
    overall = report.aggregates["overall"]
    log.info(
        "step %d: eval accuracy %.3f (%d/%d) in %.1fs, %d tokens generated",
        step,
        report.accuracy,
        overall["correct"],
        overall["total"],
        report.seconds,
        report.new_tokens,
    )
