"""algorithm=dpo in the training loop: preference pairs raise the held-out preference
accuracy; the reference is the starting weights; it resumes exactly; bad pair files
fail naming the file and line."""

from __future__ import annotations

import random
from contextlib import closing
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx

from tests.helpers.config import compose_train
from tests.helpers.data import write_jsonl
from tests.helpers.paths import DEV_DATA
from tests.helpers.tensorboard import read_scalars
from tunixrt.algorithms.dpo import dpo_loss
from tunixrt.algorithms.preferences import encode_pairs, pair_batch, read_pairs
from tunixrt.algorithms.reference import REFERENCE_FOLDER
from tunixrt.checkpoint import Checkpointer
from tunixrt.config import validate
from tunixrt.data import DataError
from tunixrt.data.tokenize import TextTokenizer
from tunixrt.export import load_model
from tunixrt.train.loop import train
from tunixrt.train.setup import setup

pytestmark = pytest.mark.slow


def sums(n: int, seed: int) -> list[dict]:
    """Pairs whose chosen completion adds the prompt's numbers and whose rejected one
    adds other numbers: preferring the chosen one means reading the prompt."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b, x, y = (rng.randint(10, 49) for _ in range(4))
        out.append(
            {
                "prompt": f"What is {a} + {b}?",
                "chosen": f"{a} + {b} = {a + b}.",
                "rejected": f"{x} + {y} = {x + y}.",
            }
        )
    return out


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("dpo") / "pairs.jsonl", sums(400, seed=0))


@pytest.fixture(scope="module")
def jax_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("jax_cache")


def dpo(pairs: Path, jax_cache: Path, *extra: str) -> list[str]:
    return [
        "debug=fast",
        "dataset.cache_dir=null",
        "registry.url=null",
        "algorithm=dpo",
        f"algorithm.pairs={pairs}",
        "algorithm.prompts_per_step=16",
        "trainer.seq_len=64",
        "trainer.log_every=5",
        "optimizer.lr=3e-3",
        "optimizer.warmup_steps=5",
        f"device.compile_cache_dir={jax_cache}",
        *extra,
    ]


def test_preference_pairs_raise_held_out_preference_accuracy(pairs, jax_cache, tmp_path):
    steps = ("trainer.max_steps=300", "trainer.eval_every=50", "checkpoint.every_steps=300")
    held_out = "algorithm.valid_fraction=0.2"  # 80 of the 400 pairs
    train(compose_train(dpo(pairs, jax_cache, *steps, held_out)), tmp_path)
    tb = read_scalars(tmp_path / "tb")
    valid = dict(tb["dpo/valid_accuracy"])
    assert sorted(valid) == [50, 100, 150, 200, 250, 300]
    # Chance is 0.5 (a random rejected sum); 0.7 on 80 pairs is 3.5 standard deviations
    # above it. Measured on two machines: 0.45 -> 0.8-0.875 and 0.575 -> 0.75 (step 50 -> 300).
    assert valid[300] >= 0.7 and valid[300] - valid[50] >= 0.1, valid
    assert dict(tb["dpo/valid_margin"])[300] > 0
    train_acc = [v for _, v in tb["dpo/accuracy"]]
    assert np.mean(train_acc[-5:]) > 0.9
    # the loss is DPO's: at step 1 the policy is its reference, so every margin is 0
    assert tb["train/loss"][0][1] == pytest.approx(np.log(2.0), abs=1e-4)


def test_dpo_resumes_exactly(pairs, jax_cache, tmp_path):
    fixed = ("optimizer.decay_steps=6", "checkpoint.every_steps=3", "trainer.log_every=1")
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    train(compose_train(dpo(pairs, jax_cache, "trainer.max_steps=6", *fixed)), straight)
    train(compose_train(dpo(pairs, jax_cache, "trainer.max_steps=3", *fixed)), stopped)
    assert (
        train(
            compose_train(dpo(pairs, jax_cache, "trainer.max_steps=6", *fixed)), stopped
        ).resumed_from
        == 3
    )
    a, b = read_scalars(straight / "tb"), read_scalars(stopped / "tb")
    for tag in ("train/loss", "dpo/margin", "dpo/accuracy"):
        assert a[tag] == b[tag], tag


def test_the_batch_scores_chosen_and_rejected_completions_apart(tmp_path):
    tok = TextTokenizer.from_file(DEV_DATA / "tokenizer.json")
    record = {"prompt": "1 + 2?", "chosen": "3.", "rejected": "four, I think."}
    pairs = read_pairs(str(write_jsonl(tmp_path / "p.jsonl", [record])))
    encoded = encode_pairs(pairs, tok)
    batch = pair_batch(encoded, width=32, pad_id=tok.eos_id)
    chosen, rejected = encoded[0].chosen, encoded[0].rejected
    # a row's loss covers its completion tokens and the EOS, never the prompt
    assert batch.mask[0].sum() == chosen.mask.sum() and batch.mask[1].sum() == rejected.mask.sum()
    assert batch.mask[1].sum() > batch.mask[0].sum()
    np.testing.assert_array_equal(batch.inputs[0, : len(chosen) - 1], chosen.ids[:-1])
    np.testing.assert_array_equal(batch.targets[1, : len(rejected) - 1], rejected.ids[1:])
    # with log-probs of -1 per token, the summed log-probs are minus the token counts
    logp = -np.ones_like(batch.mask)
    out = dpo_loss(
        jax.numpy.asarray([(logp[0] * batch.mask[0]).sum()]),
        jax.numpy.asarray([(logp[1] * batch.mask[1]).sum()]),
        jax.numpy.zeros(1),
        jax.numpy.zeros(1),
        beta=0.5,
    )
    margin = 0.5 * (batch.mask[1].sum() - batch.mask[0].sum())
    assert float(out.margin) == pytest.approx(margin)
    assert float(out.loss) == pytest.approx(np.log1p(np.exp(-margin)), rel=1e-6)


def test_a_bad_pair_names_its_file_and_line(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [sums(1, 0)[0], {"prompt": "x", "chosen": "y"}])
    with pytest.raises(DataError, match=rf"{path}:2: key 'rejected' must be a non-empty string"):
        read_pairs(str(path))


def test_the_reference_is_the_start_and_the_policy_moves(pairs, jax_cache, tmp_path):
    cfg = compose_train(dpo(pairs, jax_cache, "trainer.max_steps=3"))
    initial = nnx.to_pure_dict(nnx.state(setup(validate(cfg)).model, nnx.Param))
    train(cfg, tmp_path)
    ck = Checkpointer(tmp_path / "checkpoints", every_steps=0, keep=10, read_only=True)
    with closing(ck):
        end = nnx.to_pure_dict(nnx.state(load_model(ck, 3)[2], nnx.Param))
        start = ck.restore_base(end, REFERENCE_FOLDER)
    for got, want in zip(jax.tree.leaves(start), jax.tree.leaves(initial), strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    moved = [
        not np.array_equal(np.asarray(a), np.asarray(b))
        for a, b in zip(jax.tree.leaves(start), jax.tree.leaves(end), strict=True)
    ]
    assert any(moved)
