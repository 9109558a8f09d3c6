"""The dataset section: training files (or generated traces), the token cache, the
tokenizer and the held-out splits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import MISSING

from tunixrt.config._checks import _require


@dataclass
class DatasetConfig:
    name: str = MISSING
    # Training JSONL (traces, prompt/completion pairs or chats): a file, a glob
    # ('/data/train-*.jsonl', matches in name order) or a list of files and globs
    path: Any = MISSING
    # One weight per file of `path`: each epoch draws examples from the files in these
    # proportions (a small file repeats, a large one is sampled); null: every example
    # once per epoch, shuffled together
    mixture: list[float] | None = None
    # Where tokenized files are kept (tunixrt.data.cache), read memory-mapped by every
    # later start: auto is outputs/cache; null tokenizes in memory at every start
    cache_dir: str | None = "auto"
    # Processes that tokenize a large file into the cache; null: one per CPU core
    workers: int | None = None
    valid_path: str | None = None  # held-out JSONL for eval loss; None splits `path`
    valid_fraction: float = 0.05  # used only when valid_path is None
    # tokenizer.json with tunixrt's template tokens; a pretrained model (model.path)
    # always uses its own tokenizer and chat template instead
    tokenizer: str | None = None
    loss_on_prompt: bool = False  # True: prompt tokens count in the loss too
    pack: bool = True  # pack several examples per row (attention stays per example)
    # Train and hold out only traces of these task families (meta.family); null: all
    families: list[str] | None = None
    # > 0: train on this many traces per family drawn from the bundled generator
    # (tunixrt.data.synthetic; dataset.families, else every family, seeded by `seed`)
    # instead of `path`'s; prompts of valid_path and eval_path are never drawn
    generate: int = 0
    # Share of the generated string-family words (reversal, counting, letter sorting)
    # that are random letters rather than listed words, so a model learns to read a word
    # out of its prompt instead of recalling the few hundred listed ones; needs generate
    invented_words: float = 0.0
    # Counting traces keep a running count, one letter or number at a time ("t 0, u 0,
    # n 1, n 2, ..."), so each step is one comparison, instead of naming every hit at
    # once; needs generate
    tally_counts: bool = False
    # The eval set (JSONL with expected answers) that goes with this dataset: eval.path's
    # default; null: no answer evaluation unless eval.path is given
    eval_path: str | None = None

    def __post_init__(self) -> None:
        _require(
            0.0 <= self.valid_fraction < 1.0,
            "dataset.valid_fraction",
            self.valid_fraction,
            "a number in [0, 1)",
        )
        _require(self.generate >= 0, "dataset.generate", self.generate, "an integer >= 0")
        _require(
            0.0 <= self.invented_words <= 1.0 and (self.generate > 0 or self.invented_words == 0),
            "dataset.invented_words",
            self.invented_words,
            "a number in [0, 1], and 0 unless dataset.generate > 0",
        )
        _require(
            self.generate > 0 or not self.tally_counts,
            "dataset.tally_counts",
            self.tally_counts,
            "false unless dataset.generate > 0",
        )
        paths = [self.path] if isinstance(self.path, str) else self.path
        _require(
            isinstance(paths, list) and bool(paths) and all(isinstance(p, str) for p in paths),
            "dataset.path",
            self.path,
            "a file, a glob, or a non-empty list of them",
        )
        _require(
            self.mixture is None
            or (bool(self.mixture) and min(self.mixture) >= 0 and sum(self.mixture) > 0),
            "dataset.mixture",
            self.mixture,
            "null or weights >= 0, one per file of dataset.path, not all 0",
        )
        _require(
            self.workers is None or self.workers > 0,
            "dataset.workers",
            self.workers,
            "a positive integer or null",
        )
