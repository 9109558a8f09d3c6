"""The train step against independent references: token-weighted loss, gradient
accumulation, and one optimizer step per optimizer lowering the loss."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from tests.helpers.data import addition_traces
from tests.helpers.models import tiny_decoder_config
from tunixrt.config import OptimizerConfig, OptimizerName, Schedule
from tunixrt.data import BatchIterator, TextTokenizer, render
from tunixrt.data.schema import Step, Trace
from tunixrt.models import Decoder
from tunixrt.optim import make_optimizer, make_schedule
from tunixrt.train.step import eval_step, loss_sums, make_train_step

train_step = make_train_step(nnx.Param)

CFG = tiny_decoder_config(vocab_size=320, tie_embeddings=True)


@pytest.fixture(scope="module")
def batch(small_tokenizer) -> dict[str, np.ndarray]:
    tok = TextTokenizer.from_file(small_tokenizer)
    examples = [
        tok.encode(
            render(Trace(t["prompt"], (Step(0, "c", t["steps"][0]["content"]),), t["final_answer"]))
        )
        for t in addition_traces(16)
    ]
    it = BatchIterator(
        examples, rows=4, seq_len=48, pad_id=tok.pad_id, pack=True, loss_on_prompt=False, seed=0
    )
    return next(it)


def model() -> Decoder:
    return Decoder(CFG, rngs=nnx.Rngs(params=0))


def accum(batch, n):
    return {k: jnp.asarray(v.reshape(n, -1, v.shape[-1])) for k, v in batch.items()}


def test_loss_is_token_weighted_mean_of_cross_entropy(batch):
    m = model()
    logits = np.asarray(
        m(
            jnp.asarray(batch["inputs"]),
            positions=jnp.asarray(batch["positions"]),
            segment_ids=jnp.asarray(batch["segment_ids"]),
        ),
        np.float64,
    )
    logp = (
        logits
        - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True))
        - logits.max(-1, keepdims=True)
    )
    nll = -np.take_along_axis(logp, batch["targets"][..., None], -1)[..., 0]
    expected = (nll * batch["weights"]).sum() / batch["weights"].sum()
    loss_sum, count = eval_step(m, {k: jnp.asarray(v) for k, v in batch.items()})
    assert float(count) == batch["weights"].sum() > 0
    assert float(loss_sum) / float(count) == pytest.approx(expected, rel=1e-5)


def test_grad_accumulation_matches_one_big_batch(batch):
    results = []
    for n in (1, 2, 4):
        m = model()
        opt = nnx.Optimizer(m, optax.sgd(0.5), wrt=nnx.Param)
        metrics = train_step(m, opt, accum(batch, n))
        results.append((float(metrics["loss"]), nnx.state(m, nnx.Param)))
    for loss, params in results[1:]:
        assert loss == pytest.approx(results[0][0], rel=1e-5)
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), params, results[0][1]
        )


def test_grad_matches_autodiff_of_the_plain_loss(batch):
    m = model()
    jb = {k: jnp.asarray(v) for k, v in batch.items()}

    def plain(mm):
        s, n = loss_sums(mm, jb)
        return s / n

    expected = nnx.grad(plain)(m)
    opt = nnx.Optimizer(m, optax.sgd(1.0), wrt=nnx.Param)
    before = jax.tree.map(np.asarray, nnx.state(m, nnx.Param))
    train_step(m, opt, accum(batch, 2))
    after = nnx.state(m, nnx.Param)
    # sgd(lr=1): params_after = params_before - grad
    jax.tree.map(
        lambda b, a, g: np.testing.assert_allclose(b - a, g, atol=1e-5), before, after, expected
    )


@pytest.mark.parametrize("name", list(OptimizerName))
def test_one_step_of_each_optimizer_lowers_the_loss(batch, name):
    lr = {"adamw": 3e-3, "adafactor": 1e-2, "lion": 1e-3, "sgd": 0.5}[name.value]
    cfg = OptimizerConfig(name=name, lr=lr, schedule=Schedule.constant, warmup_steps=0)
    tx, _ = make_optimizer(cfg, total_steps=10)
    m = model()
    opt = nnx.Optimizer(m, tx, wrt=nnx.Param)
    jb = accum(batch, 1)
    first = float(train_step(m, opt, jb)["loss"])
    loss_sum, count = eval_step(m, {k: v[0] for k, v in jb.items()})
    assert float(loss_sum / count) < first


def test_schedule_warmup_then_cosine_to_min_ratio():
    cfg = OptimizerConfig(
        name=OptimizerName.adamw,
        lr=1.0,
        schedule=Schedule.cosine,
        warmup_steps=10,
        min_lr_ratio=0.1,
    )
    s = make_schedule(cfg, total_steps=110)
    assert float(s(0)) == 0.0 and float(s(5)) == pytest.approx(0.5)
    assert float(s(10)) == pytest.approx(1.0)
    assert float(s(60)) == pytest.approx(0.1 + 0.9 * 0.5, rel=1e-5)  # halfway through cosine
    assert float(s(110)) == pytest.approx(0.1, rel=1e-5)
    lin = make_schedule(
        OptimizerConfig(name=OptimizerName.sgd, lr=2.0, schedule=Schedule.linear, min_lr_ratio=0.0),
        total_steps=100,
    )
    assert float(lin(50)) == pytest.approx(1.0)


def test_weight_decay_skips_vectors():
    from tunixrt.optim import decay_mask

    mask = decay_mask({"w": jnp.ones((2, 3)), "scale": jnp.ones(3)})
    assert mask == {"w": True, "scale": False}


def test_evaluation_runs_in_training_sized_micro_batches(batch, monkeypatch):
    """evaluate(..., micro_batches=2) compiles the eval step for half the rows and gives
    the same token-weighted loss as whole batches."""
    from tunixrt.config import DeviceConfig
    from tunixrt.devices import setup_devices
    from tunixrt.train import setup as train_setup

    devices = setup_devices(DeviceConfig())
    rows_seen: list[int] = []
    real = train_setup.eval_step

    def counting(m: Decoder, b: dict, chunk: int) -> tuple:
        rows_seen.append(b["inputs"].shape[0])
        return real(m, b, chunk)

    monkeypatch.setattr(train_setup, "eval_step", counting)
    batches = [batch, {k: v[::-1].copy() for k, v in batch.items()}]
    whole = train_setup.evaluate(model(), batches, devices, 1)
    assert rows_seen == [4, 4]
    rows_seen.clear()
    halves = train_setup.evaluate(model(), batches, devices, 2)
    assert rows_seen == [2, 2, 2, 2]
    assert halves == pytest.approx(whole, rel=1e-6)
