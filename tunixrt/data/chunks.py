"""Parse, render and tokenize a JSONL file in chunks (byte ranges of whole lines) into
flat token arrays, in the preparing process or in worker processes.

A worker is a plain `python -m tunixrt.data.chunks` process: never a fork of a process
that runs JAX, and nothing of the caller's __main__ is imported again (as multiprocessing
would). It imports only what the work needs (no JAX, no registry), rebuilds the tokenizer
from its JSON spec (`TextTokenizer.spec`) once, then takes chunks. Tasks and answers are
JSON lines, arrays .npy files: nothing is pickled. tunixrt.data.cache writes the chunks
into a cache folder.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer as HFTokenizer

from tunixrt.data.chat import ChatTokenizer
from tunixrt.data.render import prompt_keys, render
from tunixrt.data.schema import DataError, Trace, parse_example, parse_line
from tunixrt.data.tokenize import TextTokenizer, flat

AnyTokenizer = TextTokenizer | ChatTokenizer


@dataclass
class Chunk:
    """What one byte range held: its examples end to end, or the first bad line."""

    ids: np.ndarray  # [tokens] in the cache's id dtype
    mask: np.ndarray  # [tokens] bool, True on completion tokens
    lengths: np.ndarray  # [examples] int64 tokens per example
    prompts: np.ndarray  # [examples] uint64 prompt keys (tunixrt.data.render.prompt_keys)
    lines: int  # newline-terminated lines in the range (the next range's first line - 1)
    records: int  # records read, before the families filter
    error: tuple[int, str] | None = None  # (line within the range, 1-based; reason)


def tokenizer_from_spec(spec: dict[str, Any]) -> AnyTokenizer:
    tok = HFTokenizer.from_str(spec["tokenizer"])
    if spec["kind"] == "text":
        return TextTokenizer(tok, spec["source"])
    return ChatTokenizer(tok, spec["config"], spec["source"], spec["template_file"])


def is_kept(example: Any, families: Sequence[str] | None) -> bool:
    """Whether `dataset.families` keeps a record (None keeps every one)."""
    if families is None:
        return True
    return isinstance(example, Trace) and example.meta.get("family") in families


def tokenize_chunk(
    data: bytes, tokenizer: AnyTokenizer, families: Sequence[str] | None, id_dtype: str
) -> Chunk:
    """Every record of `data` (whole lines of a JSONL file) encoded as `tokenizer.encode`
    would encode it; stops at the first bad line."""
    lines = data.count(b"\n")
    text, bad = _decode(data)
    rendered, records = [], 0
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            example = parse_line(line, parse_example)
        except DataError as err:
            return _failed(lines, records, lineno, str(err))
        records += 1
        if is_kept(example, families):
            rendered.append(render(example))
    if bad is not None:
        return _failed(lines, records, *bad)
    encoded = flat(*tokenizer.encode_parts(rendered))
    ids, mask = encoded.ids.astype(id_dtype), encoded.mask()
    return Chunk(ids, mask, encoded.lengths, prompt_keys(rendered), lines, records)


def _decode(data: bytes) -> tuple[str, tuple[int, str] | None]:
    """The text of `data`; where it is not UTF-8, that of the lines before the first bad
    byte, and that line with the reason."""
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as err:
        cut = data.rfind(b"\n", 0, err.start) + 1
        line = data.count(b"\n", 0, cut) + 1
        return data[:cut].decode("utf-8"), (line, f"invalid UTF-8 (column {err.start - cut + 1})")


def _failed(lines: int, records: int, line: int, reason: str) -> Chunk:
    empty = np.zeros(0, np.int64)
    return Chunk(
        empty, empty.astype(bool), empty, empty.astype(np.uint64), lines, records, (line, reason)
    )


# -- the preparing process: chunks in file order, here or from worker processes -------------

CHUNK_BYTES = 4 << 20  # JSONL bytes one worker task parses and tokenizes
PARALLEL_BYTES = 16 << 20  # smaller files are tokenized in the preparing process


def tokenized(
    path: Path,
    tokenizer: AnyTokenizer,
    families: list[str] | None,
    dtype: str,
    workers: int,
    tmp: Path,
) -> Generator[Chunk, None, None]:
    """The file's chunks in order: tokenized here for a small file, else by `workers`
    worker processes."""
    ranges = chunk_ranges(path, CHUNK_BYTES)
    if workers <= 1 or len(ranges) < 2 or path.stat().st_size < PARALLEL_BYTES:
        for start, end in ranges:
            data = read_range(path, start, end)
            yield tokenize_chunk(data, tokenizer, families, dtype)
        return
    tasks = [
        {"index": k, "path": str(path), "start": a, "end": b, "families": families, "dtype": dtype}
        for k, (a, b) in enumerate(ranges)
    ]
    with Workers(min(workers, len(tasks)), tokenizer, tmp) as pool:
        yield from pool.run(tasks)


class Workers:
    """`python -m tunixrt.data.chunks` processes. Task k goes to worker k % n (chunks are
    of a size); a worker holds at most `AHEAD` tasks, so neither the pipes nor the
    chunk files waiting to be read grow with the file."""

    AHEAD = 2

    def __init__(self, n: int, tokenizer: AnyTokenizer, tmp: Path) -> None:
        # scratch beside the arrays, removed before the folder is published
        self.scratch = tmp / "workers"
        self.out = self.scratch / "chunks"
        self.out.mkdir(parents=True)
        spec = self.scratch / "tokenizer-spec.json"
        spec.write_text(json.dumps(tokenizer.spec()), "utf-8")
        # the worker imports this very tunixrt, wherever the caller found it
        package_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        command = [sys.executable, "-m", "tunixrt.data.chunks", str(spec), str(self.out)]
        self.procs = [
            subprocess.Popen(  # our own interpreter and module, no shell
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
            )
            for _ in range(n)
        ]

    def run(self, tasks: list[dict[str, Any]]) -> Iterator[Chunk]:
        n = len(self.procs)
        window = n * self.AHEAD
        for k in range(min(window, len(tasks))):
            self._send(tasks, k)
        for k in range(len(tasks)):
            chunk = self._answer(self.procs[k % n], k)
            if k + window < len(tasks):
                self._send(tasks, k + window)
            yield chunk

    def _send(self, tasks: list[dict[str, Any]], k: int) -> None:
        stdin = self.procs[k % len(self.procs)].stdin
        assert stdin is not None
        stdin.write(json.dumps(tasks[k]) + "\n")
        if k + len(self.procs) >= len(tasks):
            stdin.close()  # its last task: the worker ends after it
        else:
            stdin.flush()

    def _answer(self, proc: subprocess.Popen[str], index: int) -> Chunk:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            code = proc.wait()
            raise RuntimeError(f"a tokenizer worker exited ({code}) before chunk {index}")
        answer = json.loads(line)
        if "failure" in answer:
            raise DataError(answer["failure"])
        return load_chunk(answer, self.out)

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            for stream in (proc.stdin, proc.stdout):
                if stream is not None and not stream.closed:
                    stream.close()
        shutil.rmtree(self.scratch, ignore_errors=True)


def chunk_ranges(path: Path, size: int) -> list[tuple[int, int]]:
    """Byte ranges of about `size` bytes that end at line ends, covering the file."""
    total = path.stat().st_size
    ranges, start = [], 0
    with path.open("rb") as f:
        while start < total:
            f.seek(min(start + size, total))
            f.readline()  # on to the end of the line the cut fell in
            end = f.tell()
            ranges.append((start, end))
            start = end
    return ranges


# -- a worker process: python -m tunixrt.data.chunks SPEC OUT ------------------------------
#
# Reads tasks, one JSON object a line, on stdin: {"index", "path", "start", "end",
# "families", "dtype"}; for each writes OUT/<index>-<array>.npy and answers one JSON line
# on stdout: {"index", "lines", "records", "error"}, or {"index", "failure"} when the
# tokenizer raised a DataError (a chat template that fails), after which it stops.

ARRAY_NAMES = ("ids", "mask", "lengths", "prompts")


def read_range(path: str | Path, start: int, end: int) -> bytes:
    with Path(path).open("rb") as f:
        f.seek(start)
        return f.read(end - start)


def save_chunk(chunk: Chunk, out: Path, index: int) -> dict[str, Any]:
    for name in ARRAY_NAMES:
        np.save(out / f"{index}-{name}.npy", getattr(chunk, name), allow_pickle=False)
    return {"index": index, "lines": chunk.lines, "records": chunk.records, "error": chunk.error}


def load_chunk(answer: dict[str, Any], out: Path) -> Chunk:
    """The chunk a worker saved, its files removed once read."""
    arrays = {}
    for name in ARRAY_NAMES:
        file = out / f"{answer['index']}-{name}.npy"
        arrays[name] = np.load(file, allow_pickle=False)
        file.unlink()
    error = answer["error"]
    return Chunk(
        **arrays,
        lines=answer["lines"],
        records=answer["records"],
        error=None if error is None else (int(error[0]), str(error[1])),
    )


def main(argv: Sequence[str]) -> int:
    spec_file, out = Path(argv[0]), Path(argv[1])
    # The workers fill the cores: `tokenizers` should not start a thread per core in each.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    tokenizer = tokenizer_from_spec(json.loads(spec_file.read_text("utf-8")))
    parent = os.getppid()
    for line in sys.stdin:
        if os.getppid() != parent:
            return 1  # the preparation died: stop instead of working on for nobody
        task = json.loads(line)
        data = read_range(task["path"], task["start"], task["end"])
        try:
            chunk = tokenize_chunk(data, tokenizer, task["families"], task["dtype"])
        except DataError as err:
            answer: dict[str, Any] = {"index": task["index"], "failure": str(err)}
            sys.stdout.write(json.dumps(answer) + "\n")
            return 0
        sys.stdout.write(json.dumps(save_chunk(chunk, out, task["index"])) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    logging.getLogger("tunixrt").setLevel(logging.ERROR)  # the parent logs what matters
    sys.exit(main(sys.argv[1:]))
