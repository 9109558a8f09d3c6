"""The piece table's ids against the tokenizer's own `encode`, text by text."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from tunixrt.data import pieces
from tunixrt.data.pieces import PieceEncoder, splits_like_gpt2
from tunixrt.data.tokenize import TextTokenizer

BUNDLED = Path(__file__).resolve().parents[1] / "datasets" / "dev-reasoning"

# Fragments that meet the split's edge cases: contractions (and one in capitals, which
# GPT-2's expression does not treat as one), runs of spaces before words and at the end,
# tabs, CR LF, control and non-ASCII characters (which take the tokenizer's own path), and
# template markers written as text.
FRAGMENTS = [
    "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'", " ", "  ", "   ", "\t", "\n",
    "\r\n", "\n\n", "\x0b", "\x0c", "\x1c", "é", "½", "²", "日本", "abc", "Word", "x",
    "123", "4.5", "-7", "$", "!?", "...", "(", ")", ",", "<|eos|>", "<|answer|>", "don",
    "it", "1,000", "0.5", "a'b",
]  # fmt: skip


@pytest.fixture(scope="module")
def bundled() -> Tokenizer:
    tok = TextTokenizer.from_file(BUNDLED / "tokenizer.json")
    return tok._tok


@pytest.fixture(scope="module")
def byte_level() -> Tokenizer:
    """The bundled tokenizer without merges (experiment=learn_check): one token a byte."""
    return TextTokenizer.from_file(BUNDLED / "tokenizer-bytes.json")._tok


@pytest.fixture(scope="module")
def trained() -> Tokenizer:
    """A byte-level BPE trained on the random fragments, so that it has merges for runs of
    spaces, newlines and contractions (the bundled vocabulary has none for whitespace)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=["<|eos|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(random_texts(3000, seed=3), trainer)
    tok.encode_special_tokens = True
    return tok


def reference(tok: Tokenizer, text: str) -> list[int]:
    return list(tok.encode(text, add_special_tokens=False).ids)


def random_texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choices(FRAGMENTS, k=rng.randint(0, 12))) for _ in range(n)]


def bundled_texts() -> list[str]:
    texts = []
    for name in ("train.jsonl", "eval.jsonl"):
        for line in (BUNDLED / name).read_text().splitlines()[:600]:
            record = json.loads(line)
            texts.append(record["prompt"])
            steps = record.get("steps", [])
            texts.append("\n".join(f"Step {s['i']}: {s['content']}" for s in steps))
            texts.append(record.get("final_answer", record.get("expected_answer", "")))
    return texts


def test_the_bundled_tokenizer_takes_the_piece_table(bundled: Tokenizer) -> None:
    assert splits_like_gpt2(bundled)


def test_the_trained_tokenizer_merges_whitespace(trained: Tokenizer) -> None:
    assert splits_like_gpt2(trained)
    assert len(trained.encode("a   \n\n  b").ids) < len("a   \n\n  b")


@pytest.mark.parametrize(
    "tokenizer, source",
    [
        ("bundled", "bundled data"),
        ("bundled", "random fragments"),
        ("trained", "random fragments"),
        ("byte_level", "bundled data"),
        ("byte_level", "random fragments"),
    ],
)
def test_ids_equal_the_tokenizers_own(
    request: pytest.FixtureRequest, tokenizer: str, source: str
) -> None:
    tok = request.getfixturevalue(tokenizer)
    texts = bundled_texts() if source == "bundled data" else random_texts(3000, seed=0)
    got = PieceEncoder(tok).encode(texts)
    assert len(got) == len(texts)
    for text, ids in zip(texts, got, strict=True):
        assert ids == reference(tok, text), repr(text)


def test_a_full_piece_table_starts_again(
    bundled: Tokenizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pieces, "MAX_PIECES", 5)
    encoder = PieceEncoder(bundled)
    texts = random_texts(300, seed=1)
    assert encoder.encode(texts) == [reference(bundled, t) for t in texts]
    assert len(encoder._pieces) <= 5


def changed(tok: Tokenizer, change: str) -> Tokenizer:
    """A copy of `tok` that the piece table must not serve."""
    copy = Tokenizer.from_str(tok.to_str())
    copy.encode_special_tokens = tok.encode_special_tokens
    if change == "normalizer":
        copy.normalizer = normalizers.Lowercase()
    elif change == "added word":
        copy.add_tokens(["ord"])
    elif change == "specials matched":
        copy.encode_special_tokens = False
    elif change == "prefix space":
        spec = json.loads(tok.to_str())
        spec["pre_tokenizer"]["add_prefix_space"] = True
        copy = Tokenizer.from_str(json.dumps(spec))
        copy.encode_special_tokens = True
    elif change == "truncation":
        copy.enable_truncation(4)
    return copy


@pytest.mark.parametrize(
    "change", ["normalizer", "added word", "specials matched", "prefix space", "truncation"]
)
def test_other_tokenizers_encode_themselves(bundled: Tokenizer, change: str) -> None:
    tok = changed(bundled, change)
    assert not splits_like_gpt2(tok)
    texts = random_texts(200, seed=2) + ["Word <|eos|> words"]
    assert PieceEncoder(tok).encode(texts) == [reference(tok, t) for t in texts]
