"""`tunixrt data prepare`: builds the caches training reads, and says what they hold."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.data import addition_traces, cache_folders, write_jsonl
from tests.helpers.paths import DEV_DATA
from tunixrt.cli.main import main
from tunixrt.data.cache import CachedExamples


def prepare(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["data", "prepare", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_json_report_reads_back_what_the_caches_hold(capsys, tmp_path):
    code, out, _ = prepare(capsys, "--json", f"dataset.cache_dir={tmp_path}", "trainer.seq_len=100")
    assert code == 0
    train, valid = json.loads(out)
    assert (train["role"], valid["role"]) == ("train", "valid")
    assert train["source"] == str(DEV_DATA / "train.jsonl")
    assert (train["examples"], valid["examples"]) == (2400, 200)
    for report in (train, valid):
        cached = CachedExamples(Path(report["folder"]))
        lengths = cached.lengths
        assert report["tokens"] == int(lengths.sum()) == cached.manifest["tokens"]
        assert report["truncated"] == int(np.sum(lengths - 1 > 100)) > 0
        assert report["dropped"] == report["filtered"] == 0
        assert report["percentiles"]["max"] == int(lengths.max())
        assert report["percentiles"]["p90"] == round(float(np.percentile(lengths, 90)))
    built = CachedExamples(Path(train["folder"])).manifest["created"]
    # overrides after an option work too; a second run finds the caches
    code, again, _ = prepare(
        capsys, "--json", f"dataset.cache_dir={tmp_path}", "trainer.seq_len=100"
    )
    assert json.loads(again) == [train, valid]
    assert CachedExamples(Path(train["folder"])).manifest["created"] == built


def test_table_names_each_file_its_counts_and_its_folder(capsys, tmp_path):
    data = write_jsonl(tmp_path / "sums.jsonl", addition_traces(50))
    cache = tmp_path / "cache"
    code, out, _ = prepare(
        capsys, "dataset=jsonl", f"dataset.path={data}", f"dataset.cache_dir={cache}"
    )
    assert code == 0
    header, row, *rest = out.splitlines()
    assert header.split() == [
        "role", "file", "examples", "tokens", "truncated", "dropped", "filtered", "repeated",
        "p50", "p90", "p99", "max",
    ]  # fmt: skip
    assert row.split()[:3] == ["train", str(data), "50"]
    (folder,) = cache_folders(cache)
    assert f"train cache: {folder}" in rest
    assert "trainer.seq_len=256" in out
    # a copy of the file shares the cache, and is reported under its own name
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(data.read_bytes())
    code, out, _ = prepare(
        capsys, "--json", "dataset=jsonl", f"dataset.path={copy}", f"dataset.cache_dir={cache}"
    )
    (report,) = json.loads(out)
    assert report["source"] == str(copy) and report["folder"] == str(folder)


@pytest.mark.parametrize(
    "argv, says",
    [
        (["dataset.cache_dir=null"], "dataset.cache_dir is null"),
        (
            ["dataset=jsonl", "dataset.path=/no/such/file.jsonl"],
            "/no/such/file.jsonl: no such file",
        ),
        (["dataset.mixture=[1,2]"], "dataset.mixture has 2 weights for 1 files"),
        (["dataset.workers=0"], "dataset.workers=0"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, monkeypatch, argv, says):
    monkeypatch.chdir(tmp_path)
    code, out, err = prepare(capsys, *argv)
    assert code == 2 and not out
    assert err.startswith("tunixrt data prepare: ") and err.count("\n") == 1, err
    assert says in err
    assert not list(tmp_path.iterdir())  # no cache folder for a failed command


def test_help_describes_the_command(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["data", "prepare", "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "dataset.cache_dir" in text and "length percentiles" in text


def test_generated_traces_leave_only_the_valid_file_to_prepare(capsys, tmp_path):
    code, out, _ = prepare(capsys, "--json", f"dataset.cache_dir={tmp_path}", "dataset.generate=5")
    assert code == 0 and [r["role"] for r in json.loads(out)] == ["valid"]
    code, out, _ = prepare(
        capsys, f"dataset.cache_dir={tmp_path}", "dataset.generate=5", "dataset.valid_path=null"
    )
    assert code == 0 and out.startswith("nothing to prepare")
