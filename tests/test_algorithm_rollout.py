"""Rollouts: groups of sampled completions, their fixed-shape layout (checked cell by
cell on a hand-made case) and their log-probabilities (against a per-token loop)."""

from __future__ import annotations

import numpy as np
import pytest
from flax import nnx

from tests.helpers.models import tiny_decoder_config
from tunixrt.algorithms.rollout import (
    Rollout,
    completion_batch,
    completion_logprobs,
    sample_groups,
    without_truncated,
)
from tunixrt.models import Decoder

EOS, PAD = 2, 0


@pytest.fixture(scope="module")
def model() -> Decoder:
    return Decoder(tiny_decoder_config(), rngs=nnx.Rngs(params=0))


def test_groups_repeat_each_prompt_and_draw_apart(model):
    prompts = [[5, 6, 7], [8, 9]]
    out = sample_groups(
        model, prompts, group_size=4, max_new_tokens=8, eos_id=EOS, temperature=1.0, seed=3
    )
    assert out.prompts == [prompts[0]] * 4 + [prompts[1]] * 4
    assert len(out.completions) == len(out.finished) == 8
    for ids, done in zip(out.completions, out.finished, strict=True):
        assert EOS not in ids and len(ids) <= 8 and done == (len(ids) < 8)
    # a random model's next-token distribution is broad: four draws of up to 8 tokens
    # from one prompt differ
    assert len({tuple(c) for c in out.completions[:4]}) > 1
    again = sample_groups(
        model, prompts, group_size=4, max_new_tokens=8, eos_id=EOS, temperature=1.0, seed=3
    )
    assert again.completions == out.completions  # the seed decides the draws
    greedy = sample_groups(
        model, prompts, group_size=3, max_new_tokens=8, eos_id=EOS, temperature=0.0
    )
    assert greedy.completions[0] == greedy.completions[1] == greedy.completions[2]
    with pytest.raises(ValueError, match="group_size"):
        sample_groups(model, prompts, group_size=0, max_new_tokens=8, eos_id=EOS, temperature=1)


def test_completion_batch_by_hand():
    rollout = Rollout(
        prompts=[[10, 11], [12]],
        completions=[[20, 21], [22, 23, 24]],
        finished=[True, False],
        group_size=1,
    )
    b = completion_batch(rollout, eos_id=EOS, pad_id=PAD, seq_len=5)
    # row 0: tokens 10 11 20 21 EOS; row 1: tokens 12 22 23 24 (cut by the limit, no EOS)
    np.testing.assert_array_equal(b.inputs, [[10, 11, 20, 21, PAD], [12, 22, 23, PAD, PAD]])
    np.testing.assert_array_equal(b.targets, [[11, 20, 21, EOS, PAD], [22, 23, 24, PAD, PAD]])
    np.testing.assert_array_equal(b.mask, [[0, 1, 1, 1, 0], [1, 1, 1, 0, 0]])
    np.testing.assert_array_equal(b.lengths, [3, 3])
    with pytest.raises(ValueError, match="seq_len"):
        completion_batch(rollout, eos_id=EOS, pad_id=PAD, seq_len=3)
    # row 1 was cut by the token limit: it leaves the loss, row 0 stays as it was
    kept = without_truncated(b, rollout)
    np.testing.assert_array_equal(kept.mask, [[0, 1, 1, 1, 0], [0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(kept.lengths, [3, 0])
    np.testing.assert_array_equal(kept.inputs, b.inputs)


def test_completion_logprobs_against_a_loop(model):
    rollout = Rollout([[5, 6, 7], [8]], [[9, 10], [11, 12, 13]], [True, False], 1)
    b = completion_batch(rollout, eos_id=EOS, pad_id=PAD, seq_len=8)
    got = np.asarray(completion_logprobs(model, b))
    for row, (prompt, new, done) in enumerate(
        zip(rollout.prompts, rollout.completions, rollout.finished, strict=True)
    ):
        tokens = [*prompt, *new, *([EOS] if done else [])]
        logits = np.asarray(model(np.array([tokens[:-1]], np.int32)))[0].astype(np.float64)
        for t in range(len(prompt) - 1, len(tokens) - 1):
            row_logits = logits[t] - logits[t].max()
            want = row_logits[tokens[t + 1]] - np.log(np.exp(row_logits).sum())
            assert got[row, t] == pytest.approx(want, abs=1e-5)
        assert np.all(got[row, : len(prompt) - 1] == 0) and np.all(got[row, len(tokens) - 1 :] == 0)
