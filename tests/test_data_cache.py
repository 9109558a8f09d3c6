"""The token cache: the arrays equal today's per-example encoding, batches from it are
bit-identical to those from memory, each key part makes a new cache, and a preparation
that dies leaves nothing that is read."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.data import addition_traces, cache_folders, trace, write_jsonl
from tests.helpers.paths import DEV_DATA, ROOT
from tunixrt.config import DatasetConfig
from tunixrt.data import (
    BatchIterator,
    DataError,
    TextTokenizer,
    chunks,
    fixed_batches,
    read_examples,
    render,
)
from tunixrt.data import cache as cache_mod
from tunixrt.data.cache import CachedExamples, Summary, is_complete, prepare
from tunixrt.data.pipeline import load_data, split_valid

TRAIN, VALID = DEV_DATA / "train.jsonl", DEV_DATA / "valid.jsonl"


@pytest.fixture(scope="module")
def tok() -> TextTokenizer:
    return TextTokenizer.from_file(DEV_DATA / "tokenizer.json")


def bundled(cache_dir: Path | None, **kw: object) -> DatasetConfig:
    return DatasetConfig(
        name="dev_reasoning",
        path=str(TRAIN),
        valid_path=str(VALID),
        tokenizer=str(DEV_DATA / "tokenizer.json"),
        cache_dir=None if cache_dir is None else str(cache_dir),
        **kw,  # type: ignore[arg-type]
    )


def test_cache_holds_what_encoding_each_example_gives(tmp_path, tok):
    cached = prepare(TRAIN, tok, families=None, root=tmp_path)
    records = read_examples(TRAIN)
    assert len(cached) == len(records) == cached.manifest["examples"]
    for i in (0, 1, 777, len(records) - 1):
        want = tok.encode(render(records[i]))
        np.testing.assert_array_equal(cached[i].ids, want.ids)
        np.testing.assert_array_equal(cached[i].mask, want.mask)
        assert cached[i].ids.dtype == np.int32 and cached[i].mask.dtype == bool
    every = [tok.encode(render(r)) for r in records]
    np.testing.assert_array_equal(cached.lengths, [len(e) for e in every])
    # plain .npy files, read memory-mapped and without pickle
    for name in ("ids", "mask", "offsets"):
        arr = np.load(cached.folder / f"{name}.npy", mmap_mode="r", allow_pickle=False)
        assert isinstance(arr, np.memmap)
    ids = np.load(cached.folder / "ids.npy", allow_pickle=False)
    np.testing.assert_array_equal(ids, np.concatenate([e.ids for e in every]))


def legacy_batches(tok, cfg: DatasetConfig, *, seed: int, rows: int, seq_len: int, n: int):
    """Batches as the in-memory pipeline made them: every record encoded one by one."""
    train = [tok.encode(render(r)) for r in read_examples(cfg.path)]
    valid = [tok.encode(render(r)) for r in read_examples(cfg.valid_path)]
    it = BatchIterator(
        train,
        rows=rows,
        seq_len=seq_len,
        pad_id=tok.pad_id,
        pack=cfg.pack,
        loss_on_prompt=cfg.loss_on_prompt,
        seed=seed,
    )
    common = dict(rows=rows, seq_len=seq_len, pad_id=tok.pad_id, pack=cfg.pack)
    evals = fixed_batches(valid, count=2, loss_on_prompt=cfg.loss_on_prompt, **common)
    return [next(it) for _ in range(n)], evals


def assert_same_batches(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert a.keys() == b.keys()
        for k in a:
            assert a[k].dtype == b[k].dtype
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("pack", [True, False])
def test_batches_from_the_cache_are_bit_identical_to_memory(tmp_path, tok, pack):
    # 2,400 examples in 16-row batches: enough batches to cross into the second epoch
    steps = 100 if pack else 160
    for cache_dir in (tmp_path, None):
        cfg = bundled(cache_dir, pack=pack, loss_on_prompt=not pack)
        data = load_data(cfg, rows=16, seq_len=192, eval_batches=2, seed=3)
        got = [next(data.train) for _ in range(steps)]
        want, evals = legacy_batches(tok, cfg, seed=3, rows=16, seq_len=192, n=steps)
        assert_same_batches(got, want)
        assert_same_batches(data.eval_batches, evals)
        assert data.train.state.epoch == 1
    assert (cache_folders(tmp_path, TRAIN)[0] / "ids.npy").is_file()


def test_held_out_split_matches_memory(tmp_path, tok):
    cfg = DatasetConfig(
        name="jsonl",
        path=str(TRAIN),
        tokenizer=str(DEV_DATA / "tokenizer.json"),
        cache_dir=str(tmp_path),
    )
    data = load_data(cfg, rows=8, seq_len=128, eval_batches=3, seed=5)
    train, held = split_valid(read_examples(TRAIN), 0.05, 5, str(TRAIN))
    assert (data.train_examples, data.valid_examples) == (len(train), len(held))
    enc = [tok.encode(render(r)) for r in train]
    it = BatchIterator(
        enc, rows=8, seq_len=128, pad_id=tok.pad_id, pack=True, loss_on_prompt=False, seed=5
    )
    assert_same_batches([next(data.train) for _ in range(5)], [next(it) for _ in range(5)])
    evals = fixed_batches(
        [tok.encode(render(r)) for r in held],
        count=3,
        rows=8,
        seq_len=128,
        pad_id=tok.pad_id,
        pack=True,
        loss_on_prompt=False,
    )
    assert_same_batches(data.eval_batches, evals)


def folder_of(path: Path, tok, root: Path, families=None) -> Path:
    return prepare(path, tok, families=families, root=root).folder


def test_each_key_part_makes_a_new_cache(tmp_path, tok, small_tokenizer):
    root = tmp_path / "cache"
    data = write_jsonl(tmp_path / "d.jsonl", addition_traces(40))
    first = folder_of(data, tok, root)
    built = json.loads((first / "manifest.json").read_text())["created"]
    assert folder_of(data, tok, root) == first
    assert json.loads((first / "manifest.json").read_text())["created"] == built  # not rebuilt
    write_jsonl(data, addition_traces(40, seed=1))  # same size, other content
    changed = folder_of(data, tok, root)
    other_tok = folder_of(data, TextTokenizer.from_file(small_tokenizer), root)
    fam = write_jsonl(
        tmp_path / "f.jsonl",
        [
            {**trace("q", ["s"], "a"), "meta": {"family": "x"}},
            {**trace("r", ["t"], "b"), "meta": {"family": "y"}},
        ],
    )
    families = {folder_of(fam, tok, root, f) for f in (None, ["x"], ["x", "y"])}
    assert len({first, changed, other_tok}) == 3 and len(families) == 3
    for folder in (first, changed, other_tok):
        assert is_complete(folder)
    manifest = json.loads((changed / "manifest.json").read_text())
    assert set(manifest) >= {"format", "file_sha256", "tokenizer_sha256", "families", "key"}
    # the same content at another path shares the cache
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(data.read_bytes())
    assert folder_of(copy, tok, root) == changed


def test_settings_applied_at_batch_time_share_one_cache(tmp_path):
    for options in ({}, {"loss_on_prompt": True}, {"pack": False}):
        load_data(bundled(tmp_path, **options), rows=4, seq_len=64, eval_batches=1, seed=7)
    assert len(cache_folders(tmp_path, TRAIN)) == 1


def test_a_crash_while_writing_leaves_no_cache(tmp_path, tok, monkeypatch):
    calls = {"n": 0}
    real = cache_mod.NpyWriter.append

    def failing(self, values):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # as a Ctrl-C mid-write
        real(self, values)

    monkeypatch.setattr(cache_mod.NpyWriter, "append", failing)
    with pytest.raises(KeyboardInterrupt):
        prepare(TRAIN, tok, families=None, root=tmp_path)
    assert not cache_folders(tmp_path)
    assert not list((tmp_path / ".tmp").iterdir())  # cleaned on the way out
    monkeypatch.undo()
    assert is_complete(prepare(TRAIN, tok, families=None, root=tmp_path).folder)


KILLED = """
import sys, time
from pathlib import Path
from tunixrt.data import TextTokenizer
from tunixrt.data import cache

def stall(self):
    Path(sys.argv[2]).write_text("writing")
    time.sleep(600)

cache.NpyWriter.finish = stall
tok = TextTokenizer.from_file(sys.argv[3])
cache.prepare(sys.argv[4], tok, families=None, root=Path(sys.argv[1]))
"""


def test_a_killed_preparation_is_never_read_and_is_cleaned_up(tmp_path, tok):
    root, marker = tmp_path / "cache", tmp_path / "marker"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-c", KILLED, str(root), str(marker), str(DEV_DATA / "tokenizer.json")]
    proc = subprocess.Popen([*args, str(TRAIN)], env=env)
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    (stale,) = (root / ".tmp").iterdir()  # arrays written, not yet published
    assert (stale / "ids.npy").is_file() and not cache_folders(root)
    cached = prepare(TRAIN, tok, families=None, root=root)
    assert is_complete(cached.folder) and len(cached) == 2400
    assert not stale.exists()  # its process is gone: removed


def test_a_live_preparations_folder_is_left_alone(tmp_path, tok):
    staging = tmp_path / ".tmp"
    staging.mkdir()
    import socket

    live = staging / f"{os.getpid()}@{socket.gethostname()}@other-0123"
    elsewhere = staging / "1@another-host@other-0123"
    for folder in (live, elsewhere):
        folder.mkdir()
    prepare(TRAIN, tok, families=None, root=tmp_path)
    assert live.is_dir() and elsewhere.is_dir()


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 2 KB and parallel workers for any file, to test the parallel path on
    small files."""
    monkeypatch.setattr(chunks, "CHUNK_BYTES", 2048)
    monkeypatch.setattr(chunks, "PARALLEL_BYTES", 0)


def test_parallel_workers_write_the_same_cache(tmp_path, tok, small_chunks):
    records = addition_traces(300)
    path = write_jsonl(tmp_path / "d.jsonl", records)
    parallel = prepare(path, tok, families=None, root=tmp_path / "p", workers=2)
    single = prepare(path, tok, families=None, root=tmp_path / "s", workers=1)
    assert len(chunks.chunk_ranges(path, 2048)) > 4
    files = {"ids.npy", "mask.npy", "offsets.npy", "prompts.npy", "manifest.json"}
    assert {f.name for f in parallel.folder.iterdir()} == files  # no worker scratch
    assert parallel.folder.stat().st_mode & 0o777 == 0o755
    assert parallel.manifest["tokens"] == single.manifest["tokens"]
    for name in ("ids", "mask", "offsets"):
        np.testing.assert_array_equal(
            np.load(parallel.folder / f"{name}.npy"), np.load(single.folder / f"{name}.npy")
        )


def test_a_bad_line_in_a_later_chunk_names_its_line(tmp_path, tok, small_chunks):
    lines: list[dict | str] = list(addition_traces(200))
    lines[150] = '{"prompt": "a", "steps": [], "final_answer": '
    lines[170] = '{"prompt": 1}'
    path = write_jsonl(tmp_path / "d.jsonl", ["", *lines])  # a blank first line counts
    with pytest.raises(DataError) as err:
        prepare(path, tok, families=None, root=tmp_path / "c", workers=2)
    assert str(err.value).startswith(f"{path}:152: invalid JSON")
    assert not cache_folders(tmp_path / "c")


@pytest.mark.parametrize(
    "content, message",
    [
        ("\n\n", ":1: the file has no records"),
        ('{"prompt": "p", "completion": "c"}\n{"completion": "x"}\n', ":2: missing key 'prompt'"),
        (b'{"prompt": "p", "completion": "c"}\n{"prompt": "\xff"}\n', ":2: invalid UTF-8"),
    ],
)
def test_bad_files_fail_as_reading_them_does(tmp_path, tok, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(DataError, match=f"^{path}{message}"):
        prepare(path, tok, families=None, root=tmp_path / "c")
    with pytest.raises(DataError, match="no such file"):
        prepare(tmp_path / "missing.jsonl", tok, families=None, root=tmp_path / "c")


def test_families_keep_their_traces_and_count_the_rest(tmp_path, tok):
    cached = prepare(TRAIN, tok, families=["sorting"], root=tmp_path)
    families = [json.loads(line)["meta"]["family"] for line in TRAIN.read_text().splitlines()]
    assert len(cached) == families.count("sorting")
    assert cached.manifest["filtered"] == len(families) - len(cached)
    with pytest.raises(
        DataError, match=r"no trace has a meta.family in dataset.families=\['nope'\]"
    ):
        prepare(TRAIN, tok, families=["nope"], root=tmp_path)


def test_summary_counts_truncated_examples_and_percentiles(tmp_path, tok):
    cached = prepare(TRAIN, tok, families=None, root=tmp_path)
    summary = Summary.of(TRAIN, cached, seq_len=100)
    lengths = cached.lengths
    assert summary.truncated == int(np.sum(lengths - 1 > 100)) > 0
    assert summary.percentiles["max"] == lengths.max()
    assert summary.percentiles["p50"] == round(float(np.percentile(lengths, 50)))
    assert summary.tokens == lengths.sum() and summary.examples == 2400


def test_a_damaged_cache_is_refused_and_built_again(tmp_path, tok):
    folder = prepare(TRAIN, tok, families=None, root=tmp_path).folder
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "tokens": 5}))
    with pytest.raises(DataError, match="disagree"):
        CachedExamples(folder)
    assert (
        prepare(TRAIN, tok, families=None, root=tmp_path).manifest["tokens"] == manifest["tokens"]
    )
    (folder / "prompts.npy").unlink()
    with pytest.raises(DataError, match="damaged token cache"):
        CachedExamples(folder)
    assert len(prepare(TRAIN, tok, families=None, root=tmp_path)) == 2400
    assert (folder / "prompts.npy").is_file()


def test_a_chat_tokenizer_rebuilt_from_its_spec_encodes_alike(tmp_path):
    """Worker processes rebuild the tokenizer from its spec; the template is part of it."""
    from tests.helpers import chat_templates
    from tunixrt.data.chat import ChatTokenizer
    from tunixrt.data.chunks import tokenizer_from_spec
    from tunixrt.data.tokenize import spec_hash

    folder = chat_templates.save_family(tmp_path / "qwen", "qwen2.5")
    tok = ChatTokenizer.from_folder(folder)
    rebuilt = tokenizer_from_spec(tok.spec())
    records = read_examples(TRAIN)[:50]
    for a, b in zip(
        tok.encode_many([render(r) for r in records]),
        [rebuilt.encode(render(r)) for r in records],
        strict=True,
    ):
        np.testing.assert_array_equal(a.ids, b.ids)
        np.testing.assert_array_equal(a.mask, b.mask)
    assert spec_hash(rebuilt.spec()) == spec_hash(tok.spec())
    (folder / "chat_template.jinja").write_text("{{ messages[0]['content'] }}")
    assert spec_hash(ChatTokenizer.from_folder(folder).spec()) != spec_hash(tok.spec())


@pytest.mark.parametrize("cached", [True, False])
def test_prompts_shared_by_held_out_and_training_examples_are_reported(
    tmp_path, tok, caplog, cached
):
    records = addition_traces(40) + addition_traces(20)  # the first 20 prompts twice
    path = write_jsonl(tmp_path / "twice.jsonl", records)
    cfg = DatasetConfig(
        name="jsonl",
        path=str(path),
        valid_fraction=0.25,
        tokenizer=str(DEV_DATA / "tokenizer.json"),
        cache_dir=str(tmp_path / "cache") if cached else None,
    )
    with caplog.at_level("WARNING", logger="tunixrt.data.pipeline"):
        load_data(cfg, rows=4, seq_len=64, eval_batches=1, seed=0)
    train, held = split_valid(read_examples(path), 0.25, 0, str(path))
    trained = {r.prompt for r in train}
    shared = sum(r.prompt in trained for r in held)
    assert 0 < shared < len(held)
    assert f"{shared} of {len(held)} held-out examples have a prompt" in caplog.text
    if cached:
        (folder,) = cache_folders(tmp_path / "cache")
        assert Summary.of(path, CachedExamples(folder), 64).repeated == 20 + 40 - len(
            {r["prompt"] for r in records}
        )


def test_no_report_when_held_out_prompts_are_new(tmp_path, caplog):
    with caplog.at_level("WARNING", logger="tunixrt.data.pipeline"):
        load_data(bundled(tmp_path), rows=4, seq_len=64, eval_batches=1, seed=0)
    assert "held-out examples have a prompt" not in caplog.text


def test_a_settled_files_hash_is_remembered_until_it_changes(tmp_path, tok, monkeypatch):
    path = write_jsonl(tmp_path / "d.jsonl", addition_traces(20))
    old = time.time() - 60
    os.utime(path, (old, old))  # settled: older than a timestamp tick
    first = cache_mod.file_sha256(path, tmp_path / "cache")
    assert list((tmp_path / "cache" / "hashes").glob("*.json"))

    def unread(*args: object) -> None:
        raise AssertionError("the file was hashed again")

    monkeypatch.setattr(cache_mod.hashlib, "file_digest", unread)
    assert cache_mod.file_sha256(path, tmp_path / "cache") == first
    monkeypatch.undo()
    write_jsonl(path, addition_traces(20, seed=1))  # a new mtime
    assert cache_mod.file_sha256(path, tmp_path / "cache") != first
    # a file written just now is hashed every time: its mtime may not move on a rewrite
    fresh = write_jsonl(tmp_path / "fresh.jsonl", addition_traces(5))
    cache_mod.file_sha256(fresh, tmp_path / "other")
    assert not (tmp_path / "other" / "hashes").exists()


def test_two_preparations_of_one_file_at_once_keep_one_cache(tmp_path, tok, monkeypatch):
    real = cache_mod._write_arrays
    started: list[bool] = []
    nested = []

    def racing(*args: object) -> dict:
        counts = real(*args)
        if not started:  # another process finishes the same key first
            started.append(True)
            nested.append(prepare(TRAIN, tok, families=None, root=tmp_path))
        return counts

    monkeypatch.setattr(cache_mod, "_write_arrays", racing)
    ours = prepare(TRAIN, tok, families=None, root=tmp_path)
    (theirs,) = nested
    assert ours.folder == theirs.folder and len(cache_folders(tmp_path)) == 1
    assert ours.manifest["created"] == theirs.manifest["created"]  # theirs was kept
    assert not list((tmp_path / ".tmp").iterdir())


UNGUARDED = """
import sys
from pathlib import Path
from tunixrt.data import TextTokenizer, cache, chunks

chunks.CHUNK_BYTES, chunks.PARALLEL_BYTES = 100_000, 0
tok = TextTokenizer.from_file(sys.argv[2])
done = cache.prepare(sys.argv[3], tok, families=None, root=Path(sys.argv[1]), workers=2)
print(len(done))
"""


def test_workers_run_from_a_script_without_a_main_guard(tmp_path):
    """Workers are fresh interpreters running tunixrt.data.chunks: the caller's script
    (no `if __name__ == "__main__"`) is not imported again, as multiprocessing would."""
    script = tmp_path / "prepare.py"
    script.write_text(UNGUARDED)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [str(tmp_path / "cache"), str(DEV_DATA / "tokenizer.json"), str(TRAIN)]
    done = subprocess.run(
        [sys.executable, str(script), *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["2400"]


def test_a_worker_that_crashes_fails_the_preparation(tmp_path, tok, small_chunks, monkeypatch):
    path = write_jsonl(tmp_path / "d.jsonl", addition_traces(100))
    broken = {"kind": "text", "tokenizer": "not a tokenizer", "source": "x"}
    monkeypatch.setattr(TextTokenizer, "spec", lambda self: broken)
    with pytest.raises(RuntimeError, match="a tokenizer worker exited"):
        prepare(path, tok, families=None, root=tmp_path / "c", workers=2)
    assert not cache_folders(tmp_path / "c")
    assert not list((tmp_path / "c" / ".tmp").iterdir())


def test_a_template_error_in_a_worker_is_the_data_error(tmp_path, small_chunks):
    from tests.helpers import chat_templates
    from tunixrt.data.chat import ChatTokenizer

    folder = chat_templates.save_family(tmp_path / "qwen", "qwen2.5")
    (folder / "chat_template.jinja").write_text("{{ raise_exception('no prompts today') }}")
    path = write_jsonl(tmp_path / "d.jsonl", addition_traces(100))
    tok = ChatTokenizer.from_folder(folder)
    with pytest.raises(DataError, match="the chat template failed: no prompts today"):
        prepare(path, tok, families=None, root=tmp_path / "c", workers=2)


def test_a_cache_it_cannot_write_a_hash_to_is_still_read(tmp_path, tok, monkeypatch):
    path = write_jsonl(tmp_path / "d.jsonl", addition_traces(20))
    old = time.time() - 60
    os.utime(path, (old, old))

    def read_only(*args: object) -> None:
        raise PermissionError("read-only")

    monkeypatch.setattr(cache_mod, "atomic_write_text", read_only)
    assert len(prepare(path, tok, families=None, root=tmp_path / "c")) == 20
