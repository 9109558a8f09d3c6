"""One model config: `model.*` carries every layout switch of the decoder, so a model
trained from scratch can take any family's layout, and DecoderConfig is derived from it
by name (nothing copied by hand)."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from tunixrt.composition import compose
from tunixrt.config import ConfigError, ModelConfig, NormKind, validate
from tunixrt.models.decoder import DecoderConfig
from tunixrt.models.factory import decoder_config

# Keys of ModelConfig that say where weights come from or how to train, not a layout.
NOT_LAYOUT = {"name", "path", "lora", "head_dim"}


def test_every_layout_field_is_a_model_key_and_back():
    model_keys = {f.name for f in dataclasses.fields(ModelConfig)}
    decoder_keys = {f.name for f in dataclasses.fields(DecoderConfig)}
    from_run = {"vocab_size", "dtype", "param_dtype", "explicit_head_dim"}
    assert decoder_keys - from_run <= model_keys, decoder_keys - from_run - model_keys
    assert model_keys - NOT_LAYOUT <= decoder_keys, model_keys - NOT_LAYOUT - decoder_keys


def test_family_switches_reach_a_model_trained_from_scratch():
    cfg = validate(
        compose(
            [
                "debug=fast",
                "model.qk_norm=true",
                "model.head_dim=24",
                "model.sliding_window=16",
                "model.sliding_layers=[1]",
                "model.attn_softcap=50.0",
                "model.final_softcap=30.0",
                "model.norm=layer",
                "model.family=qwen3",
            ]
        )
    )
    d = decoder_config(cfg.model, vocab_size=2048, dtype=jnp.dtype("bfloat16"))
    assert (d.qk_norm, d.head_dim, d.sliding_window, d.sliding_layers) == (True, 24, 16, (1,))
    assert (d.attn_softcap, d.final_softcap, d.norm, d.family) == (
        50.0,
        30.0,
        NormKind.layer,
        "qwen3",
    )
    assert (d.vocab_size, d.dtype, d.param_dtype) == (2048, "bfloat16", "float32")
    for key in ("dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim", "max_seq_len"):
        assert getattr(d, key) == getattr(cfg.model, key), key


def test_defaults_give_the_llama_layout_unchanged():
    cfg = validate(compose(["model=llama_tiny"]))
    d = decoder_config(cfg.model, vocab_size=2048, dtype=jnp.dtype("float32"))
    llama = DecoderConfig(
        vocab_size=2048,
        dim=256,
        n_layers=6,
        n_heads=8,
        n_kv_heads=4,
        ffn_dim=768,
        max_seq_len=1024,
        tie_embeddings=True,
    )
    assert d == llama


def test_bad_choices_and_combinations_name_the_key():
    with pytest.raises(Exception, match=r"model\.position"):
        compose(["model.position=absolute"])
    cfg = validate(compose(["debug=fast", "model.sliding_window=8", "model.sliding_layers=[7]"]))
    with pytest.raises(ConfigError, match=r"sliding_layers \[7\].*2-layer"):
        decoder_config(cfg.model, vocab_size=2048, dtype=jnp.dtype("float32"))
    with pytest.raises(ConfigError, match=r"model\.attn_softcap"):
        validate(compose(["model.attn_softcap=-1"]))


GPT2_LAYOUT = [
    "model.family=gpt2",
    "model.n_kv_heads=4",  # GPT-2 attention has as many kv heads as query heads
    "model.norm=layer",
    "model.position=learned",
    "model.activation=gelu_tanh",
    "model.gated_mlp=false",
    "model.qkv_bias=true",
    "model.out_bias=true",
    "model.mlp_bias=true",
]
QWEN3_LAYOUT = ["model.family=qwen3", "model.qk_norm=true", "model.head_dim=32"]


@pytest.mark.slow
@pytest.mark.parametrize("layout", [GPT2_LAYOUT, QWEN3_LAYOUT], ids=["gpt2", "qwen3"])
def test_a_scratch_model_in_another_layout_trains_and_exports(layout, tmp_path):
    """Trained from scratch in a family's layout, exported, and read by transformers
    with the logits tunixrt computes."""
    import torch
    import transformers

    from tunixrt.cli.main import main as tunixrt_cli
    from tunixrt.models.hf import load_pretrained
    from tunixrt.train import train

    cfg = compose(["debug=fast", "trainer.max_steps=2", "registry.url=null", *layout])
    result = train(cfg, tmp_path / "run")
    assert result.final_step == 2 and np.isfinite(result.train_losses[2])
    assert tunixrt_cli(["export", str(tmp_path / "run"), str(tmp_path / "hf")]) == 0
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    assert hf.config.model_type == layout[0].split("=")[1]
    tokens = np.random.default_rng(0).integers(0, 2048, (2, 16), dtype=np.int32)
    with torch.no_grad():
        want = hf(input_ids=torch.from_numpy(tokens.astype(np.int64))).logits.numpy()
    ours = load_pretrained(tmp_path / "hf")
    np.testing.assert_allclose(np.asarray(ours(tokens)), want, atol=1e-4)
