"""algorithm=grpo in the training loop: a run started from a short SFT run samples,
rewards and updates; its metrics reach TensorBoard and the registry; its reference is
the weights it started from; it resumes exactly; LoRA runs use the base as reference;
bad settings fail before anything compiles."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx

from tests.helpers.config import compose_train
from tests.helpers.data import addition_traces, write_jsonl
from tests.helpers.tensorboard import read_scalars
from tests.test_train_registry import history
from tunixrt.algorithms.prompts import PromptOrder
from tunixrt.algorithms.reference import REFERENCE_FOLDER
from tunixrt.algorithms.rollout import Rollout, row_width
from tunixrt.algorithms.sampling import pick_groups, step_seed
from tunixrt.checkpoint import Checkpointer
from tunixrt.config import ConfigError, validate
from tunixrt.export import load_model
from tunixrt.registry import Registry, run_id_of_folder
from tunixrt.train.loop import train
from tunixrt.train.setup import setup

pytestmark = pytest.mark.slow

SFT_STEPS = 60


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("grpo") / "add.jsonl", addition_traces(200))


@pytest.fixture(scope="module")
def jax_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("jax_cache")


def common(data: Path, jax_cache: Path) -> list[str]:
    return [
        "debug=fast",
        "dataset=jsonl",
        f"dataset.path={data}",
        "dataset.cache_dir=null",
        "registry.url=null",
        "trainer.log_every=1",
        "trainer.eval_every=0",
        f"device.compile_cache_dir={jax_cache}",
    ]


@pytest.fixture(scope="module")
def sft(tmp_path_factory: pytest.TempPathFactory, data: Path, jax_cache: Path) -> Path:
    """A short SFT run: it has learnt the trace template (most completions end and mark
    an answer) and answers a few sums, so rewards differ within groups."""
    folder = tmp_path_factory.mktemp("sft") / "run"
    cfg = [*common(data, jax_cache), f"trainer.max_steps={SFT_STEPS}", "optimizer.lr=1e-2"]
    train(compose_train(cfg), folder)
    return folder


def grpo(data: Path, jax_cache: Path, sft: Path, *extra: str) -> list[str]:
    return [
        *common(data, jax_cache),
        "algorithm=grpo",
        f"init.from={sft}",
        "algorithm.max_new_tokens=24",
        "algorithm.prompts_per_step=4",
        "algorithm.group_size=4",
        "trainer.seq_len=64",
        "optimizer.lr=1e-3",
        "optimizer.warmup_steps=0",
        *extra,
    ]


def params(model: nnx.Module) -> dict[str, np.ndarray]:
    flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
    return {".".join(map(str, p)): np.asarray(jax.device_get(v.get_value())) for p, v in flat}


def saved_model(run_dir: Path, step: int) -> nnx.Module:
    ck = Checkpointer(run_dir / "checkpoints", every_steps=0, keep=100, read_only=True)
    with closing(ck):
        return load_model(ck, step)[2]


def test_a_grpo_run_reports_rewards_and_keeps_its_start_as_reference(
    data, jax_cache, sft, tmp_path
):
    registry = f"sqlite:///{tmp_path / 'registry.db'}"
    folder = tmp_path / "run"
    cfg = grpo(data, jax_cache, sft, "trainer.max_steps=4", f"registry.url={registry}")
    train(compose_train(cfg), folder)

    tb = read_scalars(folder / "tb")
    for tag in (
        "grpo/reward_std",
        "grpo/reward_format_std",
        "grpo/clip_fraction",
        "grpo/ratio",
        "grpo/equal_reward_groups",
        "grpo/sample_seconds",
        "grpo/train_seconds",
        "grpo/sampled_tokens_per_sec",
    ):
        assert [s for s, _ in tb[tag]] == [1, 2, 3, 4], tag
    reward, right, formed = (
        np.array([v for _, v in tb[t]])
        for t in ("grpo/reward", "grpo/reward_correct", "grpo/reward_format")
    )
    # the default weights: correct 1.0, format 0.1 (length 0: not computed)
    np.testing.assert_allclose(reward, right + 0.1 * formed, atol=1e-6)
    assert "grpo/reward_length" not in tb
    np.testing.assert_allclose(right, [v for _, v in tb["grpo/accuracy"]])
    assert formed.mean() > 0.3  # the SFT run taught the template: rewards differ
    assert all(0 < v <= 24 for _, v in tb["grpo/completion_tokens"])
    assert tb["grpo/kl"][0][1] == 0.0  # step 1 samples from the reference itself
    assert tb["grpo/kl"][-1][1] > 0.0

    with Registry.open(registry) as reg:
        run_id = run_id_of_folder(reg, folder)
    assert run_id is not None
    got = history(registry, run_id, "grpo/accuracy")
    assert got == [(s, pytest.approx(v)) for s, v in tb["grpo/accuracy"]]

    # the reference saved beside the steps is the SFT run's final weights, and the
    # policy has moved away from it
    start = nnx.to_pure_dict(nnx.state(saved_model(sft, SFT_STEPS), nnx.Param))
    ck = Checkpointer(folder / "checkpoints", every_steps=0, keep=100, read_only=True)
    with closing(ck):
        reference = ck.restore_base(start, REFERENCE_FOLDER)
    want = jax.tree.leaves(start)
    assert len(want) > 0
    for got, value in zip(jax.tree.leaves(reference), want, strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(value))
    end = jax.tree.leaves(nnx.to_pure_dict(nnx.state(saved_model(folder, 4), nnx.Param)))
    assert any(
        not np.array_equal(np.asarray(e), np.asarray(w)) for e, w in zip(end, want, strict=True)
    )


def test_truncated_completions_leave_the_loss_when_asked(data, jax_cache, sft, tmp_path):
    """Two tokens cut every completion short of its EOS: with mask_truncated nothing is
    left in the loss, so (no weight decay) the weights stay the SFT run's, and
    grpo/truncated says every completion was cut."""
    folder = tmp_path / "run"
    cfg = grpo(
        data,
        jax_cache,
        sft,
        "trainer.max_steps=2",
        "algorithm.max_new_tokens=2",
        "algorithm.mask_truncated=true",
        "optimizer.weight_decay=0",
    )
    train(compose_train(cfg), folder)
    tb = read_scalars(folder / "tb")
    assert [v for _, v in tb["grpo/truncated"]] == [1.0, 1.0]
    assert [v for _, v in tb["train/loss"]] == [0.0, 0.0]
    start, end = params(saved_model(sft, SFT_STEPS)), params(saved_model(folder, 2))
    assert start.keys() == end.keys()
    for name, value in start.items():
        np.testing.assert_array_equal(end[name], value, err_msg=name)


@pytest.mark.parametrize("draws", [1, 3])
def test_grpo_resumes_exactly(data, jax_cache, sft, tmp_path, draws):
    fixed = ("optimizer.decay_steps=6", "checkpoint.every_steps=3", f"algorithm.max_draws={draws}")
    straight = tmp_path / "straight"
    train(compose_train(grpo(data, jax_cache, sft, "trainer.max_steps=6", *fixed)), straight)
    stopped = tmp_path / "stopped"
    train(compose_train(grpo(data, jax_cache, sft, "trainer.max_steps=3", *fixed)), stopped)
    # the second start continues from step 3's checkpoint; init.from is not read again
    result = train(
        compose_train(grpo(data, jax_cache, sft, "trainer.max_steps=6", *fixed)), stopped
    )
    assert result.resumed_from == 3

    a, b = read_scalars(straight / "tb"), read_scalars(stopped / "tb")
    for tag in ("train/loss", "grpo/reward", "grpo/completion_tokens", "grpo/kl", "grpo/draws"):
        assert a[tag] == b[tag], tag
    want, got = params(saved_model(straight, 6)), params(saved_model(stopped, 6))
    for name, value in want.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)


def test_dynamic_sampling_draws_until_enough_groups_differ(data, jax_cache, sft, tmp_path):
    folder = tmp_path / "run"
    cfg = grpo(data, jax_cache, sft, "trainer.max_steps=4", "algorithm.max_draws=3")
    train(compose_train(cfg), folder)
    tb = read_scalars(folder / "tb")
    draws = [v for _, v in tb["grpo/draws"]]
    equal = [v for _, v in tb["grpo/equal_reward_groups"]]
    assert all(d in (1.0, 2.0, 3.0) for d in draws)
    # a step stops drawing early only once every trained group's rewards differ
    for d, e in zip(draws, equal, strict=True):
        assert d == 3.0 or e == 0.0, (draws, equal)
    # the SFT start answers some sums and misses others: some step needed a second draw
    assert max(draws) > 1.0, draws


def test_dynamic_sampling_picks_groups_whose_rewards_differ_first():
    first = np.array([[1.0, 1.0], [0.0, 1.0], [0.0, 0.0]])
    second = np.array([[1.0, 0.1], [1.0, 1.0]])
    assert pick_groups([first, second], 2) == [(0, 1), (1, 0)]
    # too few differ: equal groups top the batch up, in draw order
    assert pick_groups([first, second], 4) == [(0, 1), (1, 0), (0, 0), (0, 2)]
    assert pick_groups([first], 3) == [(0, 1), (0, 0), (0, 2)]


def test_a_lora_grpo_run_needs_no_copy_of_the_weights(data, jax_cache, sft, tmp_path):
    folder = tmp_path / "lora"
    extra = ("model.lora.rank=4", "optimizer.lr=1e-2", "trainer.max_steps=3")
    train(compose_train(grpo(data, jax_cache, sft, *extra)), folder)
    assert not (folder / "checkpoints" / REFERENCE_FOLDER).exists()
    tb = read_scalars(folder / "tb")
    assert all(np.isfinite(v) for _, v in tb["train/loss"])
    assert tb["grpo/kl"][-1][1] > 0.0  # adapters moved the policy off the base


def test_prompts_that_do_not_fit_seq_len_fail_before_training(data, jax_cache, sft):
    cfg = validate(compose_train(grpo(data, jax_cache, sft, "algorithm.max_new_tokens=60")))
    with pytest.raises(ConfigError, match=r"trainer.seq_len=64.*algorithm.max_new_tokens=60"):
        setup(cfg)


def test_a_prompt_file_without_items_of_the_families_is_refused(tmp_path):
    item = {"id": "a", "prompt": "Sort 2, 1.", "expected_answer": "1, 2", "category": "sorting"}
    prompts = write_jsonl(tmp_path / "p.jsonl", [item])
    extra = ["algorithm=grpo", f"algorithm.prompts={prompts}", "dataset.families=[counting]"]
    cfg = validate(compose_train(["debug=fast", "dataset.cache_dir=null", *extra]))
    with pytest.raises(ConfigError, match=rf"{prompts} holds no prompt.*counting"):
        setup(cfg)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("+algorithm.rewards.speed=1.0", "algorithm.rewards"),
        ("algorithm.group_size=0", "algorithm.group_size"),
        ("algorithm.temperature=0", "algorithm.temperature"),
        ("algorithm.eps_low=1.5", "algorithm.eps_low"),
    ],
)
def test_bad_algorithm_settings_name_their_key(override, key):
    with pytest.raises(ConfigError, match=key):
        validate(compose_train(["algorithm=grpo", override]))


def test_the_prompt_order_visits_every_prompt_once_per_epoch_and_resumes():
    order = PromptOrder(count=10, seed=3)
    drawn = [order.take(4) for _ in range(5)]  # 20 prompts: two epochs
    flat = [i for batch in drawn for i in batch]
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:]) == list(range(10))
    assert flat[:10] != flat[10:]  # each epoch has its own shuffle

    again = PromptOrder(count=10, seed=3)
    again.take(4)
    state = again.state()
    resumed = PromptOrder(count=10, seed=3)
    resumed.restore(state)
    assert [resumed.take(4) for _ in range(4)] == drawn[1:]
    with pytest.raises(ConfigError, match="drew from 10 prompts"):
        PromptOrder(count=11, seed=3).restore(state)


def test_the_sampling_seed_depends_on_seed_step_and_draw_only():
    assert step_seed(0, 5) == step_seed(0, 5) == step_seed(0, 5, 0)
    assert len({step_seed(0, 5), step_seed(0, 6), step_seed(1, 5), step_seed(0, 5, 1)}) == 4
    assert all(0 <= step_seed(s, n) < 2**32 for s in range(3) for n in range(3))


def test_rollout_rows_are_as_wide_as_the_longest_rounded_up():
    rollout = Rollout([[1] * 10, [1] * 3], [[2] * 20, [2] * 70], [True, False], group_size=1)
    # 3 + 70 tokens + EOS, less the last (never an input): 73, rounded up to 128
    assert row_width(rollout, seq_len=192) == 128
    assert row_width(rollout, seq_len=100) == 100
    short = Rollout([[1] * 5], [[2] * 10], [True], group_size=1)
    assert row_width(short, seq_len=192) == 64
