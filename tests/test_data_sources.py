"""dataset.path as a list or a glob, and dataset.mixture: files drawn in the configured
proportions, deterministically from the seed, and resumable."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.config import compose_train
from tests.helpers.data import addition_traces, cache_folders, write_jsonl
from tests.helpers.paths import DEV_DATA
from tunixrt.config import ConfigError, DatasetConfig, validate
from tunixrt.data import DataError
from tunixrt.data.pipeline import load_data
from tunixrt.data.sources import (
    mixture_counts,
    mixture_order,
    mixture_weights,
    resolve_files,
)


def test_globs_expand_in_name_order_and_lists_keep_theirs(tmp_path):
    for name in ("b-2.jsonl", "b-1.jsonl", "a.jsonl", "b-10.txt"):
        (tmp_path / name).write_text("{}\n")
    assert [f.name for f in resolve_files(str(tmp_path / "b-*.jsonl"))] == [
        "b-1.jsonl",
        "b-2.jsonl",
    ]
    mixed = resolve_files([str(tmp_path / "b-*.jsonl"), str(tmp_path / "a.jsonl")])
    assert [f.name for f in mixed] == ["b-1.jsonl", "b-2.jsonl", "a.jsonl"]
    with pytest.raises(
        DataError, match=r"dataset.path='.*/c-\*.jsonl': the pattern matches no file"
    ):
        resolve_files([str(tmp_path / "a.jsonl"), str(tmp_path / "c-*.jsonl")])
    with pytest.raises(DataError, match="3 weights for 2 files"):
        mixture_weights([1, 1, 1], mixed[:2])


def test_config_checks_the_path_and_the_weights():
    def cfg(**kw: object) -> DatasetConfig:
        return DatasetConfig(name="x", **kw)  # type: ignore[arg-type]

    assert cfg(path=["a", "b"], mixture=[1.0, 0.0]).mixture == [1.0, 0.0]
    with pytest.raises(ConfigError, match=r"dataset.mixture=\[1.0, -1.0\]"):
        cfg(path=["a", "b"], mixture=[1.0, -1.0])
    with pytest.raises(ConfigError, match=r"dataset.mixture=\[0.0\]"):
        cfg(path="a", mixture=[0.0])
    with pytest.raises(ConfigError, match=r"dataset.path=\[\]"):
        cfg(path=[])
    with pytest.raises(ConfigError, match="dataset.workers=0"):
        cfg(path="a", workers=0)


def test_overrides_give_a_list_and_weights():
    cfg = validate(
        compose_train(["dataset=jsonl", "dataset.path=[a.jsonl,b.jsonl]", "dataset.mixture=[3,1]"])
    )
    assert cfg.dataset.path == ["a.jsonl", "b.jsonl"] and cfg.dataset.mixture == [3.0, 1.0]
    glob = validate(compose_train(["dataset=jsonl", "dataset.path='/d/train-*.jsonl'"]))
    assert glob.dataset.path == "/d/train-*.jsonl"


def test_each_epoch_holds_each_file_in_proportion():
    sizes, weights = [100, 300, 7], np.array([0.5, 0.3, 0.2])
    counts = mixture_counts(sizes, weights)
    assert counts.tolist() == [204, 122, 81] and counts.sum() == sum(sizes)
    starts = np.cumsum([0, *sizes])
    for epoch in range(3):
        order = mixture_order(sizes, weights, 1, epoch)
        files = np.searchsorted(starts, order, side="right") - 1
        assert np.bincount(files, minlength=3).tolist() == counts.tolist()
        # the small file repeats: each of its 7 examples 11 or 12 times
        assert set(Counter(order[files == 2].tolist()).values()) <= {11, 12}
        # the large one gives 122 different examples
        assert len(set(order[files == 1].tolist())) == 122
    np.testing.assert_array_equal(
        mixture_order(sizes, weights, 1, 0), mixture_order(sizes, weights, 1, 0)
    )
    assert not np.array_equal(
        mixture_order(sizes, weights, 1, 0), mixture_order(sizes, weights, 1, 1)
    )
    assert not np.array_equal(
        mixture_order(sizes, weights, 1, 0), mixture_order(sizes, weights, 2, 0)
    )


def test_draws_follow_the_weights_at_every_stretch():
    """Any 500 consecutive draws hold each file close to its weight: within 6 standard
    deviations of a binomial draw (seeded, so it cannot flake; a draw that grouped the
    files would be far outside)."""
    sizes, weights = [1000, 1000, 1000], np.array([0.6, 0.3, 0.1])
    order = np.concatenate([mixture_order(sizes, weights, 0, e) for e in range(3)])
    files = order // 1000
    window = 500
    for start in range(0, len(files) - window, window):
        counts = np.bincount(files[start : start + window], minlength=3)
        expected = weights * window
        sigma = np.sqrt(window * weights * (1 - weights))
        assert (np.abs(counts - expected) < 6 * sigma).all(), (start, counts)


def two_files(tmp_path: Path) -> tuple[Path, Path]:
    """File a: sums below 30 (60 traces); file b: 20 prompt/completion pairs."""
    a = write_jsonl(tmp_path / "a.jsonl", addition_traces(60))
    b = write_jsonl(
        tmp_path / "b.jsonl", [{"prompt": f"Reverse {i}", "completion": "x"} for i in range(20)]
    )
    return a, b


def mixture_cfg(tmp_path: Path, mixture: list[float] | None, **kw: object) -> DatasetConfig:
    a, b = two_files(tmp_path)
    return DatasetConfig(
        name="jsonl",
        path=[str(a), str(b)],
        mixture=mixture,
        valid_fraction=0.0,
        tokenizer=str(DEV_DATA / "tokenizer.json"),
        pack=False,
        cache_dir=str(tmp_path / "cache"),
        **kw,  # type: ignore[arg-type]
    )


def row_files(data, n_batches: int) -> list[str]:
    """Which file each row's example came from: a trace of file a has an answer marker."""
    answer = data.tokenizer.answer_id
    out = []
    for _ in range(n_batches):
        inputs = next(data.train)["inputs"]
        out += ["a" if (row == answer).any() else "b" for row in inputs]
    return out


def test_a_mixture_draws_the_files_in_its_proportions(tmp_path):
    data = load_data(mixture_cfg(tmp_path, [1.0, 3.0]), rows=8, seq_len=64, eval_batches=1, seed=0)
    assert data.train_examples == 80
    epoch = Counter(row_files(data, 10))  # 80 rows: one epoch of 80 draws
    assert epoch == {"a": 20, "b": 60}  # 1:3, the pairs file repeated three times over
    plain = load_data(mixture_cfg(tmp_path, None), rows=8, seq_len=64, eval_batches=1, seed=0)
    assert Counter(row_files(plain, 10)) == {"a": 60, "b": 20}  # every example once


def test_a_mixture_resumes_exactly_and_its_weights_are_part_of_the_state(tmp_path):
    cfg = mixture_cfg(tmp_path, [2.0, 1.0])
    first = load_data(cfg, rows=4, seq_len=64, eval_batches=1, seed=3)
    for _ in range(13):  # into the second epoch of 80 draws
        next(first.train)
    saved = first.train.state
    want = [next(first.train)["inputs"] for _ in range(30)]
    again = load_data(cfg, rows=4, seq_len=64, eval_batches=1, seed=3)
    again.train.restore(saved)
    for batch in want:
        np.testing.assert_array_equal(next(again.train)["inputs"], batch)
    other = load_data(mixture_cfg(tmp_path, [1.0, 2.0]), rows=4, seq_len=64, eval_batches=1, seed=3)
    assert other.train.state.data_key != saved.data_key
    with pytest.raises(DataError, match="dataset.mixture changed"):
        other.train.restore(saved)
    # the mixture reads the same token caches: it changes the order, not the tokens
    assert len(cache_folders(tmp_path / "cache")) == 2


def test_the_data_key_is_the_same_with_or_without_the_cache(tmp_path):
    cfg = mixture_cfg(tmp_path, [1.0, 1.0])
    cached = load_data(cfg, rows=4, seq_len=64, eval_batches=1, seed=0)
    memory = load_data(replace(cfg, cache_dir=None), rows=4, seq_len=64, eval_batches=1, seed=0)
    assert cached.train.state.data_key == memory.train.state.data_key
    for _ in range(5):
        np.testing.assert_array_equal(next(cached.train)["inputs"], next(memory.train)["inputs"])


def test_held_out_examples_come_from_all_files(tmp_path):
    cfg = mixture_cfg(tmp_path, None)
    cfg.valid_fraction = 0.25
    data = load_data(cfg, rows=4, seq_len=64, eval_batches=8, seed=0)
    assert (data.train_examples, data.valid_examples) == (60, 20)


def test_a_file_of_weight_zero_gives_nothing_and_an_empty_one_cannot_be_drawn():
    order = mixture_order([5, 5], np.array([1.0, 0.0]), 0, 0)
    assert sorted(order.tolist()) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    with pytest.raises(DataError, match="gives weight to file 1, which has no examples"):
        mixture_order([5, 0], np.array([0.5, 0.5]), 0, 0)
    with pytest.raises(DataError, match="empty list"):
        resolve_files([])
