"""Chunked cross-entropy against the whole-logits loss and a float64 numpy reference:
equal losses and gradients for tied and untied heads and Gemma 2's final soft-cap,
chunks that do not divide the token count, and compiled memory that holds one chunk."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from tests.helpers.models import tiny_decoder_config
from tunixrt.composition import compose
from tunixrt.config import ConfigError, validate
from tunixrt.models import Decoder
from tunixrt.train.loss import chunked_cross_entropy, loss_sums
from tunixrt.train.step import eval_step, make_train_step

HEADS = {
    "tied": dict(tie_embeddings=True),
    "untied": dict(tie_embeddings=False),
    "final_softcap": dict(tie_embeddings=False, final_softcap=3.0),
}
ROWS, SEQ = 3, 10  # chunks of 12 tokens: 4 positions of each row, then a tail of 2


def batch(seed: int = 0, vocab: int = 64) -> dict[str, jax.Array]:
    keys = jax.random.split(jax.random.key(seed), 3)
    weights = jax.random.uniform(keys[2], (ROWS, SEQ)) > 0.3  # some tokens out of the loss
    return {
        "inputs": jax.random.randint(keys[0], (ROWS, SEQ), 0, vocab, dtype=jnp.int32),
        "targets": jax.random.randint(keys[1], (ROWS, SEQ), 0, vocab, dtype=jnp.int32),
        "positions": jnp.broadcast_to(jnp.arange(SEQ, dtype=jnp.int32), (ROWS, SEQ)),
        "segment_ids": jnp.ones((ROWS, SEQ), jnp.int32),
        "weights": weights.astype(jnp.float32),
    }


def model(**changes) -> Decoder:
    return Decoder(tiny_decoder_config(init_std=0.3, **changes), rngs=nnx.Rngs(0))


@nnx.jit(static_argnums=2)
def mean_loss_and_grads(m: Decoder, b: dict, chunk: int):
    def mean(mm):
        total, count = loss_sums(mm, b, chunk)
        return total / count

    return nnx.value_and_grad(mean)(m)


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("chunk", [12, 15, 64])  # a tail, whole chunks, one past the end
def test_chunked_loss_and_gradients_equal_unchunked(head, chunk):
    m, b = model(**HEADS[head]), batch()
    want, want_grads = mean_loss_and_grads(m, b, 0)
    got, got_grads = mean_loss_and_grads(m, b, chunk)
    assert float(want) > 1.0
    assert float(got) == pytest.approx(float(want), abs=1e-5)
    flat, flat_want = nnx.to_flat_state(got_grads), nnx.to_flat_state(want_grads)
    for (path, g), (_, g_want) in zip(flat, flat_want, strict=True):
        np.testing.assert_allclose(g[...], g_want[...], atol=1e-5, rtol=0, err_msg=str(path))
    head_grad = want_grads["embed" if head == "tied" else "lm_head"]
    assert max(float(jnp.abs(x).max()) for x in jax.tree.leaves(head_grad)) > 1e-3


def np_cross_entropy_sum(logits, targets, weights):
    """float64 sum over tokens of weights * -log softmax(logits)[target]."""
    logits = np.asarray(logits, np.float64)
    top = logits.max(-1, keepdims=True)
    logp = logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))
    nll = -np.take_along_axis(logp, np.asarray(targets)[:, None], -1)[:, 0]
    return float((nll * np.asarray(weights, np.float64)).sum())


def test_chunked_cross_entropy_against_numpy():
    """Any head: a linear map then a soft-cap, on 2 rows of 13 positions in chunks of 5
    (3 chunks, the last padded), against numpy on the whole logits; and its gradient
    against autodiff of the unchunked sum."""
    keys = jax.random.split(jax.random.key(3), 4)
    w = jax.random.normal(keys[0], (6, 40))
    hidden = jax.random.normal(keys[1], (2, 13, 6))
    targets = jax.random.randint(keys[2], (2, 13), 0, 40)
    weights = (jax.random.uniform(keys[3], (2, 13)) > 0.2).astype(jnp.float32)

    def head(h, w):
        return 4.0 * jnp.tanh((h @ w) / 4.0)

    got = chunked_cross_entropy(lambda h: head(h, w), hidden, targets, weights, 5)
    want = np_cross_entropy_sum(head(hidden, w).reshape(26, 40), targets.ravel(), weights.ravel())
    assert float(got) == pytest.approx(want, rel=1e-6)

    def whole(w, hidden):
        ce = optax.softmax_cross_entropy_with_integer_labels(head(hidden, w), targets)
        return jnp.sum(ce * weights)

    def chunked(w, hidden):
        return chunked_cross_entropy(lambda h: head(h, w), hidden, targets, weights, 5)

    for g, g_want in zip(
        jax.grad(chunked, argnums=(0, 1))(w, hidden),
        jax.grad(whole, argnums=(0, 1))(w, hidden),
        strict=True,
    ):
        np.testing.assert_allclose(g, g_want, atol=1e-5, rtol=0)


def test_train_and_eval_steps_with_chunks_equal_without():
    """One SGD step chunked and not: the same loss and parameters after it."""
    b = {k: v.reshape(1, ROWS, SEQ) for k, v in batch(seed=4).items()}
    params = []
    for chunk in (0, 12):
        m = model(tie_embeddings=False)
        opt = nnx.Optimizer(m, optax.sgd(1.0), wrt=nnx.Param)
        metrics = make_train_step(nnx.Param, chunk)(m, opt, b)
        loss_sum, count = eval_step(m, {k: v[0] for k, v in b.items()}, chunk)
        params.append((float(metrics["loss"]), float(loss_sum / count), nnx.state(m, nnx.Param)))
    (loss, after, p), (loss_c, after_c, p_c) = params
    assert loss_c == pytest.approx(loss, abs=1e-5) and after_c == pytest.approx(after, abs=1e-5)
    jax.tree.map(lambda a, c: np.testing.assert_allclose(c, a, atol=1e-5, rtol=0), p, p_c)


def test_compiled_chunked_loss_holds_one_chunk_of_logits():
    """XLA's own accounting of the compiled gradient's temporary buffers: the whole
    loss needs at least two [tokens, vocab] float32 arrays (logits and their
    gradient); chunks of 16 need less than one."""
    vocab, tokens = 8192, ROWS * SEQ * 8
    m = model(vocab_size=vocab, max_seq_len=SEQ * 8)
    b = {
        "inputs": jnp.zeros((ROWS, SEQ * 8), jnp.int32),
        "targets": jnp.ones((ROWS, SEQ * 8), jnp.int32),
        "positions": jnp.broadcast_to(jnp.arange(SEQ * 8), (ROWS, SEQ * 8)),
        "segment_ids": jnp.ones((ROWS, SEQ * 8), jnp.int32),
        "weights": jnp.ones((ROWS, SEQ * 8), jnp.float32),
    }
    graphdef, state = nnx.split(m)
    full_logits = tokens * vocab * 4  # bytes

    def temp_bytes(chunk: int) -> int:
        grad = jax.grad(lambda s: loss_sums(nnx.merge(graphdef, s), b, chunk)[0])
        analysis = jax.jit(grad).lower(state).compile().memory_analysis()
        return int(analysis.temp_size_in_bytes)

    assert temp_bytes(0) >= 2 * full_logits
    assert temp_bytes(16) < full_logits


def test_loss_chunk_tokens_is_validated():
    with pytest.raises(ConfigError, match=r"trainer\.loss_chunk_tokens=-1"):
        validate(compose(["debug=fast", "trainer.loss_chunk_tokens=-1"]))
    assert validate(compose(["debug=fast"])).trainer.loss_chunk_tokens >= 0
