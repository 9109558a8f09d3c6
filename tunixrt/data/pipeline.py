"""From a dataset config to a training iterator and fixed eval batches."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from tunixrt.config import DatasetConfig
from tunixrt.data.batching import BatchIterator, HostBatch, fixed_batches
from tunixrt.data.chat import ChatTokenizer
from tunixrt.data.render import render
from tunixrt.data.schema import (
    DataError,
    Example,
    Trace,
    parse_example,
    read_examples,
    read_jsonl,
)
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


def only_families(
    examples: list[Example], families: list[str] | None, source: str
) -> list[Example]:
    """The traces whose meta.family is one of `families` (None: every example)."""
    if families is None:
        return examples
    kept: list[Example] = [
        e for e in examples if isinstance(e, Trace) and e.meta.get("family") in families
    ]
    if not kept:
        raise DataError(f"{source}: no trace has a meta.family in dataset.families={families}")
    return kept


def generated_traces(cfg: DatasetConfig, seed: int) -> list[Example]:
    """cfg.generate traces per family from the bundled generator, none of which is a
    problem of the bundled valid or eval split (in any wording) or has a prompt of
    valid_path or eval_path."""
    from tunixrt.data.synthetic.build import FAMILIES, draw_training, trace_record

    families = cfg.families or list(FAMILIES)
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise DataError(
            f"invalid config value dataset.families={families}: {unknown} are not task "
            f"families of the generator (known: {sorted(FAMILIES)})"
        )
    keys, bundled = _bundled_held_out()
    held_out = _held_out_prompts(cfg) | {problem.prompt for _, _, problem in bundled}
    rows = draw_training(families, cfg.generate, seed, held_out, keys)
    return [parse_example(trace_record("generated", i, *row)) for i, row in enumerate(rows)]


def _bundled_held_out() -> tuple[set[str], list[Any]]:
    """The bundled dataset's valid and eval problems, drawn again from its manifest;
    checked against its eval file, so a generator that drifted cannot leak eval problems
    into training."""
    import json

    from tunixrt.data.synthetic.build import held_out_problems
    from tunixrt.paths import repo_path

    folder = repo_path("datasets", "dev-reasoning")
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    keys, rows = held_out_problems(manifest)
    drawn = {problem.prompt for _, _, problem in rows}
    shipped = set(read_jsonl(folder / "eval.jsonl", _prompt))
    if not shipped <= drawn:
        raise RuntimeError(
            f"the generator no longer draws {folder / 'eval.jsonl'}'s problems; regenerate "
            "the dataset (datasets/dev-reasoning/README.md) before drawing training traces"
        )
    return keys, rows


def _held_out_prompts(cfg: DatasetConfig) -> set[str]:
    """The prompts of the held-out files: traces, pairs or eval items."""
    out: set[str] = set()
    for path in (cfg.valid_path, cfg.eval_path):
        if path is not None:
            out.update(p for p in read_jsonl(path, _prompt) if p is not None)
    return out


def _prompt(obj: Any) -> str | None:
    prompt = obj.get("prompt") if isinstance(obj, dict) else None
    return prompt if isinstance(prompt, str) else None


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
    if cfg.generate:
        train_records = generated_traces(cfg, seed)
        source = f"the generator ({cfg.generate} per family)"
    else:
        train_records = only_families(read_examples(cfg.path), cfg.families, cfg.path)
        source = cfg.path
    if cfg.valid_path is not None:
        valid_records = only_families(read_examples(cfg.valid_path), cfg.families, cfg.valid_path)
    else:
        train_records, valid_records = split_valid(train_records, cfg.valid_fraction, seed, source)
    train_enc = encode_all(train_records, tokenizer)
    valid_enc = encode_all(valid_records, tokenizer)
    _warn_truncation(train_enc, seq_len, source)
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
        "data: %d train and %d held-out examples from %s", len(train_enc), len(valid_enc), source
    )
    return Data(tokenizer, train, evals, len(train_enc), len(valid_enc))
