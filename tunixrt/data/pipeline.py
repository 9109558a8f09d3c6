"""From a dataset config to a training iterator and fixed eval batches."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from tunixrt.config import ConfigError, DatasetConfig
from tunixrt.data.batching import BatchIterator, HostBatch, Order, Shard, fixed_batches
from tunixrt.data.cache import Summary, cache_key, cache_root, key_parts, prepare
from tunixrt.data.chat import ChatTokenizer
from tunixrt.data.chunks import AnyTokenizer, is_kept
from tunixrt.data.examples import Concat, Examples, InMemory, Subset, usable
from tunixrt.data.prefetch import Prefetcher
from tunixrt.data.render import Rendered, prompt_keys, render
from tunixrt.data.schema import (
    DataError,
    Example,
    parse_example,
    read_examples,
    read_jsonl,
)
from tunixrt.data.sources import data_key, mixture_order, mixture_weights, resolve_files
from tunixrt.data.tokenize import Encoded, TextTokenizer

log = logging.getLogger(__name__)


Tokenizer = AnyTokenizer  # a text tokenizer with tunixrt's template, or a pretrained one


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
    train: Prefetcher
    eval_batches: list[HostBatch]
    train_examples: int
    valid_examples: int


ENCODE_BATCH = 1024  # examples per tokenizer call


def encode_all(examples: list[Example], tokenizer: Tokenizer) -> list[Encoded]:
    return encode_rendered([render(e) for e in examples], tokenizer)


def encode_rendered(rendered: list[Rendered], tokenizer: Tokenizer) -> list[Encoded]:
    out: list[Encoded] = []
    for start in range(0, len(rendered), ENCODE_BATCH):
        out.extend(tokenizer.encode_many(rendered[start : start + ENCODE_BATCH]))
    return out


def held_out(n: int, fraction: float, seed: int, source: str) -> np.ndarray:
    """The sorted indices of the `fraction` of n examples held out, chosen by seed, for
    the eval loss."""
    if fraction == 0.0:
        return np.zeros(0, np.int64)
    n_valid = max(1, round(n * fraction))
    if n_valid >= n:
        raise DataError(
            f"{source}: {n} records are too few to hold out "
            f"dataset.valid_fraction={fraction} and still train"
        )
    return np.sort(np.random.default_rng([seed, 1]).permutation(n)[:n_valid])


def split_valid(
    examples: list[Example], fraction: float, seed: int, source: str
) -> tuple[list[Example], list[Example]]:
    """Hold out `fraction` of the examples, chosen by seed, for the eval loss."""
    held = set(held_out(len(examples), fraction, seed, source).tolist())
    train = [e for i, e in enumerate(examples) if i not in held]
    return train, [examples[i] for i in sorted(held)]


def only_families(
    examples: list[Example], families: list[str] | None, source: str
) -> list[Example]:
    """The traces whose meta.family is one of `families` (None: every example)."""
    if families is None:
        return examples
    kept: list[Example] = [e for e in examples if is_kept(e, families)]
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
    rows = draw_training(
        families, cfg.generate, seed, held_out, keys, cfg.invented_words, cfg.tally_counts
    )
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


def _warn_truncation(lengths: np.ndarray, seq_len: int, source: str) -> None:
    too_long = int(np.count_nonzero(lengths - 1 > seq_len))
    if too_long:
        log.warning(
            "%s: %d of %d examples are longer than trainer.seq_len=%d and are truncated",
            source,
            too_long,
            len(lengths),
            seq_len,
        )


@dataclass
class Sets:
    """The training examples (and how an epoch orders them) and the held-out ones."""

    train: Examples
    valid: Examples
    source: str  # for messages: the file(s) or the generator
    order: Order | None = None  # None: a shuffle of `train` by (seed, epoch)
    key: str | None = None  # tunixrt.data.sources.data_key


def file_examples(
    path: Path, cfg: DatasetConfig, tokenizer: Tokenizer
) -> tuple[Examples, str, np.ndarray]:
    """One file's examples (after dataset.families), its cache key and its prompt keys:
    memory-mapped from the cache, built first if needed; read whole when
    dataset.cache_dir is null."""
    root = cache_root(cfg.cache_dir)
    if root is not None:
        cached = prepare(path, tokenizer, families=cfg.families, root=root, workers=cfg.workers)
        return cached, cached.key, cached.prompt_keys
    rendered = [render(e) for e in only_families(read_examples(path), cfg.families, str(path))]
    key = cache_key(key_parts(path, tokenizer, cfg.families, None))
    return InMemory(encode_rendered(rendered, tokenizer)), key, prompt_keys(rendered)


def file_sets(cfg: DatasetConfig, tokenizer: Tokenizer, seed: int) -> Sets:
    """dataset.path's files, held out from (dataset.valid_fraction of all of them) or
    with dataset.valid_path, drawn as dataset.mixture says."""
    files = resolve_files(cfg.path)
    weights = mixture_weights(cfg.mixture, files)
    source = str(files[0]) if len(files) == 1 else f"{len(files)} files ({files[0]}, ...)"
    loaded = [file_examples(f, cfg, tokenizer) for f in files]
    parts, keys = [e for e, _, _ in loaded], [k for _, k, _ in loaded]
    prompts = np.concatenate([np.asarray(p) for _, _, p in loaded])
    if cfg.valid_path is not None:
        valid, valid_tag, held_prompts = file_examples(Path(cfg.valid_path), cfg, tokenizer)
        _warn_shared_prompts(np.asarray(held_prompts), prompts, cfg.valid_path)
    else:
        whole = Concat(parts)
        held = held_out(len(whole), cfg.valid_fraction, seed, source)
        valid, valid_tag = Subset(whole, held), f"fraction {cfg.valid_fraction!r}"
        parts = _without(parts, whole.starts, held)
        _warn_shared_prompts(prompts[held], np.delete(prompts, held), source)
    parts = [usable(p) for p in parts]
    train = parts[0] if len(parts) == 1 else Concat(parts)
    order = None
    if weights is not None:
        order = partial(mixture_order, [len(p) for p in parts], weights)
    return Sets(train, valid, source, order, data_key(keys, weights, valid_tag))


def _warn_shared_prompts(held: np.ndarray, trained: np.ndarray, source: str) -> None:
    """A held-out example whose prompt is also trained on measures recall, not
    generalization: say how many there are (a file repeated, or many traces a prompt)."""
    shared = int(np.count_nonzero(np.isin(held, trained)))
    if shared:
        log.warning(
            "%s: %d of %d held-out examples have a prompt that training examples also have; "
            "the eval loss partly measures recall of trained prompts",
            source,
            shared,
            len(held),
        )


def _without(parts: list[Examples], starts: np.ndarray, held: np.ndarray) -> list[Examples]:
    """Each part less the held-out examples (`held`: indices into the parts end to end)."""
    out: list[Examples] = []
    for i, part in enumerate(parts):
        mine = held[(held >= starts[i]) & (held < starts[i + 1])] - starts[i]
        keep = np.setdiff1d(np.arange(len(part)), mine, assume_unique=True)
        out.append(part if len(keep) == len(part) else Subset(part, keep))
    return out


def generated_sets(cfg: DatasetConfig, tokenizer: Tokenizer, seed: int) -> Sets:
    """Traces of the bundled generator, held in memory (they are few)."""
    records = generated_traces(cfg, seed)
    source = f"the generator ({cfg.generate} per family)"
    if cfg.valid_path is not None:
        valid, _, _ = file_examples(Path(cfg.valid_path), cfg, tokenizer)
    else:
        records, held = split_valid(records, cfg.valid_fraction, seed, source)
        valid = InMemory(encode_all(held, tokenizer))
    return Sets(InMemory(encode_all(records, tokenizer)), valid, source)


def load_data(
    cfg: DatasetConfig,
    *,
    rows: int,
    seq_len: int,
    eval_batches: int,
    seed: int,
    model_path: str | None = None,
    shard: Shard = (0, 1),
) -> Data:
    """Tokenize (or find in the cache) every example up front, so bad data fails before
    compiling; `shard` is this process's part of each batch (index, count)."""
    tokenizer = load_tokenizer(cfg, model_path)
    sets = generated_sets(cfg, tokenizer, seed) if cfg.generate else file_sets(cfg, tokenizer, seed)
    _warn_truncation(sets.train.lengths, seq_len, sets.source)
    train = BatchIterator(
        sets.train,
        rows=rows,
        seq_len=seq_len,
        pad_id=tokenizer.pad_id,
        pack=cfg.pack,
        loss_on_prompt=cfg.loss_on_prompt,
        seed=seed,
        order=sets.order,
        shard=shard,
        data_key=sets.key,
    )
    evals = []
    if len(sets.valid):
        evals = fixed_batches(
            sets.valid,
            count=eval_batches,
            rows=rows,
            seq_len=seq_len,
            pad_id=tokenizer.pad_id,
            pack=cfg.pack,
            loss_on_prompt=cfg.loss_on_prompt,
            shard=shard,
        )
    log.info(
        "data: %d train and %d held-out examples from %s",
        len(sets.train),
        len(sets.valid),
        sets.source,
    )
    return Data(tokenizer, Prefetcher(train), evals, len(sets.train), len(sets.valid))


def prepare_caches(
    cfg: DatasetConfig, *, seq_len: int, model_path: str | None = None
) -> list[tuple[str, Summary]]:
    """Build (or find) the token cache of every file the config trains and holds out
    on: ("train" or "valid", what its cache holds) per file."""
    root = cache_root(cfg.cache_dir)
    if root is None:
        raise ConfigError("dataset.cache_dir is null: no token cache to prepare")
    tokenizer = load_tokenizer(cfg, model_path)
    files: list[tuple[str, Path]] = []
    if not cfg.generate:  # generated traces are drawn in memory at each start
        train = resolve_files(cfg.path)
        mixture_weights(cfg.mixture, train)  # one weight per file, checked before the work
        files += [("train", f) for f in train]
    if cfg.valid_path is not None:
        files.append(("valid", Path(cfg.valid_path)))
    out = []
    for role, path in files:
        cached = prepare(path, tokenizer, families=cfg.families, root=root, workers=cfg.workers)
        out.append((role, Summary.of(path, cached, seq_len)))
    return out
