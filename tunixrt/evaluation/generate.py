"""Generation with a KV cache: one jitted prefill and decode loop per shape bucket.

Prompts of a batch are right-padded to a bucketed length and the batch to a bucketed
size (powers of two), so a new prompt length or batch size inside a bucket reuses the
compiled program. Each row keeps its own position: its new tokens are written after its
own prompt, never after the padding. Finished rows (EOS) keep stepping, masked out of
the output, until every row is done or `max_new_tokens` is reached.

Shape letters as in tunixrt.models.decoder: b batch, s prompt length, t cache length,
v vocabulary.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tunixrt.data.chat import ChatTokenizer
from tunixrt.data.render import Rendered
from tunixrt.data.tokenize import ANSWER_MARKER, TextTokenizer
from tunixrt.models import Decoder
from tunixrt.models.decoder import KVCache

_MIN_PROMPT_BUCKET = 8
_NO_TOKEN = -1  # recorded for rows that have already stopped


def _bucket(n: int, floor: int = 1) -> int:
    """The smallest power of two at least max(n, floor)."""
    return 1 << (max(n, floor) - 1).bit_length()


# ---------------------------------------------------------------------------- sampling


def _filter_top_k_top_p(logits: jax.Array, top_k: jax.Array, top_p: jax.Array) -> jax.Array:
    """Logits [b, v] with tokens outside the top k, then outside the nucleus p, at -inf."""
    ordered = jnp.sort(logits, axis=-1)[:, ::-1]  # [b, v], descending
    kth = ordered[:, top_k - 1][:, None]  # [b, 1]
    ordered = jnp.where(ordered < kth, -jnp.inf, ordered)
    probs = jax.nn.softmax(ordered, axis=-1)
    # Keep a token while the mass before it is below p: the smallest set reaching p.
    keep = jnp.cumsum(probs, axis=-1) - probs < top_p  # [b, v], a prefix of each row
    cutoff = jnp.take_along_axis(ordered, jnp.sum(keep, axis=-1, keepdims=True) - 1, axis=-1)
    return jnp.where(logits < jnp.maximum(kth, cutoff), -jnp.inf, logits)


def _pick(
    logits: jax.Array,
    key: jax.Array,
    temperature: jax.Array,
    top_k: jax.Array,
    top_p: jax.Array,
    *,
    sample: bool,
    cut: bool,
) -> jax.Array:
    """Next tokens [b] from logits [b, v]: argmax, or a draw after temperature, k, p
    (`cut` False: no top-k or top-p, so the sort over the vocabulary is skipped)."""
    if not sample:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    scaled = logits / temperature
    if cut:
        scaled = _filter_top_k_top_p(scaled, top_k, top_p)
    return jax.random.categorical(key, scaled, axis=-1).astype(jnp.int32)


# ---------------------------------------------------------------------------- loop


# Decode loop state: step t, next-token logits [b, v], per-layer caches, each row's
# next position [b], rows done [b], new tokens so far [b, t].
_Carry = tuple[jax.Array, jax.Array, list[KVCache], jax.Array, jax.Array, jax.Array]


@functools.partial(jax.jit, static_argnames=("graphdef", "cache_len", "sample", "cut"))
def _generate(
    graphdef: nnx.GraphDef[Decoder],
    state: nnx.State,
    tokens: jax.Array,
    lengths: jax.Array,
    live: jax.Array,
    scalars: dict[str, jax.Array],
    *,
    cache_len: int,
    sample: bool,
    cut: bool = False,
) -> jax.Array:
    """Prefill tokens [b, s] (row lengths [b]), then decode; new tokens [b, t], -1 padded."""
    model = nnx.merge(graphdef, state)
    b, s = tokens.shape
    positions = jnp.broadcast_to(jnp.arange(s, dtype=jnp.int32), (b, s))
    logits, caches = model.extend(tokens, positions, model.init_cache(b, cache_len))
    last = jnp.take_along_axis(logits, (lengths - 1)[:, None, None], axis=1)[:, 0]  # [b, v]
    key = jax.random.key(scalars["seed"])
    pick = functools.partial(
        _pick,
        temperature=scalars["temperature"],
        top_k=scalars["top_k"],
        top_p=scalars["top_p"],
        sample=sample,
        cut=cut,
    )

    def step(carry: _Carry) -> _Carry:
        t, logits, caches, positions, done, out = carry
        token = jnp.where(done, _NO_TOKEN, pick(logits, jax.random.fold_in(key, t)))
        out = out.at[:, t].set(token)
        done = done | (token == scalars["eos_id"])
        # Rows already done feed a harmless token 0; their output is masked above.
        feed = jnp.maximum(token, 0)[:, None]  # [b, 1]
        logits, caches = model.extend(feed, positions[:, None], caches)
        return t + 1, logits[:, -1], caches, positions + 1, done, out

    def running(carry: _Carry) -> jax.Array:
        t, done = carry[0], carry[4]
        return (t < scalars["max_new_tokens"]) & ~jnp.all(done)

    out = jnp.full((b, cache_len), _NO_TOKEN, jnp.int32)
    carry = (jnp.int32(0), last, caches, lengths, ~live, out)
    return jax.lax.while_loop(running, step, carry)[-1]


def _check(model: Decoder, prompts: Sequence[Sequence[int]], max_new_tokens: int) -> None:
    cfg = model.cfg
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("generate_tokens needs at least one prompt, and no empty prompt")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be at least 0, got {max_new_tokens}")
    bad = [t for p in prompts for t in p if not 0 <= t < cfg.vocab_size]
    if bad:
        raise ValueError(f"token ids {bad[:5]} are outside the vocabulary [0, {cfg.vocab_size})")
    longest = max(len(p) for p in prompts)
    if longest + max_new_tokens > cfg.max_seq_len:
        raise ValueError(
            f"the longest prompt ({longest} tokens) plus max_new_tokens={max_new_tokens} "
            f"exceeds DecoderConfig.max_seq_len={cfg.max_seq_len}"
        )


def _pad(prompts: Sequence[Sequence[int]], max_len: int) -> tuple[np.ndarray, ...]:
    """Right-padded tokens [b, s], lengths [b] and live rows [b] in bucketed shapes."""
    rows = _bucket(len(prompts))
    length = min(_bucket(max(len(p) for p in prompts), _MIN_PROMPT_BUCKET), max_len)
    tokens = np.zeros((rows, length), np.int32)
    lengths = np.ones(rows, np.int32)  # padding rows: one token 0, done from the start
    for i, prompt in enumerate(prompts):
        tokens[i, : len(prompt)] = prompt
        lengths[i] = len(prompt)
    live = np.arange(rows) < len(prompts)
    return tokens, lengths, live


def _trim(row: np.ndarray, eos_id: int | None, max_new_tokens: int) -> list[int]:
    """New tokens up to (and without) EOS or the first unfilled slot."""
    tokens = []
    for token in row[:max_new_tokens].tolist():
        if token in (_NO_TOKEN, eos_id):
            break
        tokens.append(int(token))
    return tokens


def generate_tokens(
    model: Decoder,
    prompts: list[list[int]],
    *,
    max_new_tokens: int,
    eos_id: int | None,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 0,
) -> list[list[int]]:
    """Continue each prompt (token ids); the new tokens of each, EOS excluded.

    temperature 0 is greedy decoding; above 0 the logits are divided by it, cut to the
    top_k tokens, then to the nucleus of mass top_p, and sampled from `seed`.
    """
    _check(model, prompts, max_new_tokens)
    if max_new_tokens == 0:
        return [[] for _ in prompts]
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    cfg = model.cfg
    tokens, lengths, live = _pad(prompts, cfg.max_seq_len)
    cache_len = min(_bucket(tokens.shape[1] + max_new_tokens), cfg.max_seq_len)
    scalars = {
        "max_new_tokens": jnp.int32(max_new_tokens),
        "eos_id": jnp.int32(_NO_TOKEN if eos_id is None else eos_id),
        "temperature": jnp.float32(max(temperature, 1e-6)),
        "top_k": jnp.int32(min(top_k or cfg.vocab_size, cfg.vocab_size)),
        "top_p": jnp.float32(1.0 if top_p is None else top_p),
        "seed": jnp.uint32(seed),
    }
    graphdef, state = nnx.split(model)
    out = _generate(
        graphdef,
        state,
        jnp.asarray(tokens),
        jnp.asarray(lengths),
        jnp.asarray(live),
        scalars,
        cache_len=cache_len,
        sample=temperature > 0,
        cut=top_k is not None or top_p is not None,
    )
    out = np.asarray(out)
    return [_trim(out[i], eos_id, max_new_tokens) for i in range(len(prompts))]


# ---------------------------------------------------------------------------- text


Tokenizer = TextTokenizer | ChatTokenizer


def prompt_ids(tokenizer: Tokenizer, prompt: str) -> list[int]:
    """The ids training puts before a completion: the bundled framing or the chat template."""
    if isinstance(tokenizer, TextTokenizer):
        return tokenizer.encode_prompt(prompt)
    return tokenizer.encode_text(tokenizer.prompt_text(Rendered(prompt, "", None)))


def decode_completion(tokenizer: Tokenizer, ids: list[int]) -> str:
    """Generated ids as text, with the bundled tokenizer's answer token as ANSWER_MARKER.

    Decoding drops special tokens, so the answer token is put back as its text for
    `extract_answer`; chat tokenizers put the answer on its own last line instead.
    """
    if not isinstance(tokenizer, TextTokenizer) or tokenizer.answer_id not in ids:
        return tokenizer.decode(ids)
    cut = len(ids) - 1 - ids[::-1].index(tokenizer.answer_id)
    return f"{tokenizer.decode(ids[:cut])}\n{ANSWER_MARKER} {tokenizer.decode(ids[cut + 1 :])}"


def cut_at_stop(text: str, stop: Sequence[str] | None) -> str:
    """text up to the earliest of the stop strings (none: unchanged)."""
    cuts = [i for s in stop or () if s and (i := text.find(s)) >= 0]
    return text[: min(cuts)] if cuts else text


def generate_text(
    model: Decoder,
    tokenizer: Tokenizer,
    prompts: list[str],
    *,
    max_new_tokens: int,
    stop: list[str] | None = None,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 0,
) -> list[str]:
    """Render prompts as training does, generate until EOS, and cut at a stop string."""
    new = generate_tokens(
        model,
        [prompt_ids(tokenizer, p) for p in prompts],
        max_new_tokens=max_new_tokens,
        eos_id=tokenizer.eos_id,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        seed=seed,
    )
    return [cut_at_stop(decode_completion(tokenizer, ids), stop) for ids in new]


def compiled_programs() -> int:
    """How many generation programs are compiled (one per shape bucket and mode)."""
    # jax.jit's own count of cached executables (one per static arguments and shapes).
    return int(getattr(_generate, "_cache_size")())  # noqa: B009  (private, not typed)
