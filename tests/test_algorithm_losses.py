"""GRPO's and DPO's loss pieces and the rewards against hand computations (plain
`math`, written out term by term), and the policy gradient where the clip decides it."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tunixrt.algorithms.dpo import dpo_loss
from tunixrt.algorithms.grpo import equal_reward_share, group_advantages, kl_k3, policy_loss
from tunixrt.algorithms.logprobs import sequence_logprobs, token_logprobs
from tunixrt.algorithms.rewards import (
    Sample,
    correct,
    overlong,
    score_samples,
    well_formed,
)
from tunixrt.data.tokenize import ANSWER_MARKER


def test_group_advantages_by_hand():
    rewards = jnp.array([[1.0, 0.0, 0.0, 1.0], [2.0, 2.0, 2.0, 2.0], [0.0, 0.0, 0.0, 3.0]])
    got = np.asarray(group_advantages(rewards, eps=0.0 + 1e-12))
    # group 1: mean 0.5, population std 0.5 -> +-1
    np.testing.assert_allclose(got[0], [1.0, -1.0, -1.0, 1.0], atol=1e-6)
    # group 2: all equal -> 0, not NaN
    np.testing.assert_allclose(got[1], [0.0, 0.0, 0.0, 0.0], atol=1e-6)
    # group 3: mean 0.75, std sqrt((3 * 0.75^2 + 2.25^2) / 4) = sqrt(1.6875)
    std = math.sqrt((3 * 0.75**2 + 2.25**2) / 4)
    np.testing.assert_allclose(got[2], [-0.75 / std] * 3 + [2.25 / std], rtol=1e-5)
    unscaled = np.asarray(group_advantages(rewards, scale="none"))
    np.testing.assert_allclose(unscaled[2], [-0.75, -0.75, -0.75, 2.25], atol=1e-6)
    with pytest.raises(ValueError, match="scale"):
        group_advantages(rewards, scale="batch")


def test_equal_reward_share():
    rewards = jnp.array([[1.0, 1.0], [0.0, 1.0], [0.0, 0.0], [0.5, 0.25]])
    assert float(equal_reward_share(rewards)) == pytest.approx(0.5)


def test_k3_by_hand():
    # new log-prob -1.0, reference -1.5: delta = -0.5
    want = math.exp(-0.5) + 0.5 - 1.0
    assert float(kl_k3(jnp.array(-1.0), jnp.array(-1.5))) == pytest.approx(want, rel=1e-6)
    assert float(kl_k3(jnp.array(-2.0), jnp.array(-2.0))) == 0.0
    deltas = jnp.linspace(-3, 3, 13)
    assert bool(jnp.all(kl_k3(jnp.zeros(13), deltas) >= 0))


def test_policy_loss_clips_by_hand():
    # two completions of two tokens each; the second token of row 1 is padding
    logp = jnp.array([[math.log(0.6), math.log(0.5)], [math.log(0.3), math.log(0.9)]])
    old = jnp.array([[math.log(0.4), math.log(0.5)], [math.log(0.5), math.log(0.1)]])
    ref = old
    adv = jnp.array([1.0, -2.0])
    mask = jnp.array([[1.0, 1.0], [1.0, 0.0]])
    out = policy_loss(logp, old, ref, adv, mask, eps_low=0.2, eps_high=0.2, beta=0.0)
    # row 0 token 0: ratio 1.5, A=+1 -> min(1.5, 1.2) = 1.2 (clipped)
    # row 0 token 1: ratio 1.0, A=+1 -> 1.0
    # row 1 token 0: ratio 0.6, A=-2 -> min(-1.2, 0.8 * -2 = -1.6) = -1.6 (clipped)
    objective = [1.2, 1.0, -1.6]
    assert float(out.loss) == pytest.approx(-sum(objective) / 3, rel=1e-5)
    assert float(out.clip_fraction) == pytest.approx(2 / 3)
    assert float(out.ratio) == pytest.approx((1.5 + 1.0 + 0.6) / 3, rel=1e-5)
    assert float(out.kl) == pytest.approx(
        ((0.4 / 0.6 - math.log(0.4 / 0.6) - 1) + 0 + (0.5 / 0.3 - math.log(0.5 / 0.3) - 1)) / 3,
        rel=1e-5,
    )
    with_kl = policy_loss(logp, old, ref, adv, mask, beta=0.5)
    assert float(with_kl.loss) == pytest.approx(float(out.loss) + 0.5 * float(out.kl), rel=1e-5)


def test_clip_higher_moves_only_the_upper_bound():
    logp, old = jnp.log(jnp.array([[0.75]])), jnp.log(jnp.array([[0.5]]))  # ratio 1.5
    mask = jnp.ones((1, 1))
    up = policy_loss(logp, old, old, jnp.array([1.0]), mask, eps_low=0.2, eps_high=0.28, beta=0)
    assert float(up.loss) == pytest.approx(-1.28, rel=1e-6)
    down = policy_loss(old, logp, logp, jnp.array([-1.0]), mask, eps_low=0.2, eps_high=0.28)
    # ratio 1/1.5 = 0.667 < 0.8 with A<0: the clipped term -0.8 is the smaller one
    assert float(down.clip_fraction) == 1.0
    assert float(down.loss) == pytest.approx(0.8 + 0.04 * float(down.kl), rel=1e-5)


def test_the_gradient_is_zero_where_the_clip_holds():
    old = jnp.log(jnp.array([[0.5, 0.5]]))
    mask = jnp.ones((1, 2))

    def loss(logp):
        return policy_loss(logp, old, old, jnp.array([1.0]), mask, beta=0.0).loss

    grad = jax.grad(loss)(jnp.log(jnp.array([[0.75, 0.55]])))  # ratios 1.5 (clipped), 1.1
    assert float(grad[0, 0]) == 0.0
    # d/dlogp of -(ratio * A) / 2 tokens = -ratio / 2
    assert float(grad[0, 1]) == pytest.approx(-1.1 / 2, rel=1e-5)


def test_token_and_sequence_logprobs_by_hand():
    logits = jnp.array([[[0.0, math.log(3.0)], [math.log(2.0), math.log(2.0)]]])
    targets = jnp.array([[1, 0]])
    got = token_logprobs(logits, targets)
    np.testing.assert_allclose(np.asarray(got), [[math.log(0.75), math.log(0.5)]], rtol=1e-6)
    total = sequence_logprobs(got, jnp.array([[0.0, 1.0]]))
    assert float(total[0]) == pytest.approx(math.log(0.5), rel=1e-6)


def test_dpo_loss_by_hand():
    chosen, rejected = jnp.array([-10.0, -4.0]), jnp.array([-12.0, -3.0])
    ref_chosen, ref_rejected = jnp.array([-11.0, -4.0]), jnp.array([-11.0, -4.0])
    out = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta=0.5)
    # pair 0: 0.5 * ((-10 + 11) - (-12 + 11)) = 1.0; pair 1: 0.5 * (0 - 1) = -0.5
    margins = [1.0, -0.5]
    want = sum(math.log1p(math.exp(-m)) for m in margins) / 2
    assert float(out.loss) == pytest.approx(want, rel=1e-6)
    assert float(out.margin) == pytest.approx(0.25)
    assert float(out.accuracy) == pytest.approx(0.5)
    # at the reference the loss is log 2 whatever beta
    same = dpo_loss(ref_chosen, ref_rejected, ref_chosen, ref_rejected, beta=3.0)
    assert float(same.loss) == pytest.approx(math.log(2.0), rel=1e-6)


# -- rewards ------------------------------------------------------------------------------


def sample(text: str, expected: str = "42", tokens: int = 10, finished: bool = True) -> Sample:
    return Sample(text, expected, tokens, finished)


def test_correct_and_format_rewards():
    marked = sample(f"6 * 7 = 42\n{ANSWER_MARKER} 42")
    sentence = sample("6 * 7 = 42. The answer is 42.")
    last_line = sample("6 * 7\n42")  # correct by the last-line rule, but not marked
    cut = sample(f"6 * 7 = 42\n{ANSWER_MARKER} 42", finished=False)
    wrong = sample(f"6 * 7 = 43\n{ANSWER_MARKER} 43")
    empty = sample(f"6 * 7 = 42\n{ANSWER_MARKER} ")
    assert [correct(s) for s in (marked, sentence, last_line, cut, wrong)] == [1, 1, 1, 1, 0]
    assert [well_formed(s) for s in (marked, sentence, last_line, cut, wrong, empty)] == [
        1, 1, 0, 0, 1, 0,
    ]  # fmt: skip


@pytest.mark.parametrize(
    "tokens, want", [(0, 0.0), (80, 0.0), (90, -0.5), (99, -0.95), (100, -1.0), (130, -1.0)]
)
def test_overlong_penalty_by_hand(tokens, want):
    # no penalty up to 100 - 20 = 80 tokens, then 1/20 per token down to -1 at 100
    assert overlong(tokens, 100, 20) == pytest.approx(want)


def test_weighted_sum_keeps_each_reward_apart():
    samples = [
        sample(f"{ANSWER_MARKER} 42", tokens=90),
        sample(f"{ANSWER_MARKER} 41", tokens=10),
        sample("42", tokens=100, finished=False),
    ]
    scored = score_samples(
        samples, {"correct": 1.0, "format": 0.5, "length": 2.0}, max_tokens=100, length_buffer=20
    )
    np.testing.assert_allclose(scored.parts["correct"], [1, 0, 1])
    np.testing.assert_allclose(scored.parts["format"], [1, 1, 0])
    np.testing.assert_allclose(scored.parts["length"], [-0.5, 0, -1])
    np.testing.assert_allclose(scored.total, [1 + 0.5 - 1.0, 0.5, 1 - 2.0])
    only = score_samples(samples, {"correct": 1.0, "format": 0.0}, max_tokens=100, length_buffer=0)
    assert set(only.parts) == {"correct"}
    with pytest.raises(ValueError, match="unknown rewards"):
        score_samples(samples, {"brevity": 1.0}, max_tokens=100, length_buffer=0)
