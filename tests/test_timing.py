"""`tunixrt bench` (tunixrt.train.timing) reports figures that agree with each other and
with the model it built; no figure is compared against a time."""

from __future__ import annotations

import json

import jax.numpy as jnp
import pytest

from tunixrt.cli.main import main as tunixrt_cli
from tunixrt.composition import compose
from tunixrt.config import validate
from tunixrt.models.decoder import flops_per_token, num_params
from tunixrt.models.factory import decoder_config

pytestmark = pytest.mark.slow
OVERRIDES = ["debug=fast", "registry.url=null"]


@pytest.fixture(scope="module")
def bench_args(tmp_path_factory) -> list[str]:
    cache = tmp_path_factory.mktemp("jax_cache")
    return ["bench", *OVERRIDES, f"device.compile_cache_dir={cache}"]


def test_bench_json_agrees_with_the_model_and_itself(capsys, bench_args):
    argv = [*bench_args, "--steps", "2", "--warmup", "1", "--checkpoint", "--json"]
    assert tunixrt_cli(argv) == 0
    out = json.loads(capsys.readouterr().out)
    cfg = validate(compose(OVERRIDES))
    dcfg = decoder_config(cfg.model, vocab_size=2048, dtype=jnp.dtype("float32"))
    tokens = cfg.trainer.batch_size * cfg.trainer.seq_len
    assert out["batch_tokens"] == tokens and out["devices"] >= 1
    assert out["params_millions"] == pytest.approx(num_params(dcfg) / 1e6)
    assert out["tokens_per_second"] == pytest.approx(tokens / out["step_seconds"])
    flops = flops_per_token(dcfg, cfg.trainer.seq_len) * tokens / out["step_seconds"]
    assert out["model_tflops_per_second"] == pytest.approx(flops / 1e12)
    assert out["mfu"] is None  # no known peak on a CPU
    assert out["compile_seconds"] > 0 and out["peak_memory_mib"] > 0
    # XLA's plan: float32 parameters and AdamW's two moments come in; activations,
    # logits and gradients are temporaries
    assert out["step_argument_mib"] * 2**20 >= 12 * num_params(dcfg)
    assert out["step_temp_mib"] > 0
    gen = out["generation"]
    # the trainer's rows, prompts of half a row and as many new tokens, within the model
    assert gen["rows"] == cfg.trainer.batch_size and gen["prompt_tokens"] == 64
    assert gen["prompt_tokens"] + gen["new_tokens"] <= cfg.trainer.seq_len
    rows, prompt = gen["rows"], gen["prompt_tokens"]
    assert gen["prefill_tokens_per_second"] == pytest.approx(rows * prompt / gen["prefill_seconds"])
    assert gen["decode_tokens_per_second"] == pytest.approx(rows / gen["decode_step_seconds"])
    assert gen["compile_seconds"] > 0
    ck = out["checkpoint"]
    # the float32 parameters at least (random values that compression cannot shrink),
    # and less than them with AdamW's two moments plus generous room for metadata
    assert 4 * num_params(dcfg) <= ck["size_mib"] * 2**20 <= 12 * num_params(dcfg) + 2**20
    assert ck["save_total_seconds"] >= ck["save_blocked_seconds"] >= 0
    assert ck["restore_seconds"] > 0


def test_bench_text_names_every_figure(capsys, bench_args):
    assert tunixrt_cli([*bench_args, "--steps", "1", "--warmup", "0"]) == 0
    text = capsys.readouterr().out
    rows = ("device", "model", "tokens/step", "compile", "step time", "tokens/s", "MFU")
    for row in (*rows, "step buffers", "generation", "prefill", "decode"):
        assert f"\n{row} " in f"\n{text}", row
    assert "n/a (peak unknown)" in text
