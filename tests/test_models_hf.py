"""Tests for tunixrt.models.hf: logits equal transformers' for every family, export
round trips, sharded folders, and a clear error for each bad checkpoint."""

from __future__ import annotations

import dataclasses
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import transformers
from flax import nnx
from safetensors import safe_open
from safetensors.numpy import save_file

from tests.helpers.hf import FAMILIES, VOCAB, HFCase, build_hf_cases, hf_logits, random_tokens
from tests.helpers.models import tiny_decoder_config
from tunixrt.models import Decoder
from tunixrt.models.hf import (
    CheckpointError,
    decoder_config,
    hf_config,
    load_pretrained,
    read_config,
    save_pretrained,
)


@pytest.fixture(scope="module")
def hf_cases(tmp_path_factory) -> dict[str, HFCase]:
    return build_hf_cases(tmp_path_factory.mktemp("hf"))


@nnx.jit
def forward(model, tokens):
    return model(tokens)


def logits_of(model: Decoder, tokens: np.ndarray) -> np.ndarray:
    return np.asarray(forward(model, jnp.asarray(tokens)))


def from_pretrained(path):
    return transformers.AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager")


# ---------------------------------------------------------------- logits and export


@pytest.mark.parametrize("family", FAMILIES)
def test_logits_match_transformers(hf_cases, family):
    case: HFCase = hf_cases[family]
    model = load_pretrained(case.path)
    assert model.cfg.family == json.loads((case.path / "config.json").read_text())["model_type"]
    got = logits_of(model, case.tokens)
    np.testing.assert_allclose(got, case.logits, atol=1e-4, rtol=0)
    assert np.abs(case.logits).max() > 3.0  # not a comparison of near-zero values


@pytest.mark.parametrize("family", FAMILIES)
def test_reference_attention_matches_transformers_and_the_fused(hf_cases, family):
    case: HFCase = hf_cases[family]
    reference = load_pretrained(case.path, attention="reference")
    assert not any(layer.attn.fused for layer in reference.layers)
    got = logits_of(reference, case.tokens)
    np.testing.assert_allclose(got, case.logits, atol=1e-4, rtol=0)
    np.testing.assert_allclose(got, logits_of(load_pretrained(case.path), case.tokens), atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_export_reloads_in_transformers(hf_cases, family, tmp_path):
    case: HFCase = hf_cases[family]
    save_pretrained(load_pretrained(case.path), tmp_path, tokenizer_dir=case.path)

    config = json.loads((tmp_path / "config.json").read_text())
    original = json.loads((case.path / "config.json").read_text())
    assert config["model_type"] == original["model_type"]
    assert config["architectures"] == original["architectures"]
    assert config["eos_token_id"] == 2  # carried over from the source checkpoint
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        assert (tmp_path / name).is_file()
    np.testing.assert_allclose(
        hf_logits(from_pretrained(tmp_path), case.tokens), case.logits, atol=1e-6, rtol=0
    )


def test_exported_tokenizer_loads_in_transformers(hf_cases, tmp_path):
    # (With model_type qwen2, transformers would swap in its Qwen2Tokenizer class.)
    case = hf_cases["llama3"]
    save_pretrained(load_pretrained(case.path), tmp_path, tokenizer_dir=case.path)
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert tokenizer("t5 t7 t9")["input_ids"] == [5, 7, 9]
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "t3"}], tokenize=False)
    assert chat.strip() == "t3"


@pytest.mark.parametrize("tied", [True, False])
def test_model_trained_from_scratch_exports_as_llama(tmp_path, tied):
    cfg = tiny_decoder_config(
        vocab_size=VOCAB, dim=64, ffn_dim=96, tie_embeddings=tied, init_std=0.15
    )
    model = Decoder(cfg, rngs=nnx.Rngs(params=0))
    save_pretrained(model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["dtype"] == "float32"
    tokens = random_tokens(seed=2)
    hf = hf_logits(from_pretrained(tmp_path), tokens)
    np.testing.assert_allclose(hf, logits_of(model, tokens), atol=1e-4, rtol=0)
    assert read_config(tmp_path) == dataclasses.replace(cfg, init_std=0.02)


def test_bfloat16_load_and_export(hf_cases, tmp_path):
    case = hf_cases["llama3"]
    model = load_pretrained(case.path, dtype="bfloat16")
    params = jax.tree.leaves(nnx.state(model, nnx.Param))
    assert {p.dtype for p in params} == {jnp.dtype("bfloat16")}
    got = logits_of(model, case.tokens)
    assert np.linalg.norm(got - case.logits) / np.linalg.norm(case.logits) < 0.05

    save_pretrained(model, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == "bfloat16"
    with safe_open(tmp_path / "model.safetensors", framework="np") as f:
        assert f.get_slice("model.embed_tokens.weight").get_dtype() == "BF16"


def test_sharding_argument_places_parameters(hf_cases):
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    model = load_pretrained(hf_cases["qwen3"].path, sharding=sharding)
    assert all(p.sharding == sharding for p in jax.tree.leaves(nnx.state(model)))


# ---------------------------------------------------------------- sharded folders


def test_loads_sharded_transformers_checkpoint(hf_cases, tmp_path):
    case = hf_cases["qwen2"]
    case.model.save_pretrained(tmp_path, max_shard_size="40KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    assert len(list(tmp_path.glob("model-*-of-*.safetensors"))) > 2
    np.testing.assert_array_equal(
        logits_of(load_pretrained(tmp_path), case.tokens),
        logits_of(load_pretrained(case.path), case.tokens),
    )


def test_sharded_export_round_trips(hf_cases, tmp_path):
    case = hf_cases["gemma2"]
    model = load_pretrained(case.path)
    save_pretrained(model, tmp_path, max_shard_bytes=60_000)
    shards = sorted(tmp_path.glob("model-*-of-*.safetensors"))
    assert len(shards) > 2 and not (tmp_path / "model.safetensors").exists()
    np.testing.assert_allclose(
        hf_logits(from_pretrained(tmp_path), case.tokens), case.logits, atol=1e-6, rtol=0
    )
    back = load_pretrained(tmp_path)
    for a, b in zip(
        jax.tree.leaves(nnx.state(model)), jax.tree.leaves(nnx.state(back)), strict=True
    ):
        np.testing.assert_array_equal(a, b)

    save_pretrained(model, tmp_path)  # a re-export in one file leaves no stale shards
    assert sorted(p.name for p in tmp_path.glob("*.safetensors")) == ["model.safetensors"]


# ---------------------------------------------------------------- bad checkpoints


@pytest.fixture
def llama_copy(hf_cases, tmp_path):
    """A writable copy of the llama3 checkpoint folder."""
    folder = tmp_path / "copy"
    shutil.copytree(hf_cases["llama3"].path, folder)
    return folder


def rewrite_config(folder, **changes):
    path = folder / "config.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | changes))


def test_missing_config_json(tmp_path):
    with pytest.raises(CheckpointError, match=r"no config\.json"):
        load_pretrained(tmp_path)


def test_pickle_only_checkpoint_is_refused(llama_copy):
    (llama_copy / "model.safetensors").unlink()
    (llama_copy / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(CheckpointError, match=r"pytorch_model\.bin.*never unpickles.*safetensors"):
        load_pretrained(llama_copy)


def test_no_weights(llama_copy):
    (llama_copy / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"no model\.safetensors"):
        load_pretrained(llama_copy)


def test_unsupported_architecture_lists_supported(llama_copy):
    rewrite_config(llama_copy, model_type="falcon", architectures=["FalconForCausalLM"])
    with pytest.raises(CheckpointError) as err:
        load_pretrained(llama_copy)
    message = str(err.value)
    assert "'falcon'" in message and "FalconForCausalLM" in message
    assert "supported model_types: gemma, gemma2, gpt2, llama, mistral, qwen2, qwen3" in message


def test_missing_tensors_are_named(llama_copy):
    weights = llama_copy / "model.safetensors"
    with safe_open(weights, framework="np") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    del tensors["model.layers.1.mlp.up_proj.weight"]
    del tensors["model.norm.weight"]
    save_file(tensors, str(weights), metadata={"format": "pt"})
    with pytest.raises(
        CheckpointError,
        match=r"missing tensor\(s\) model\.layers\.1\.mlp\.up_proj\.weight, model\.norm\.weight",
    ):
        load_pretrained(llama_copy)


def test_shape_mismatch_names_tensor_and_shapes(llama_copy):
    rewrite_config(llama_copy, intermediate_size=80)
    with pytest.raises(
        CheckpointError,
        match=r"model\.layers\.0\.mlp\.gate_proj\.weight: expected \[80, 64\], got \[96, 64\]",
    ):
        load_pretrained(llama_copy)


def test_missing_shard_is_named(hf_cases, tmp_path):
    hf_cases["qwen2"].model.save_pretrained(tmp_path, max_shard_size="40KB")
    shard = sorted(tmp_path.glob("model-*-of-*.safetensors"))[1]
    shard.unlink()
    with pytest.raises(CheckpointError, match=rf"shard file\(s\) missing.*{shard.name}"):
        load_pretrained(tmp_path)


def test_unsupported_rope_type(llama_copy):
    rewrite_config(
        llama_copy, rope_parameters={"rope_type": "yarn", "rope_theta": 1e4, "factor": 4.0}
    )
    with pytest.raises(CheckpointError, match=r"rope type 'yarn' is not supported"):
        read_config(llama_copy)


def test_llama3_rope_without_its_factors(llama_copy):
    rewrite_config(llama_copy, rope_parameters={"rope_type": "llama3", "factor": 8.0})
    with pytest.raises(CheckpointError, match=r"needs 'low_freq_factor'"):
        read_config(llama_copy)


def test_tokenizer_dir_without_tokenizer_is_refused_before_writing(hf_cases, tmp_path):
    model = load_pretrained(hf_cases["gpt2"].path)
    with pytest.raises(CheckpointError, match=r"no tokenizer files"):
        save_pretrained(model, tmp_path / "out", tokenizer_dir=tmp_path)
    assert not (tmp_path / "out").exists()


def test_export_refuses_switches_the_family_cannot_hold(tmp_path):
    cfg = tiny_decoder_config(
        vocab_size=32, dim=16, n_layers=1, n_heads=2, ffn_dim=32, max_seq_len=8, qk_norm=True
    )
    with pytest.raises(CheckpointError, match=r"a llama checkpoint cannot hold .*qk_norm=True"):
        save_pretrained(Decoder(cfg, rngs=nnx.Rngs(0)), tmp_path)
    exported = hf_config(dataclasses.replace(cfg, family="qwen3"))
    assert exported["architectures"] == ["Qwen3ForCausalLM"]


# ---------------------------------------------------------------- config reading


def read(hf, **kw):
    return decoder_config(hf, source="test", **kw)


BASE = dict(
    vocab_size=32,
    hidden_size=16,
    intermediate_size=24,
    num_hidden_layers=4,
    num_attention_heads=2,
    num_key_value_heads=1,
)


def test_legacy_rope_keys_are_read():
    # transformers 4 wrote rope_theta and rope_scaling at the top level.
    cfg = read(
        BASE
        | dict(
            model_type="llama",
            rope_theta=500000.0,
            max_position_embeddings=1024,
            rope_scaling=dict(
                rope_type="llama3", factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0
            ),
        )
    )
    assert (cfg.rope_theta, cfg.rope_scaling, cfg.rope_factor) == (500000.0, "llama3", 32.0)
    assert cfg.rope_original_max_len == 1024  # defaults to max_position_embeddings, as HF
    linear = read(BASE | dict(model_type="llama", rope_scaling=dict(type="linear", factor=2.0)))
    assert (linear.rope_scaling, linear.rope_factor) == ("linear", 2.0)


def test_gemma2_without_layer_types_alternates_sliding_layers():
    cfg = read(BASE | dict(model_type="gemma2", head_dim=8, sliding_window=16))
    assert [cfg.is_sliding(i) for i in range(4)] == [True, False, True, False]
    assert (cfg.attn_softcap, cfg.final_softcap, cfg.query_scale) == (50.0, 30.0, 256.0)
    off = read(BASE | dict(model_type="gemma2", head_dim=8, attn_logit_softcapping=None))
    assert off.attn_softcap is None


def test_qwen2_window_only_with_use_sliding_window():
    assert read(BASE | dict(model_type="qwen2", sliding_window=8)).sliding_window is None
    on = read(
        BASE
        | dict(model_type="qwen2", sliding_window=8, use_sliding_window=True, max_window_layers=2)
    )
    assert on.sliding_window == 8 and on.sliding_layers == (2, 3)


def test_family_from_architectures_when_model_type_is_absent():
    assert read(BASE | dict(architectures=["MistralForCausalLM"])).family == "mistral"


def test_read_config_dtypes(hf_cases):
    cfg = read_config(hf_cases["gemma"].path, dtype="bfloat16", param_dtype="float32")
    assert (cfg.dtype, cfg.param_dtype, cfg.head_dim, cfg.embed_scale) == (
        "bfloat16",
        "float32",
        32,
        True,
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_config_round_trip(hf_cases, family):
    cfg = read_config(hf_cases[family].path)
    assert read(hf_config(cfg)) == cfg
