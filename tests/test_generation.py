"""Tests for tunixrt.evaluation.generate: cached decoding equals full recomputation and
transformers' greedy generate, batches and buckets, sampling, EOS and stop strings."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from tests.helpers.hf import FAMILIES, VOCAB, build_hf_model, save_tokenizer
from tests.helpers.models import tiny_decoder_config
from tunixrt.data.chat import ChatTokenizer
from tunixrt.data.render import Rendered
from tunixrt.data.tokenize import TextTokenizer
from tunixrt.evaluation import (
    compiled_programs,
    cut_at_stop,
    decode_completion,
    generate_text,
    generate_tokens,
    prompt_ids,
)
from tunixrt.models import Decoder
from tunixrt.models.hf import load_pretrained

REPO = Path(__file__).resolve().parents[1]
BUNDLED_TOKENIZER = REPO / "datasets" / "dev-reasoning" / "tokenizer.json"

# init_std 0.3: sharp distributions, so greedy choices are far from ties.
GQA = tiny_decoder_config(init_std=0.3)
GEMMA2_LIKE = dataclasses.replace(
    GQA,
    n_layers=3,
    sliding_window=4,
    sliding_layers=(0, 2),
    attn_softcap=5.0,
    final_softcap=8.0,
    qk_norm=True,
    sandwich_norm=True,
)
PROMPTS = [[5, 9, 3], [7, 1, 8, 2, 6, 4, 11, 12, 13], [20, 21, 22, 23, 24]]


def make(cfg=GQA, seed=0):
    return Decoder(cfg, rngs=nnx.Rngs(seed))


@nnx.jit
def forward(model, tokens):
    return model(tokens)


def uncached_greedy(model, prompt, n):
    """Greedy decoding that runs the full forward pass over the whole sequence each step.

    The sequence is right-padded to one length (causal attention: padding after a token
    does not change its logits), so the reference compiles once.
    """
    seq = list(prompt)
    for _ in range(n):
        padded = np.zeros((1, 32), np.int32)
        padded[0, : len(seq)] = seq
        logits = forward(model, jnp.asarray(padded))
        seq.append(int(jnp.argmax(logits[0, len(seq) - 1])))
    return seq[len(prompt) :]


# ---------------------------------------------------------------- cache and batching


@pytest.mark.parametrize("cfg", [GQA, GEMMA2_LIKE], ids=["gqa", "window_softcap_qknorm"])
def test_cached_greedy_equals_uncached(cfg):
    model = make(cfg)
    got = generate_tokens(model, PROMPTS, max_new_tokens=8, eos_id=None)
    assert got == [uncached_greedy(model, p, 8) for p in PROMPTS]
    assert len({tuple(row) for row in got}) == len(PROMPTS)  # not a degenerate model


def test_batch_of_different_lengths_equals_each_alone():
    model = make(GEMMA2_LIKE)
    batched = generate_tokens(model, PROMPTS, max_new_tokens=6, eos_id=None)
    assert batched == [
        generate_tokens(model, [p], max_new_tokens=6, eos_id=None)[0] for p in PROMPTS
    ]


def test_new_lengths_in_the_same_bucket_do_not_recompile():
    model = make(seed=3)
    generate_tokens(model, [[1, 2, 3], [4, 5]], max_new_tokens=5, eos_id=None)
    before = compiled_programs()
    # Other prompt lengths (bucket 8), another batch size (bucket 2) and max_new_tokens.
    generate_tokens(model, [[1, 2, 3, 4, 5, 6, 7], [1]], max_new_tokens=4, eos_id=None)
    generate_tokens(model, [[9], [8, 7, 6, 5, 4, 3]], max_new_tokens=6, eos_id=None)
    assert compiled_programs() == before
    generate_tokens(model, [list(range(1, 12)), [1]], max_new_tokens=5, eos_id=None)  # 16
    assert compiled_programs() == before + 1


def test_prompt_past_max_seq_len_is_refused():
    with pytest.raises(ValueError, match="max_seq_len"):
        generate_tokens(make(), [[1] * 60], max_new_tokens=5, eos_id=None)


# ---------------------------------------------------------------- transformers


@pytest.fixture(scope="module")
def hf_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf_generate")
    cases = {}
    for family in FAMILIES:
        model = build_hf_model(family)
        model.save_pretrained(root / family)
        cases[family] = (root / family, model)
    return cases


def hf_greedy(model, prompt, n):
    model.generation_config.eos_token_id = None  # run the full n tokens, as eos_id=None does
    model.generation_config.pad_token_id = 0
    ids = torch.tensor([prompt], dtype=torch.long)
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            do_sample=False,
            max_new_tokens=n,
        )
    return out[0, len(prompt) :].tolist()


@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_equals_transformers_generate(hf_folders, family):
    path, hf = hf_folders[family]
    rng = np.random.default_rng(7)
    # 11 + 10 tokens run past the sliding window (8) of mistral and gemma2.
    prompts = [rng.integers(3, VOCAB, n).tolist() for n in (3, 7, 11)]
    got = generate_tokens(load_pretrained(path), prompts, max_new_tokens=10, eos_id=None)
    assert got == [hf_greedy(hf, p, 10) for p in prompts]


# ---------------------------------------------------------------- sampling and stopping


def test_sampling_is_reproducible_from_the_seed():
    model = make(seed=1)
    kwargs = dict(max_new_tokens=8, eos_id=None, temperature=1.5, top_k=20, top_p=0.95)
    first = generate_tokens(model, PROMPTS, seed=11, **kwargs)
    assert generate_tokens(model, PROMPTS, seed=11, **kwargs) == first
    assert generate_tokens(model, PROMPTS, seed=12, **kwargs) != first
    assert first != generate_tokens(model, PROMPTS, max_new_tokens=8, eos_id=None)


def test_top_k_1_and_tiny_top_p_equal_greedy():
    model = make(seed=2)
    greedy = generate_tokens(model, PROMPTS, max_new_tokens=8, eos_id=None)
    for kwargs in (dict(top_k=1), dict(top_p=1e-6)):
        sampled = generate_tokens(
            model, PROMPTS, max_new_tokens=8, eos_id=None, temperature=2.0, seed=5, **kwargs
        )
        assert sampled == greedy


def test_sampling_without_a_cut_draws_from_the_whole_vocabulary():
    # no top_k or top_p skips the filter (and its sort); a filter that keeps every
    # token must draw the same tokens from the same seed
    model = make(seed=3)
    kwargs = dict(max_new_tokens=8, eos_id=None, temperature=1.0, seed=9)
    plain = generate_tokens(model, PROMPTS, **kwargs)
    assert plain == generate_tokens(model, PROMPTS, top_k=model.cfg.vocab_size, **kwargs)
    assert plain != generate_tokens(model, PROMPTS, top_k=2, **kwargs)


def test_eos_stops_its_row_and_is_excluded():
    model = make(seed=4)
    greedy = generate_tokens(model, PROMPTS, max_new_tokens=8, eos_id=None)
    eos = greedy[0][3]
    got = generate_tokens(model, PROMPTS, max_new_tokens=8, eos_id=eos)
    for row, full in zip(got, greedy, strict=True):
        expected = full[: full.index(eos)] if eos in full else full
        assert row == expected
    assert eos not in got[0] and len(got[0]) <= 3


def test_generate_text_renders_like_training_and_cuts_at_stop():
    tokenizer = TextTokenizer.from_file(BUNDLED_TOKENIZER)
    cfg = dataclasses.replace(GQA, vocab_size=tokenizer.vocab_size, max_seq_len=64)
    model = make(cfg)
    prompt = "What is 2 + 3?"
    assert prompt_ids(tokenizer, prompt) == tokenizer.encode_prompt(prompt)
    ids = generate_tokens(
        model, [prompt_ids(tokenizer, prompt)], max_new_tokens=6, eos_id=tokenizer.eos_id
    )[0]
    full = decode_completion(tokenizer, ids)
    assert generate_text(model, tokenizer, [prompt], max_new_tokens=6) == [full]
    if full.strip():
        stop = full.strip()[-1]
        cut = generate_text(model, tokenizer, [prompt], max_new_tokens=6, stop=[stop])[0]
        assert cut == full[: full.index(stop)]
    assert cut_at_stop("a b. c\nd", ["\n", "."]) == "a b"
    assert cut_at_stop("abc", None) == "abc"


def test_decode_completion_keeps_the_answer_marker():
    tokenizer = TextTokenizer.from_file(BUNDLED_TOKENIZER)
    encoded = tokenizer.encode(Rendered("p", "two plus three", "5"))
    completion = encoded.ids[encoded.mask].tolist()[:-1]  # without EOS
    assert decode_completion(tokenizer, completion).endswith("<|answer|> 5")


def test_chat_tokenizer_prompt_is_the_training_prompt(tmp_path):
    save_tokenizer(tmp_path)
    tokenizer = ChatTokenizer.from_folder(tmp_path)
    encoded = tokenizer.encode(Rendered("t5 t6", "t9", None))
    prompt = encoded.ids[~encoded.mask].tolist()
    assert prompt_ids(tokenizer, "t5 t6") == prompt
