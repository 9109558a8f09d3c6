"""Reading, rendering, tokenizing and batching, on concrete examples."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.helpers.data import addition_traces, trace, write_jsonl
from tunixrt.config import ConfigError, DatasetConfig
from tunixrt.data import (
    BatchIterator,
    DataError,
    IteratorState,
    Rendered,
    TextTokenizer,
    fixed_batches,
    read_eval_items,
    read_examples,
    render,
)
from tunixrt.data.pipeline import generated_traces, load_data, only_families
from tunixrt.data.schema import Chat, Pair, Step, Trace
from tunixrt.data.synthetic.build import held_out_problems, problem_key
from tunixrt.data.synthetic.words import LONG_WORDS, SHORT_WORDS


@pytest.fixture(scope="module")
def tok(small_tokenizer) -> TextTokenizer:
    return TextTokenizer.from_file(small_tokenizer)


def test_reads_all_three_record_shapes(tmp_path):
    path = write_jsonl(
        tmp_path / "d.jsonl",
        [
            trace("What is 2 + 3?", ["2 + 3 = 5."], "5"),
            {"prompt": "Reverse abc", "completion": "cba"},
            {
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "yo"},
                ]
            },
            "",  # blank lines are skipped
        ],
    )
    records = read_examples(path)
    assert [type(r) for r in records] == [Trace, Pair, Chat]


@pytest.mark.parametrize(
    "line, lineno, words",
    [
        ('{"prompt": "a", "steps": [], "final_answer": ', 2, "invalid JSON"),
        ('{"steps": [], "final_answer": "1"}', 2, "'prompt'"),
        ('{"completion": "x"}', 2, "'prompt'"),
        (
            '{"prompt": "a", "steps": [{"i": "0", "type": "t", "content": "c"}], '
            '"final_answer": "1"}',
            2,
            "steps[0]",
        ),
        ("[1, 2]", 2, "JSON object"),
        ('{"messages": [{"role": "user", "content": "hi"}]}', 2, "assistant"),
    ],
)
def test_bad_line_names_file_and_line(tmp_path, line, lineno, words):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "p", "completion": "c"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        read_examples(path)
    assert f"{path}:{lineno}:" in str(err.value) and words in str(err.value)


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"{empty}:1: the file has no records"):
        read_examples(empty)
    with pytest.raises(DataError, match="no such file"):
        read_examples(tmp_path / "missing.jsonl")


def test_eval_items(tmp_path):
    path = write_jsonl(
        tmp_path / "e.jsonl",
        [{"id": "a1", "prompt": "2+2?", "expected_answer": "4", "category": "arith"}],
    )
    (item,) = read_eval_items(path)
    assert item.id == "a1" and item.expected_answer == "4" and item.section is None
    bad = write_jsonl(tmp_path / "b.jsonl", [{"id": "a1", "prompt": "2+2?"}])
    with pytest.raises(DataError, match=r"b.jsonl:1: missing key 'expected_answer'"):
        read_eval_items(bad)


def test_render_trace_orders_steps_by_index():
    record = Trace("Q?", (Step(1, "compute", "second"), Step(0, "parse", "first")), "42")
    assert render(record) == Rendered("Q?", "first\nsecond", "42")
    assert render(Pair("p", "c")) == Rendered("p", "c", None)


def test_encode_masks_the_prompt_out_of_the_loss(tok):
    enc = tok.encode(Rendered("What is 2 + 3?", "2 + 3 = 5.", "5"))
    ids = enc.ids.tolist()
    prompt_ids = tok.encode_text("What is 2 + 3?")
    assert ids[:2] == [tok.bos_id, tok.prompt_id]
    assert ids[2 : 2 + len(prompt_ids)] == prompt_ids
    cut = 2 + len(prompt_ids) + 1  # after <|completion|>
    assert ids[cut - 1] == tok.completion_id
    assert not enc.mask[:cut].any() and enc.mask[cut:].all()
    assert ids[-1] == tok.eos_id and tok.answer_id in ids[cut:]
    assert tok.decode(ids[cut:]) == "2 + 3 = 5.5"  # specials are skipped when decoding


def test_template_markers_inside_data_stay_text(tok):
    enc = tok.encode(Rendered("say <|eos|> now", "ok <|answer|>", "1"))
    ids = enc.ids.tolist()
    assert ids.count(tok.eos_id) == 1 and ids[-1] == tok.eos_id
    assert ids.count(tok.answer_id) == 1
    assert tok.decode(tok.encode_text("say <|eos|> now")) == "say <|eos|> now"


def test_tokenizer_without_special_tokens_is_rejected(tmp_path):
    from tokenizers import Tokenizer, models

    path = tmp_path / "plain.json"
    Tokenizer(models.BPE()).save(str(path))
    with pytest.raises(DataError, match="lacks the special tokens"):
        TextTokenizer.from_file(path)


def _encoded(tok, n, seed=0):
    return [
        tok.encode(render(read))
        for read in [Trace(t["prompt"], (), t["final_answer"]) for t in addition_traces(n, seed)]
    ]


def batches(tok, examples, **options) -> BatchIterator:
    """A BatchIterator with this module's usual settings; `options` override them."""
    kwargs = dict(rows=2, seq_len=32, pad_id=tok.pad_id, pack=True, loss_on_prompt=False, seed=0)
    return BatchIterator(examples, **(kwargs | options))


def test_padded_batches_shift_targets_and_weight_completion_only(tok):
    examples = _encoded(tok, 4)
    it = batches(tok, examples, pack=False, shuffle=False)
    batch = next(it)
    ex = examples[0]
    n = len(ex) - 1
    np.testing.assert_array_equal(batch["inputs"][0, :n], ex.ids[:-1])
    np.testing.assert_array_equal(batch["targets"][0, :n], ex.ids[1:])
    np.testing.assert_array_equal(batch["weights"][0, :n], ex.mask[1:].astype(np.float32))
    assert (batch["segment_ids"][0, :n] == 1).all() and (batch["segment_ids"][0, n:] == 0).all()
    assert (batch["weights"][0, n:] == 0).all() and (batch["inputs"][0, n:] == tok.pad_id).all()
    np.testing.assert_array_equal(batch["positions"][0, :n], np.arange(n))


def test_packing_keeps_examples_whole_and_restarts_positions(tok):
    examples = _encoded(tok, 20)
    it = batches(tok, examples, rows=3, seq_len=48, shuffle=False)
    batch = next(it)
    seg, pos = batch["segment_ids"][0], batch["positions"][0]
    assert seg.max() >= 2  # several examples share the row
    for s in range(1, seg.max() + 1):
        where = np.flatnonzero(seg == s)
        np.testing.assert_array_equal(pos[where], np.arange(len(where)))
        np.testing.assert_array_equal(batch["inputs"][0, where], examples[s - 1].ids[:-1])


def test_loss_on_prompt_weights_every_real_token(tok):
    examples = _encoded(tok, 4)
    it = batches(tok, examples, loss_on_prompt=True)
    batch = next(it)
    np.testing.assert_array_equal(batch["weights"] > 0, batch["segment_ids"] > 0)


def test_shuffle_is_deterministic_by_seed_and_restorable(tok):
    examples = _encoded(tok, 30)

    def make(seed):
        return batches(tok, examples, seq_len=40, seed=seed)

    a, b, c = make(1), make(1), make(2)
    first = [next(a)["inputs"] for _ in range(12)]  # crosses an epoch boundary
    assert a.state.epoch >= 1
    np.testing.assert_array_equal(np.stack(first), np.stack([next(b)["inputs"] for _ in range(12)]))
    assert not np.array_equal(first[0], next(c)["inputs"])
    resumed = make(1)
    mid = make(1)
    for _ in range(5):
        next(mid)
    resumed.restore(mid.state)
    np.testing.assert_array_equal(
        np.stack(first[5:]), np.stack([next(resumed)["inputs"] for _ in range(7)])
    )


def test_fixed_batches_make_one_pass(tok):
    examples = _encoded(tok, 5)
    fixed = fixed_batches(
        examples, count=10, rows=2, seq_len=32, pad_id=tok.pad_id, pack=False, loss_on_prompt=False
    )
    assert len(fixed) == 3  # 5 examples, 2 rows each, last row empty
    assert fixed[-1]["segment_ids"][1].sum() == 0


# ---------------------------------------------------------------------------- task families

BUNDLED = Path(__file__).parents[1] / "datasets" / "dev-reasoning"


def bundled_config(**kw: object) -> DatasetConfig:
    return DatasetConfig(
        name="dev_reasoning",
        path=str(BUNDLED / "train.jsonl"),
        valid_path=str(BUNDLED / "valid.jsonl"),
        tokenizer=str(BUNDLED / "tokenizer.json"),
        eval_path=str(BUNDLED / "eval.jsonl"),
        **kw,  # type: ignore[arg-type]
    )


def families_of(path: Path) -> list[str]:
    return [json.loads(line)["meta"]["family"] for line in path.read_text().splitlines()]


def test_families_keep_only_their_traces() -> None:
    cfg = bundled_config(families=["sorting", "gcd_lcm"])
    data = load_data(cfg, rows=4, seq_len=192, eval_batches=1, seed=0)
    counts = Counter(families_of(BUNDLED / "train.jsonl"))
    valid = Counter(families_of(BUNDLED / "valid.jsonl"))
    assert data.train_examples == counts["sorting"] + counts["gcd_lcm"]
    assert data.valid_examples == valid["sorting"] + valid["gcd_lcm"]


def test_families_that_match_nothing_name_the_file() -> None:
    with pytest.raises(DataError, match=r"train\.jsonl: no trace .*\['nope'\]"):
        only_families(
            read_examples(BUNDLED / "train.jsonl"), ["nope"], str(BUNDLED / "train.jsonl")
        )


def test_generated_traces_avoid_held_out_prompts_and_follow_the_seed() -> None:
    cfg = bundled_config(families=["sorting", "unit_conversion"], generate=300)
    first = generated_traces(cfg, seed=0)
    assert len(first) == 600
    assert Counter(t.meta["family"] for t in first) == {"sorting": 300, "unit_conversion": 300}
    held = {
        json.loads(line)["prompt"] for line in (BUNDLED / "eval.jsonl").read_text().splitlines()
    }
    held |= {
        json.loads(line)["prompt"] for line in (BUNDLED / "valid.jsonl").read_text().splitlines()
    }
    assert not held & {t.prompt for t in first}
    # nor is any the same problem as a held-out one in other words
    keys, _ = held_out_problems(json.loads((BUNDLED / "manifest.json").read_text()))
    assert not keys & {problem_key(t.meta["family"], t.meta["params"]) for t in first}
    assert [t.prompt for t in generated_traces(cfg, seed=0)] == [t.prompt for t in first]
    assert [t.prompt for t in generated_traces(cfg, seed=1)] != [t.prompt for t in first]
    # each drawn trace ends with its own answer, as the generator's traces do
    assert all(t.steps[-1].content == f"The answer is {t.final_answer}." for t in first)


def test_invented_words_replace_a_share_of_the_listed_words() -> None:
    listed = set(SHORT_WORDS) | set(LONG_WORDS)
    cfg = bundled_config(families=["string_reversal", "counting"], generate=600, invented_words=0.5)
    traces = generated_traces(cfg, seed=0)
    plain = generated_traces(bundled_config(families=cfg.families, generate=600), seed=0)
    words = []
    for t in traces:
        params = t.meta["params"]
        if "text" not in params:  # counting a list of numbers: no word
            assert params["kind"] in ("even", "greater")
            continue
        text = params["text"]
        words += text.split(" ")
        if t.meta["family"] == "string_reversal":
            assert t.final_answer == text[::-1]
        elif params["kind"] == "letter":
            assert t.final_answer == str(text.count(params["letter"]))
        else:
            assert t.final_answer == str(len(text))
        assert all(f"'{w}'" in t.prompt or f"'{text}'" in t.prompt for w in text.split(" "))
    invented = [w for w in words if w not in listed]
    assert 0.4 < len(invented) / len(words) < 0.6
    assert all(w.isalpha() and w.islower() and 3 <= len(w) <= 10 for w in invented)
    assert all(w in listed for t in plain for w in t.meta["params"].get("text", "").split(" ") if w)


def tally_reference(params: dict[str, Any]) -> tuple[list[str], list[str], list[bool]]:
    """The items a tallied counting trace goes through, the verdict written after each
    and whether it counts, computed from the problem's params."""
    if params["kind"] == "letter":
        letter = params["letter"]
        hits = [c == letter for c in params["text"]]
        verdicts = [f"vs {letter} {'yes' if hit else 'no'}" for hit in hits]
        return list(params["text"]), verdicts, hits
    items = params["items"]
    if params["kind"] == "even":
        hits = [x % 2 == 0 for x in items]
        return [str(x) for x in items], ["even" if hit else "odd" for hit in hits], hits
    threshold = params["threshold"]
    hits = [x > threshold for x in items]
    verdicts = [f"vs {threshold} {'yes' if hit else 'no'}" for hit in hits]
    return [str(x) for x in items], verdicts, hits


def test_tallied_counting_traces_count_one_item_at_a_time() -> None:
    cfg = bundled_config(families=["counting"], generate=300, tally_counts=True)
    traces = generated_traces(cfg, seed=0)
    kinds = Counter(t.meta["params"]["kind"] for t in traces)
    assert set(kinds) == {"length", "letter", "even", "greater"}
    for t in traces:
        params = t.meta["params"]
        if params["kind"] == "length":  # counting a word's letters keeps its trace
            continue
        items, verdicts, hits = tally_reference(params)
        tally = t.steps[1].content.split(": ", 1)[1].removesuffix(".")
        entries = [entry.split(" ") for entry in tally.split(", ")]
        assert [e[0] for e in entries] == items, t.steps[1].content
        assert [" ".join(e[1:-1]) for e in entries] == verdicts
        assert [int(e[-1]) for e in entries] == list(itertools.accumulate(hits))
        assert t.final_answer == str(sum(hits))
    plain = generated_traces(bundled_config(families=["counting"], generate=300), seed=0)
    assert not any("as I go" in step.content for t in plain for step in t.steps)


def test_tallied_counts_need_generated_traces() -> None:
    with pytest.raises(ConfigError, match=r"dataset\.tally_counts=True"):
        bundled_config(tally_counts=True)


@pytest.mark.parametrize(
    ("invented", "generate"), [(0.5, 0), (1.5, 10), (-0.1, 10)], ids=["no-generate", "high", "neg"]
)
def test_invented_words_need_generated_traces_and_a_share(invented: float, generate: int) -> None:
    with pytest.raises(ConfigError, match=r"dataset\.invented_words="):
        bundled_config(generate=generate, invented_words=invented)


def test_generated_traces_refuse_unknown_families() -> None:
    with pytest.raises(DataError, match=r"dataset\.families=\['sorting', 'nope'\].*\['nope'\]"):
        generated_traces(bundled_config(families=["sorting", "nope"], generate=5), seed=0)


def test_generated_data_trains_in_place_of_the_file() -> None:
    cfg = bundled_config(families=["sequence"], generate=40)
    data = load_data(cfg, rows=4, seq_len=192, eval_batches=1, seed=0)
    assert data.train_examples == 40


# ------------------------------------------------------------------------ batch encoding


def test_encode_many_equals_encoding_one_at_a_time(tok):
    rendered = [
        Rendered("What is 2 + 3?", "2 + 3 = 5.", "5"),
        Rendered("p", "", None),  # an empty completion still ends with <|eos|>
        Rendered("", "only reasoning <|eos|>", ""),
        Rendered("say <|answer|>", "a\nb", "x y"),
    ]
    many = tok.encode_many(rendered)
    for r, got in zip(rendered, many, strict=True):
        prompt = [tok.bos_id, tok.prompt_id, *tok.encode_text(r.prompt), tok.completion_id]
        completion = tok.encode_text(r.reasoning)
        if r.answer is not None:
            completion += [tok.answer_id, *tok.encode_text(r.answer)]
        assert got.ids.tolist() == prompt + completion + [tok.eos_id]
        assert got.mask.tolist() == [False] * len(prompt) + [True] * (len(completion) + 1)
    assert tok.encode_many([]) == []


# ------------------------------------------------------------------ shards of each batch


def varied(tok, n: int) -> list:
    """Examples of many lengths, some longer than a 32-token row."""
    rng = np.random.default_rng(0)
    words = ["7", "12 + 30", "reverse the words", "the answer is 42"]
    out = []
    for _ in range(n):
        text = " ".join(rng.choice(words, size=rng.integers(1, 12)))
        out.append(tok.encode(Rendered(text[:20], text, "1")))
    return out


@pytest.mark.parametrize("pack", [True, False])
def test_two_processes_shards_together_are_the_one_process_batch(tok, pack):
    examples = varied(tok, 53)
    assert max(len(e) for e in examples) > 33  # some rows truncate
    whole = batches(tok, examples, rows=4, pack=pack, seed=2)
    shards = [batches(tok, examples, rows=4, pack=pack, seed=2, shard=(p, 2)) for p in (0, 1)]
    for _ in range(30):  # across epochs
        want = next(whole)
        parts = [next(s) for s in shards]
        assert parts[0]["inputs"].shape == (2, 32)
        for key, value in want.items():
            np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), value)
        assert all(s.state == whole.state for s in shards)
        # each process counts the whole batch's real tokens, not only its own rows'
        real = np.count_nonzero(want["segment_ids"])
        assert whole.positions == shards[0].positions == shards[1].positions == real
    assert whole.state.epoch >= 1


def test_eval_batches_split_over_processes_as_well(tok):
    examples = varied(tok, 13)
    common = dict(count=5, rows=4, seq_len=32, pad_id=tok.pad_id, pack=True, loss_on_prompt=False)
    whole = fixed_batches(examples, **common)
    parts = [fixed_batches(examples, **common, shard=(p, 2)) for p in (0, 1)]
    assert len(whole) == len(parts[0]) == len(parts[1]) >= 2
    for want, a, b in zip(whole, *parts, strict=True):
        for key in want:
            np.testing.assert_array_equal(np.concatenate([a[key], b[key]]), want[key])


def test_a_shard_must_split_the_rows_evenly(tok):
    with pytest.raises(ValueError, match="3 rows cannot be split as shard 0 of 2"):
        batches(tok, _encoded(tok, 4), rows=3, shard=(0, 2))
    with pytest.raises(ValueError, match="shard 2 of 2"):
        batches(tok, _encoded(tok, 4), rows=4, shard=(2, 2))


def test_an_order_decides_each_epoch(tok):
    examples = _encoded(tok, 6)

    def order(seed: int, epoch: int) -> np.ndarray:
        return np.array([5, 5, 0] if epoch % 2 == 0 else [1])

    it = batches(tok, examples, rows=1, pack=False, order=order)
    firsts = [next(it)["inputs"][0, : len(examples[0]) - 1] for _ in range(5)]
    for got, i in zip(firsts, [5, 5, 0, 1, 5], strict=True):
        np.testing.assert_array_equal(got[: len(examples[i]) - 1], examples[i].ids[:-1])


def test_restoring_another_datas_state_is_refused(tok):
    examples = _encoded(tok, 6)
    it = batches(tok, examples, data_key="a" * 64)
    it.restore(IteratorState(seed=0, epoch=1, cursor=2, data_key="a" * 64))
    assert (it.state.epoch, it.state.cursor) == (1, 2)
    it.restore(IteratorState(seed=0, epoch=0, cursor=1))  # saved before keys were recorded
    with pytest.raises(DataError, match="the training data differ from the checkpoint's"):
        it.restore(IteratorState(seed=0, epoch=0, cursor=1, data_key="b" * 64))
    state = IteratorState(seed=0, epoch=3, cursor=4, data_key="c" * 64)
    assert IteratorState.from_dict(state.to_dict()) == state
    assert IteratorState.from_dict({"seed": 1, "epoch": 2, "cursor": 3}).data_key is None
