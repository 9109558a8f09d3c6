"""The token cache: a JSONL file tokenized once, then read memory-mapped at every start.

One folder per key under `dataset.cache_dir`:

    <key[:24]>/
        ids.npy        [tokens] uint16 (int32 when the vocabulary has more than 65,536)
        mask.npy       [tokens] bool: True on completion tokens, the loss mask
        offsets.npy    [examples + 1] int64: example i is ids[offsets[i]:offsets[i + 1]]
        prompts.npy    [examples] uint64: a hash of each prompt, to find shared prompts
        manifest.json  the key's parts and the counts

The key is the sha256 of what decides the arrays: the file's content, the tokenizer
(its spec: tokenizer.json, and for a pretrained model its config and chat template),
`dataset.families` and the format version. `loss_on_prompt`, packing, the seed and the
mixture act when batches are built, so they share one cache.

A folder is written under `.tmp/` and renamed to its name only when complete, so a
preparation killed at any moment leaves nothing that is read; `.tmp/` folders of dead
processes are removed by the next preparation. Plain numpy files, read with
`np.load(mmap_mode="r", allow_pickle=False)`: nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack, closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tunixrt.data import chunks
from tunixrt.data.chunks import AnyTokenizer
from tunixrt.data.schema import DataError
from tunixrt.data.tokenize import Encoded, spec_hash
from tunixrt.files import atomic_write_text
from tunixrt.paths import OUTPUTS

log = logging.getLogger(__name__)

FORMAT = 1  # bump when rendering or encoding gives other ids for the same inputs
AUTO = "auto"  # dataset.cache_dir's default: OUTPUTS/cache
MANIFEST = "manifest.json"
ARRAYS = ("ids", "mask", "offsets", "prompts")
# A file's hash is remembered by (path, size, mtime, inode) only once its mtime is this
# many seconds old: a rewrite within the file system's timestamp tick keeps the mtime.
SETTLED_S = 2.0


def cache_root(value: str | None) -> Path | None:
    """The cache folder of `dataset.cache_dir`: None (null) keeps no cache; "auto" is
    `cache` in the outputs folder, absolute, so a change of working directory (a SLURM
    job) finds the same cache."""
    if value is None:
        return None
    if value.strip() in ("", AUTO):
        return Path(OUTPUTS).expanduser().resolve() / "cache"
    return Path(value).expanduser().resolve()


def worker_count(workers: int | None) -> int:
    if workers is not None:
        return workers
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


# -- keys ---------------------------------------------------------------------------------


def file_sha256(path: Path, root: Path | None) -> str:
    """sha256 of the file's bytes, remembered under `root/hashes` by the file's stat so
    that a warm start does not read a large file again."""
    st = path.stat()
    where = str(path.resolve())
    stamp = [where, st.st_size, st.st_mtime_ns, st.st_ino]
    memo = None
    if root is not None:
        memo = root / "hashes" / (hashlib.sha256(where.encode()).hexdigest()[:32] + ".json")
        saved = _read_json(memo)
        if saved is not None and saved.get("stamp") == stamp:
            return str(saved["sha256"])
    with path.open("rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    if memo is not None and time.time() - st.st_mtime > SETTLED_S:
        try:
            memo.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(memo, json.dumps({"stamp": stamp, "sha256": digest}))
        except OSError as err:  # a read-only cache (another user's): hash again next time
            log.debug("cannot remember the hash of %s: %s", path, err)
    return digest


def key_parts(
    path: Path, tokenizer: AnyTokenizer, families: Sequence[str] | None, root: Path | None
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "file_sha256": file_sha256(path, root),
        "tokenizer_sha256": spec_hash(tokenizer.spec()),
        "families": None if families is None else sorted(families),
    }


def cache_key(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


# -- reading ------------------------------------------------------------------------------


class CachedExamples:
    """A cache folder as `Examples`: example i is read from the memory-mapped arrays
    when asked for; only the offsets' differences (8 bytes an example) are in memory."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.manifest: dict[str, Any] = json.loads((folder / MANIFEST).read_text("utf-8"))
        try:
            ids, mask, offsets, prompts = (
                np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False)
                for name in ARRAYS
            )
        except (OSError, ValueError) as err:
            raise DataError(f"{folder}: a damaged token cache ({err})") from None
        n, tokens = self.manifest["examples"], self.manifest["tokens"]
        if not (
            offsets.shape == (n + 1,) == (len(prompts) + 1,)
            and len(ids) == len(mask) == tokens == offsets[-1]
        ):
            raise DataError(f"{folder}: the cache's arrays disagree with {MANIFEST}")
        self._ids, self._mask, self._offsets = ids, mask, offsets
        self.lengths = np.diff(offsets)
        self.prompt_keys = prompts  # [n] uint64, memory-mapped

    @property
    def key(self) -> str:
        return str(self.manifest["key"])

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i: int) -> Encoded:
        start, end = int(self._offsets[i]), int(self._offsets[i + 1])
        return Encoded(self._ids[start:end].astype(np.int32), np.array(self._mask[start:end]))


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def is_complete(folder: Path) -> bool:
    manifest = _read_json(folder / MANIFEST)
    return manifest is not None and manifest.get("format") == FORMAT


# -- building -----------------------------------------------------------------------------


def prepare(
    path: str | Path,
    tokenizer: AnyTokenizer,
    *,
    families: Sequence[str] | None,
    root: Path,
    workers: int | None = None,
) -> CachedExamples:
    """The cache of `path` under `root`, built first if there is none for its key."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    parts = key_parts(path, tokenizer, families, root)
    key = cache_key(parts)
    folder = root / key[:24]  # the same content anywhere shares it; the manifest names it
    if is_complete(folder):
        try:
            cached = CachedExamples(folder)
        except DataError as err:
            log.warning("%s; tokenizing %s again", err, path)
            shutil.rmtree(folder, ignore_errors=True)
        else:
            log.info("%s: tokens from the cache %s", path, folder)
            return cached
    _build(path, tokenizer, parts | {"key": key}, folder, worker_count(workers))
    return CachedExamples(folder)


def _build(
    path: Path, tokenizer: AnyTokenizer, manifest: dict[str, Any], folder: Path, workers: int
) -> None:
    staging = folder.parent / ".tmp"
    staging.mkdir(parents=True, exist_ok=True)
    _remove_stale(staging)
    # pid@host@name.random: the stale ones are known by pid and host
    tmp = Path(
        tempfile.mkdtemp(dir=staging, prefix=f"{os.getpid()}@{socket.gethostname()}@{folder.name}.")
    )
    tmp.chmod(0o755)  # mkdtemp's 0700 would hide a shared cache from the other users
    try:
        started = time.perf_counter()
        counts = _write_arrays(path, tokenizer, manifest["families"], tmp, workers)
        manifest = manifest | counts | {"source": str(path), "created": time.time()}
        with (tmp / MANIFEST).open("w", encoding="utf-8") as f:
            f.write(json.dumps(manifest, indent=2) + "\n")
            f.flush()
            os.fsync(f.fileno())
        _publish(tmp, folder)
        log.info(
            "%s: tokenized %d examples (%d tokens) in %.1fs into %s",
            path,
            counts["examples"],
            counts["tokens"],
            time.perf_counter() - started,
            folder,
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _publish(tmp: Path, folder: Path) -> None:
    """Rename the complete folder into place; another process that finished the same
    key first wins, and ours is dropped (both hold the same arrays)."""
    try:
        tmp.rename(folder)
    except OSError:
        if not is_complete(folder):
            raise


def _remove_stale(staging: Path) -> None:
    """Remove the temporary folders of preparations on this host whose process is gone
    (killed mid-way); a folder of a live process, or of another host, is left alone."""
    host = socket.gethostname()
    for tmp in staging.iterdir():
        pid, _, rest = tmp.name.partition("@")
        if not pid.isdigit() or rest.partition("@")[0] != host or _alive(int(pid)):
            continue
        shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def id_dtype(tokenizer: AnyTokenizer) -> str:
    return "uint16" if tokenizer.vocab_size <= 1 << 16 else "int32"


def _write_arrays(
    path: Path, tokenizer: AnyTokenizer, families: list[str] | None, tmp: Path, workers: int
) -> dict[str, Any]:
    """Stream every chunk's arrays into tmp/*.npy, in file order; the counts."""
    dtype = id_dtype(tokenizer)
    with ExitStack() as stack:
        ids, mask, offsets, prompts = (
            stack.enter_context(NpyWriter(tmp / f"{name}.npy", dt))
            for name, dt in zip(ARRAYS, (dtype, "bool", "int64", "uint64"), strict=True)
        )
        offsets.append(np.zeros(1, np.int64))
        lines = records = tokens = examples = short = 0
        parts = stack.enter_context(
            closing(chunks.tokenized(path, tokenizer, families, dtype, workers, tmp))
        )
        for chunk in parts:
            if chunk.error is not None:
                raise DataError(f"{path}:{lines + chunk.error[0]}: {chunk.error[1]}")
            ids.append(chunk.ids)
            mask.append(chunk.mask)
            offsets.append(tokens + np.cumsum(chunk.lengths))
            prompts.append(chunk.prompts)
            lines, records = lines + chunk.lines, records + chunk.records
            tokens, examples = tokens + len(chunk.ids), examples + len(chunk.lengths)
            short += int(np.count_nonzero(chunk.lengths < 2))
        if records == 0:
            raise DataError(f"{path}:1: the file has no records")
        if examples == 0:
            raise DataError(f"{path}: no trace has a meta.family in dataset.families={families}")
        for writer in (ids, mask, offsets, prompts):
            writer.finish()
    return {
        "records": records,
        "examples": examples,
        "filtered": records - examples,  # left out by dataset.families
        "short": short,  # fewer than two tokens: no training target
        "tokens": tokens,
        "ids_dtype": dtype,
    }


class NpyWriter:
    """A 1-D .npy file written piece by piece: the header is written for length 0 and
    rewritten with the final length at `close` (numpy's header keeps room for the
    length to grow, so the data never moves)."""

    def __init__(self, path: Path, dtype: str) -> None:
        self._file = path.open("wb")
        self.dtype, self.count = np.dtype(dtype), 0
        self._header_size = self._write_header()

    def _write_header(self) -> int:
        self._file.seek(0)
        header = {
            "descr": np.lib.format.dtype_to_descr(self.dtype),
            "fortran_order": False,
            "shape": (self.count,),
        }
        np.lib.format.write_array_header_1_0(self._file, header)
        return self._file.tell()

    def append(self, values: np.ndarray) -> None:
        self._file.write(np.ascontiguousarray(values, self.dtype).tobytes())
        self.count += len(values)

    def finish(self) -> None:
        """The final header, and the bytes on disk before the folder is published."""
        if self._write_header() != self._header_size:
            raise RuntimeError(f"{self._file.name}: the .npy header changed size")
        self._file.flush()
        os.fsync(self._file.fileno())

    def __enter__(self) -> NpyWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()


# -- what a cache holds -------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """What `tunixrt data prepare` reports of one file's cache."""

    source: str
    folder: str
    records: int
    examples: int
    filtered: int  # records dataset.families leaves out
    dropped: int  # examples with fewer than two tokens: never trained on
    tokens: int
    truncated: int  # examples longer than seq_len + 1 tokens: cut to fit a row
    repeated: int  # examples whose prompt an earlier example of the file has
    seq_len: int
    percentiles: dict[str, int]  # example length in tokens: p50, p90, p99, max

    @classmethod
    def of(cls, source: str | Path, cached: CachedExamples, seq_len: int) -> Summary:
        """`source`'s cache (which another file of the same content may have built)."""
        m, lengths = cached.manifest, cached.lengths
        points = np.percentile(lengths, [50, 90, 99]) if len(lengths) else [0, 0, 0]
        percentiles = {f"p{p}": int(round(v)) for p, v in zip((50, 90, 99), points, strict=True)}
        return cls(
            source=str(source),
            folder=str(cached.folder),
            records=int(m["records"]),
            examples=int(m["examples"]),
            filtered=int(m["filtered"]),
            dropped=int(m["short"]),
            tokens=int(m["tokens"]),
            truncated=int(np.count_nonzero(lengths - 1 > seq_len)),
            repeated=len(lengths) - len(np.unique(cached.prompt_keys)),
            seq_len=seq_len,
            percentiles=percentiles | {"max": int(lengths.max(initial=0))},
        )
