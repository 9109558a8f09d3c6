"""algorithm=dpo with pairs made on policy (algorithm.pairs=null): each sampled group's
best completion is chosen over its worst and groups whose rewards are all equal make no
pair; the batch is padded to a fixed number of pairs that the loss ignores; a run
reports its pair metrics to TensorBoard and the registry, holds no pairs out, and
resumes exactly; several devices are refused."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers.config import compose_train
from tests.helpers.data import addition_traces, write_jsonl
from tests.helpers.tensorboard import read_scalars
from tests.test_train_grpo import SFT_STEPS, common, params, saved_model
from tests.test_train_registry import history
from tunixrt.algorithms.dpo import dpo_loss
from tunixrt.algorithms.dpo_online import OnPolicyDpoTrainer
from tunixrt.algorithms.preferences import RankedPair, pair_batch, rank_pairs, rollout_pair
from tunixrt.algorithms.rewards import Sample, score_samples
from tunixrt.algorithms.rollout import Rollout
from tunixrt.config import ConfigError, validate
from tunixrt.evaluation.generate import decode_completion
from tunixrt.registry import Registry, run_id_of_folder
from tunixrt.train.init_from import find_origin, start_from
from tunixrt.train.loop import train
from tunixrt.train.setup import setup

EOS = 99

# ------------------------------------------------------------------ pairs by hand


def test_each_group_pairs_its_best_completion_over_its_worst():
    rewards = np.array(
        [
            [0.0, 1.0, 0.5, 1.0],  # best: rows 1 and 3 tie, the earlier is chosen
            [0.2, 0.2, 0.2, 0.2],  # all equal: no pair
            [1.0, 0.0, 0.0, 1.0],  # ties at both ends
            [-1.0, 0.1, -1.0, 0.1],
        ],
        np.float32,
    )
    pairs = rank_pairs(rewards)
    # rows are numbered across the rollout: prompt p's group is rows 4p .. 4p + 3
    assert pairs == [RankedPair(0, 1, 0), RankedPair(2, 8, 9), RankedPair(3, 13, 12)]
    flat = rewards.reshape(-1)
    for p in pairs:
        group = flat[4 * p.prompt : 4 * p.prompt + 4]
        assert flat[p.chosen] == group.max() > group.min() == flat[p.rejected]
    assert rank_pairs(np.ones((3, 4), np.float32)) == []
    assert rank_pairs(np.array([[0.0], [1.0]], np.float32)) == []  # a group of one


def test_a_pair_batch_padded_to_a_fixed_size_trains_on_its_pairs_only():
    rollout = Rollout(
        prompts=[[5, 6], [5, 6], [7], [7]],
        completions=[[1, 2, 3], [4], [8, 9], [10]],
        finished=[True, False, True, True],
        group_size=2,
    )
    ranked = rank_pairs(np.array([[0.0, 1.0], [0.5, 0.5]], np.float32))
    assert ranked == [RankedPair(0, 1, 0)]
    pair = rollout_pair(rollout, ranked[0], EOS)
    # the chosen row stopped at the token limit (no EOS); the rejected one ended
    assert pair.chosen.ids.tolist() == [5, 6, 4] and pair.chosen.mask.tolist() == [0, 0, 1]
    assert pair.rejected.ids.tolist() == [5, 6, 1, 2, 3, EOS]
    assert pair.rejected.mask.tolist() == [0, 0, 1, 1, 1, 1]

    batch = pair_batch([pair], width=8, pad_id=0, count=3)
    assert batch.inputs.shape == (6, 8) and batch.weights.tolist() == [1, 0, 0]
    assert batch.mask.sum(axis=1).tolist() == [1, 0, 0, 4, 0, 0] and batch.tokens == 5
    assert batch.inputs[3, :5].tolist() == [5, 6, 1, 2, 3]
    assert batch.targets[3, :5].tolist() == [6, 1, 2, 3, EOS]

    # padding pairs change nothing, whatever their log-probs; no pair at all gives 0
    chosen, rejected = jnp.array([-1.0, 50.0, -7.0]), jnp.array([-3.0, -9.0, 2.0])
    ref = jnp.zeros(3)
    padded = dpo_loss(chosen, rejected, ref, ref, beta=0.5, weights=jnp.asarray(batch.weights))
    alone = dpo_loss(chosen[:1], rejected[:1], ref[:1], ref[:1], beta=0.5)
    for got, want in zip(jax.tree.leaves(padded), jax.tree.leaves(alone), strict=True):
        assert float(got) == pytest.approx(float(want))
    none = dpo_loss(chosen, rejected, ref, ref, beta=0.5, weights=jnp.zeros(3))
    assert [float(x) for x in jax.tree.leaves(none)] == [0.0, 0.0, 0.0]


def test_dpo_without_pairs_samples_groups_of_at_least_two():
    cfg = validate(compose_train(["algorithm=dpo"]))
    assert cfg.algorithm.pairs is None and cfg.algorithm.group_size == 8
    with pytest.raises(ConfigError, match=r"algorithm.group_size=1.*algorithm.pairs=null"):
        validate(compose_train(["algorithm=dpo", "algorithm.group_size=1"]))


# ------------------------------------------------------------------ runs


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("dpo_online") / "add.jsonl", addition_traces(200))


@pytest.fixture(scope="module")
def jax_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("jax_cache")


@pytest.fixture(scope="module")
def sft(tmp_path_factory: pytest.TempPathFactory, data: Path, jax_cache: Path) -> Path:
    """A short SFT run, as GRPO's tests start from: its samples' rewards differ."""
    folder = tmp_path_factory.mktemp("sft") / "run"
    cfg = [*common(data, jax_cache), f"trainer.max_steps={SFT_STEPS}", "optimizer.lr=1e-2"]
    train(compose_train(cfg), folder)
    return folder


PER_STEP = 4


def online(data: Path, jax_cache: Path, sft: Path, *extra: str) -> list[str]:
    return [
        *common(data, jax_cache),
        "algorithm=dpo",
        f"init.from={sft}",
        "algorithm.max_new_tokens=24",
        f"algorithm.prompts_per_step={PER_STEP}",
        "algorithm.group_size=4",
        "trainer.seq_len=64",
        "optimizer.lr=1e-3",
        "optimizer.warmup_steps=0",
        *extra,
    ]


@pytest.mark.slow
def test_pairs_made_on_policy_prefer_the_higher_reward(data, jax_cache, sft):
    cfg = validate(compose_train(online(data, jax_cache, sft)))
    s = setup(cfg)
    origin = find_origin(cfg)
    assert origin is not None
    start_from(origin, s.model, s.data.tokenizer)
    dpo = s.algorithm
    assert isinstance(dpo, OnPolicyDpoTrainer)
    dpo.start_reference(None)
    tok = s.data.tokenizer
    made = 0
    for n in (1, 2):
        groups, ranked, batch = dpo.pairs(n)
        made += len(ranked)
        assert batch.weights.tolist() == [1.0] * len(ranked) + [0.0] * (PER_STEP - len(ranked))
        assert batch.inputs.shape[0] == 2 * PER_STEP and batch.inputs.shape[1] == 64
        total = groups.scored.total
        for i, p in enumerate(ranked):
            group = total[4 * p.prompt : 4 * p.prompt + 4]
            assert total[p.chosen] == group.max() > group.min() == total[p.rejected]
            # the batch's rows are those completions: score what they train on again
            again = []
            for r in (i, PER_STEP + i):
                trained = batch.targets[r][batch.mask[r] == 1].tolist()
                ended = trained[-1] == tok.eos_id
                ids = trained[:-1] if ended else trained
                expected = groups.items[p.prompt].expected_answer
                again.append(Sample(decode_completion(tok, ids), expected, len(trained), ended))
            a = cfg.algorithm
            scored = score_samples(
                again, a.rewards, max_tokens=a.max_new_tokens, length_buffer=a.length_buffer
            )
            assert scored.total.tolist() == [total[p.chosen], total[p.rejected]]
            assert scored.total[0] > scored.total[1]
    assert made > 0  # the SFT start's rewards differ within some groups


@pytest.mark.slow
def test_a_run_on_pairs_made_on_policy_reports_them(data, jax_cache, sft, tmp_path):
    registry = f"sqlite:///{tmp_path / 'registry.db'}"
    folder = tmp_path / "run"
    extra = ("trainer.max_steps=4", "trainer.eval_every=2", f"registry.url={registry}")
    train(compose_train(online(data, jax_cache, sft, *extra)), folder)

    tb = read_scalars(folder / "tb")
    for tag in (
        "dpo/accuracy",
        "dpo/margin",
        "dpo/pairs",
        "dpo/equal_reward_groups",
        "dpo/pair_reward_gap",
        "dpo/sample_reward",
        "dpo/sample_accuracy",
        "dpo/sample_seconds",
        "dpo/train_seconds",
    ):
        assert [s for s, _ in tb[tag]] == [1, 2, 3, 4], tag
    assert not [t for t in tb if t.startswith("dpo/valid_")]  # nothing is held out
    pairs = np.array([v for _, v in tb["dpo/pairs"]])
    equal = np.array([v for _, v in tb["dpo/equal_reward_groups"]])
    np.testing.assert_allclose(pairs + PER_STEP * equal, PER_STEP)
    assert pairs.sum() > 0
    gaps = np.array([v for _, v in tb["dpo/pair_reward_gap"]])
    assert (gaps[pairs > 0] > 0).all() and (gaps[pairs == 0] == 0).all()
    reward, right, formed = (
        np.array([v for _, v in tb[t]])
        for t in ("dpo/sample_reward", "dpo/sample_reward_correct", "dpo/sample_reward_format")
    )
    np.testing.assert_allclose(reward, right + 0.1 * formed, atol=1e-6)
    assert all(v > 0 for _, v in tb["dpo/sample_seconds"] + tb["dpo/train_seconds"])
    # step 1 samples from the reference itself: every margin is 0, each pair costs log 2
    if pairs[0] > 0:
        assert tb["train/loss"][0][1] == pytest.approx(np.log(2.0), abs=1e-4)
        assert tb["dpo/margin"][0][1] == pytest.approx(0.0, abs=1e-5)

    with Registry.open(registry) as reg:
        run_id = run_id_of_folder(reg, folder)
    assert run_id is not None
    for tag in ("dpo/pairs", "dpo/sample_reward"):
        assert history(registry, run_id, tag) == [(s, pytest.approx(v)) for s, v in tb[tag]]


@pytest.mark.slow
def test_dpo_on_policy_resumes_exactly(data, jax_cache, sft, tmp_path):
    fixed = ("optimizer.decay_steps=4", "checkpoint.every_steps=2")
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    train(compose_train(online(data, jax_cache, sft, "trainer.max_steps=4", *fixed)), straight)
    train(compose_train(online(data, jax_cache, sft, "trainer.max_steps=2", *fixed)), stopped)
    resumed = train(
        compose_train(online(data, jax_cache, sft, "trainer.max_steps=4", *fixed)), stopped
    )
    assert resumed.resumed_from == 2

    a, b = read_scalars(straight / "tb"), read_scalars(stopped / "tb")
    for tag in ("train/loss", "dpo/margin", "dpo/pairs", "dpo/sample_reward"):
        assert a[tag] == b[tag], tag
    assert sum(v for _, v in a["dpo/pairs"][2:]) > 0  # the resumed steps trained on pairs
    want, got = params(saved_model(straight, 4)), params(saved_model(stopped, 4))
    for name, value in want.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)
