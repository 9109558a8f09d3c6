"""The training files of `dataset.path` (a file, a glob, or a list of them) and how
their examples are drawn: one shuffle over all of them, or a mixture of the files in
the proportions `dataset.mixture` gives."""

from __future__ import annotations

import glob
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tunixrt.data.schema import DataError

_GLOB_CHARS = frozenset("*?[")


def resolve_files(path: str | Sequence[str]) -> list[Path]:
    """The files `dataset.path` names, in the order given; a glob expands to its matches
    sorted by name, so the order (and the shuffle) is the same on every machine. A plain
    path is returned as is: reading it reports a missing file."""
    entries = [path] if isinstance(path, str) else list(path)
    files: list[Path] = []
    for entry in entries:
        entry = str(Path(entry).expanduser())
        if not _GLOB_CHARS & set(entry):
            files.append(Path(entry))
            continue
        matches = sorted(glob.glob(entry, recursive=True))
        if not matches:
            raise DataError(f"dataset.path={entry!r}: the pattern matches no file")
        files.extend(Path(m) for m in matches)
    if not files:
        raise DataError("dataset.path is an empty list: name at least one file")
    return files


def mixture_weights(mixture: Sequence[float] | None, files: Sequence[Path]) -> np.ndarray | None:
    """dataset.mixture as probabilities, one per file; None: no mixture."""
    if mixture is None:
        return None
    if len(mixture) != len(files):
        raise DataError(
            f"dataset.mixture has {len(mixture)} weights for {len(files)} files "
            f"({', '.join(str(f) for f in files)}): give one weight per file"
        )
    weights = np.asarray(mixture, np.float64)
    return weights / weights.sum()


def mixture_counts(sizes: Sequence[int], weights: np.ndarray) -> np.ndarray:
    """Examples each file gives to one epoch of sum(sizes) examples: proportional to its
    weight, rounded so they add up exactly (largest remainders first)."""
    total = int(sum(sizes))
    share = weights * total
    counts = np.floor(share).astype(np.int64)
    short = total - int(counts.sum())
    counts[np.argsort(-(share - counts), kind="stable")[:short]] += 1
    return counts


def mixture_order(sizes: Sequence[int], weights: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """One epoch of a mixture: indices into the files' examples laid end to end
    (file f's example i is sum(sizes[:f]) + i), `mixture_counts` of each file, shuffled.
    A file draws from fresh shuffles of its own examples, repeated where its share
    exceeds its size and cut where it falls short; everything follows (seed, epoch)."""
    counts = mixture_counts(sizes, weights)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    picks = []
    for f, (size, count) in enumerate(zip(sizes, counts, strict=True)):
        if count == 0:
            continue
        if size == 0:
            raise DataError(f"dataset.mixture gives weight to file {f}, which has no examples")
        rng = np.random.default_rng([seed, epoch, f, 1])
        shuffles = [rng.permutation(size) for _ in range(-(-int(count) // size))]
        picks.append(starts[f] + np.concatenate(shuffles)[:count])
    return np.random.default_rng([seed, epoch]).permutation(np.concatenate(picks))


def data_key(file_keys: Sequence[str], weights: np.ndarray | None, valid: str) -> str:
    """What a training order depends on beyond the seed: the files' cache keys (content,
    tokenizer, settings), the mixture and the held-out split (`valid`: a key or the
    fraction). Stored with the iterator state, so a resume notices changed data."""
    parts = {
        "files": list(file_keys),
        "mixture": None if weights is None else [float(w) for w in weights],
        "valid": valid,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
