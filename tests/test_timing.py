"""`tunixrt bench` (tunixrt.train.timing) reports figures that agree with each other and
with the model it built; no figure is compared against a time."""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers.data import write_jsonl
from tests.test_train_dpo import sums
from tunixrt.cli.main import main as tunixrt_cli
from tunixrt.composition import compose
from tunixrt.config import validate
from tunixrt.models.decoder import num_params
from tunixrt.models.factory import decoder_config
from tunixrt.train.bare import bare_step
from tunixrt.train.peaks import matmul_flops, mfu_peak, vendor_peak
from tunixrt.train.setup import setup, to_device
from tunixrt.train.timing import _alternate, _Contender
from tunixrt.train.torch_reference import torch_step

pytestmark = pytest.mark.slow
OVERRIDES = ["debug=fast", "registry.url=null"]

# debug=fast's model by hand: dim 64, 2 layers, 4 heads of 16, 2 kv heads, MLP 128 (gated),
# the bundled tokenizer's 2048 ids, tied embeddings; 4 rows x 192 positions a step.
# Training FLOPs per token = 6 x matmul weights + 12 x layers x heads x head_dim x seq.
_LAYER_WEIGHTS = 64 * 64 * 2 + 64 * 32 * 2 + 64 * 128 * 3  # q, o; k, v; gate, up, down
_MATMUL_WEIGHTS = 2 * _LAYER_WEIGHTS + 2048 * 64  # the blocks and the output head
HAND_STEP_FLOPS = (6 * _MATMUL_WEIGHTS + 12 * 2 * 4 * 16 * 192) * 4 * 192


@pytest.fixture(scope="module")
def bench_args(tmp_path_factory) -> list[str]:
    cache = tmp_path_factory.mktemp("jax_cache")
    return ["bench", *OVERRIDES, f"device.compile_cache_dir={cache}"]


def _check_timed(t: dict, flops: float, peak_tflops: float, rounds: int) -> None:
    assert len(t["round_step_seconds"]) == rounds and min(t["round_step_seconds"]) > 0
    assert t["step_seconds"] == pytest.approx(float(np.median(t["round_step_seconds"])))
    assert t["tokens_per_second"] == pytest.approx(4 * 192 / t["step_seconds"])
    # packed rows: some padding, and the prompts are outside the loss
    assert 0 < t["loss_tokens_per_second"] < t["nonpad_tokens_per_second"]
    assert t["nonpad_tokens_per_second"] <= t["tokens_per_second"]
    assert t["model_tflops_per_second"] == pytest.approx(flops / t["step_seconds"] / 1e12)
    assert t["mfu"] == pytest.approx(t["model_tflops_per_second"] / peak_tflops)
    assert t["compile_seconds"] > 0


def test_bench_json_agrees_with_the_model_and_itself(capsys, bench_args):
    argv = [*bench_args, "--steps", "2", "--warmup", "1", "--rounds", "2", "--checkpoint"]
    assert tunixrt_cli([*argv, "--bare", "--reference", "torch", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    cfg = validate(compose(OVERRIDES))
    dcfg = decoder_config(cfg.model, vocab_size=2048, dtype=jnp.dtype("float32"))
    tokens = cfg.trainer.batch_size * cfg.trainer.seq_len
    assert out["batch_tokens"] == tokens and out["devices"] >= 1
    assert out["params_millions"] == pytest.approx(num_params(dcfg) / 1e6)
    assert out["step_flops"] == HAND_STEP_FLOPS
    assert out["precision"] == "float32" and out["rounds"] == 2 and out["steps_per_round"] == 2
    # on a CPU the peak is the matmul of the compute dtype measured in the same run
    assert set(out["matmul_gflops"]) == {"float32", "bfloat16"}
    assert min(out["matmul_gflops"].values()) > 0
    assert out["peak_tflops"] == pytest.approx(out["matmul_gflops"]["float32"] / 1e3)
    for name in ("tunixrt", "bare", "reference"):
        _check_timed(out[name], HAND_STEP_FLOPS, out["peak_tflops"], rounds=2)
    assert out["tunixrt"]["step_seconds"] == out["step_seconds"]
    assert out["mfu"] == out["tunixrt"]["mfu"] and out["reference_device"] == "cpu"
    ratios = np.divide(out["reference"]["round_step_seconds"], out["tunixrt"]["round_step_seconds"])
    assert out["speed_vs_reference"] == pytest.approx(float(np.median(ratios)))
    bare = np.divide(out["tunixrt"]["round_step_seconds"], out["bare"]["round_step_seconds"])
    assert out["overhead_vs_bare"] == pytest.approx(float(np.median(bare)) - 1)
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


def test_bench_of_grpo_splits_its_step_and_agrees_with_itself(capsys, bench_args):
    grpo = ["algorithm=grpo", "algorithm.max_new_tokens=16", "dataset.families=[counting]"]
    assert tunixrt_cli([*bench_args, *grpo, "--steps", "2", "--warmup", "0", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["algorithm"] == "grpo"
    assert (out["prompts_per_step"], out["group_size"], out["max_new_tokens"]) == (8, 8, 16)
    assert min(out["sample_seconds"], out["train_seconds"], out["first_step_seconds"]) > 0
    assert out["step_seconds"] == pytest.approx(out["sample_seconds"] + out["train_seconds"])
    assert out["sample_share"] == pytest.approx(out["sample_seconds"] / out["step_seconds"])
    assert 0 < out["completion_tokens"] <= 16 + 1  # EOS counts
    # GRPO trains on exactly the completion tokens it sampled: the same tokens over each
    # part's time
    ratio = out["sampled_tokens_per_second"] / out["trained_tokens_per_second"]
    assert ratio == pytest.approx(out["train_seconds"] / out["sample_seconds"])


def test_bench_of_dpo_times_its_steps(capsys, bench_args, tmp_path):
    """DPO from a file samples nothing; on policy it samples as GRPO does."""
    pairs = write_jsonl(tmp_path / "pairs.jsonl", sums(40, seed=0))
    dpo = ["algorithm=dpo", "algorithm.prompts_per_step=4", "trainer.seq_len=64"]
    steps = ["--steps", "2", "--warmup", "0", "--json"]
    assert tunixrt_cli([*bench_args, *dpo, f"algorithm.pairs={pairs}", *steps]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["algorithm"], out["prompts_per_step"], out["group_size"]) == ("dpo", 4, None)
    assert out["sample_seconds"] == 0 and out["sampled_tokens_per_second"] is None
    assert out["train_seconds"] == pytest.approx(out["step_seconds"])
    assert out["train_seconds"] > 0
    assert out["trained_tokens_per_second"] > 0

    online = [*dpo, "algorithm.max_new_tokens=16", "dataset.families=[counting]"]
    assert tunixrt_cli([*bench_args, *online, *steps]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["group_size"], out["max_new_tokens"]) == (8, 16)
    assert 0 < out["sample_share"] < 1 and out["sampled_tokens_per_second"] > 0
    assert 0 < out["completion_tokens"] <= 16 + 1


def test_bench_text_names_every_figure(capsys, bench_args):
    assert tunixrt_cli([*bench_args, "--steps", "1", "--warmup", "0", "--rounds", "1"]) == 0
    text = capsys.readouterr().out
    rows = ("device", "model", "tokens/step", "compile", "step time", "tokens/s", "MFU")
    for row in (*rows, "matmul", "step buffers", "generation", "prefill", "decode"):
        assert f"\n{row} " in f"\n{text}", row
    assert "measured in this run" in text and "non-padding" in text


def test_bench_refuses_zero_rounds(capsys, bench_args):
    assert tunixrt_cli([*bench_args, "--rounds", "0"]) != 0
    assert "--rounds 0" in capsys.readouterr().err


def test_peaks():
    assert matmul_flops(3) == 2 * 27  # 9 outputs of 3 multiply-adds
    assert vendor_peak("NVIDIA H200") == vendor_peak("NVIDIA H100 80GB HBM3") == 989e12
    assert vendor_peak("NVIDIA L40S") == 362e12 and vendor_peak("NVIDIA A10G") == 125e12
    assert vendor_peak("TPU v5 lite") == 197e12 and vendor_peak("NVIDIA RTX 9999") is None
    assert mfu_peak("gpu", "NVIDIA H200", 1e12).flops == 989e12
    unknown = mfu_peak("gpu", "NVIDIA RTX 9999", 1e12)
    assert unknown.flops is None and "unknown" in unknown.source
    assert mfu_peak("cpu", "cpu", 5e10).flops == 5e10


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory):
    cfg = validate(compose([*OVERRIDES, "device.compile_cache_dir=null", "optimizer.lr=1e-2"]))
    s = setup(cfg)
    return s, [next(s.data.train) for _ in range(2)]


def test_bare_step_is_the_real_step(tiny_setup):
    """The bare step computes tunixrt's loss and update: its losses on two batches equal
    the real step's (the second after one update by each)."""
    s, batches = tiny_setup
    placed = [{k: jax.device_put(v) for k, v in b.items()} for b in batches]
    run = bare_step(s, placed)
    bare = [float(run()) for _ in batches]
    real = [float(s.train_step(s.model, s.optimizer, to_device(b, s))["loss"]) for b in batches]
    np.testing.assert_allclose(bare, real, rtol=1e-5)
    assert bare[0] != bare[1]


def test_torch_reference_starts_uniform_and_learns(tiny_setup):
    """transformers' random init gives the loss of a uniform guess over the 2048 ids,
    and AdamW steps on one batch lower it."""
    s, batches = tiny_setup
    run, sync = torch_step(s, batches[:1])
    losses = [float(run()) for _ in range(4)]
    sync()
    assert losses[0] == pytest.approx(math.log(2048), abs=0.3)
    assert losses[-1] < losses[0] - 0.1


def test_alternated_rounds_start_with_an_untimed_step():
    """Rounds go a, b, a, b; with two implementations each round begins with one step
    of its own that is not in its time, alone none is added."""
    calls: list[str] = []

    def contender(name: str) -> _Contender:
        def step() -> tuple[int, int]:
            calls.append(name)
            return 1, 1

        return _Contender(name, step, lambda: None)

    both = _alternate([contender("a"), contender("b")], steps=3, warmup=1, rounds=2)
    # compile step + 1 warmup each, then per round 1 untimed + 3 timed
    assert calls == ["a", "a", "b", "b"] + (["a"] * 4 + ["b"] * 4) * 2
    assert [len(rounds) for _, rounds in both.values()] == [2, 2]
    assert all(r[1] == 3 for _, rounds in both.values() for r in rounds)  # 3 timed steps
    calls.clear()
    _alternate([contender("a")], steps=3, warmup=0, rounds=2)
    assert calls == ["a"] * 7
