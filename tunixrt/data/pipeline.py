"""From a dataset config to a training iterator and fixed eval batches."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from tunixrt.config import DatasetConfig
from tunixrt.data.batching import BatchIterator, HostBatch, fixed_batches
from tunixrt.data.chat import ChatTokenizer
from tunixrt.data.render import render
from tunixrt.data.schema import DataError, Example, read_examples
from tunixrt.data.tokenize import Encoded, TextTokenizer

log = logging.getLogger(__name__)


Tokenizer = TextTokenizer | ChatTokenizer


def load_tokenizer(cfg: DatasetConfig, model_path: str | None) -> Tokenizer:
    """A pretrained model's own tokenizer and chat template, else `dataset.tokenizer`."""
    if model_path is not None:
        if cfg.tokenizer is not None:
            log.info("using the tokenizer of %s (dataset.tokenizer is ignored)", model_path)
        return ChatTokenizer.from_folder(model_path)
    if cfg.tokenizer is None:
        raise DataError("dataset.tokenizer is null and no model.path gives a tokenizer")
    return TextTokenizer.from_file(cfg.tokenizer)


@dataclass
class Data:
    tokenizer: Tokenizer
    train: BatchIterator
    eval_batches: list[HostBatch]
    train_examples: int
    valid_examples: int


def encode_all(examples: list[Example], tokenizer: Tokenizer) -> list[Encoded]:
    return [tokenizer.encode(render(e)) for e in examples]


def split_valid(
    examples: list[Example], fraction: float, seed: int, source: str
) -> tuple[list[Example], list[Example]]:
    """Hold out `fraction` of the examples, chosen by seed, for the eval loss."""
    if fraction == 0.0:
        return examples, []
    n_valid = max(1, round(len(examples) * fraction))
    if n_valid >= len(examples):
        raise DataError(
            f"{source}: {len(examples)} records are too few to hold out "
            f"dataset.valid_fraction={fraction} and still train"
        )
    order = np.random.default_rng([seed, 1]).permutation(len(examples))
    held = set(order[:n_valid].tolist())
    train = [e for i, e in enumerate(examples) if i not in held]
    return train, [examples[i] for i in sorted(held)]


def _warn_truncation(encoded: list[Encoded], seq_len: int, source: str) -> None:
    too_long = sum(len(e) - 1 > seq_len for e in encoded)
    if too_long:
        log.warning(
            "%s: %d of %d examples are longer than trainer.seq_len=%d and are truncated",
            source,
            too_long,
            len(encoded),
            seq_len,
        )


def load_data(
    cfg: DatasetConfig,
    *,
    rows: int,
    seq_len: int,
    eval_batches: int,
    seed: int,
    model_path: str | None = None,
) -> Data:
    """Read, validate and encode everything up front, so bad data fails before compiling."""
    tokenizer = load_tokenizer(cfg, model_path)
    train_records = read_examples(cfg.path)
    if cfg.valid_path is not None:
        valid_records = read_examples(cfg.valid_path)
    else:
        train_records, valid_records = split_valid(
            train_records, cfg.valid_fraction, seed, cfg.path
        )
    train_enc = encode_all(train_records, tokenizer)
    valid_enc = encode_all(valid_records, tokenizer)
    _warn_truncation(train_enc, seq_len, cfg.path)
    train = BatchIterator(
        train_enc,
        rows=rows,
        seq_len=seq_len,
        pad_id=tokenizer.pad_id,
        pack=cfg.pack,
        loss_on_prompt=cfg.loss_on_prompt,
        seed=seed,
    )
    evals = (
        fixed_batches(
            valid_enc,
            count=eval_batches,
            rows=rows,
            seq_len=seq_len,
            pad_id=tokenizer.pad_id,
            pack=cfg.pack,
            loss_on_prompt=cfg.loss_on_prompt,
        )
        if valid_enc
        else []
    )
    log.info(
        "data: %d train and %d held-out examples from %s", len(train_enc), len(valid_enc), cfg.path
    )
    return Data(tokenizer, train, evals, len(train_enc), len(valid_enc))
