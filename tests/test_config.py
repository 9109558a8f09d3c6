"""Config composition: every shipped option composes; bad overrides fail early and
name the key, the value and what is allowed."""

from __future__ import annotations

import re

import jax.numpy as jnp
import pytest

from tests.helpers.config import compose_train
from tests.helpers.paths import ROOT
from tests.helpers.processes import run_train
from tunixrt.config import ConfigError, OptimizerName, Platform, TrainConfig, validate
from tunixrt.errors import InputError
from tunixrt.models.decoder import num_params
from tunixrt.models.factory import decoder_config

OPTIONS = {
    "dataset": ["dev_reasoning", "jsonl"],
    "model": [
        "llama_tiny",
        "llama_small",
        "hf",
        "qwen2_5_0_5b_instruct",
        "llama_3_2_1b_instruct",
        "gemma_2_2b_it",
        "gpt2",
        "qwen2_0_5b",
    ],
    "optimizer": ["adamw", "adafactor", "lion", "sgd"],
    "device": ["auto", "cpu", "gpu", "tpu"],
    "debug": ["fast"],
    "experiment": ["small_cosine", "finetune", "learn_check"],
    "hparams_search": ["lr_optuna"],
    "launcher": ["local_parallel", "slurm"],
}


SCRATCH = ("model=llama_tiny", "model=llama_small", "model=qwen2_0_5b")


def test_every_shipped_option_has_a_yaml_and_none_is_untested():
    for group, names in OPTIONS.items():
        shipped = sorted(p.stem for p in (ROOT / "conf" / group).glob("*.yaml"))
        assert shipped == sorted(names), group


@pytest.mark.parametrize("override", [f"{g}={n}" for g, names in OPTIONS.items() for n in names])
def test_each_option_composes_and_validates(override):
    extra = ["dataset.path=/data/x.jsonl"] if override == "dataset=jsonl" else []
    pretrained = override.startswith("model=") and override not in SCRATCH
    if pretrained:
        extra.append("model.path=/models/x")
    cfg = validate(compose_train([override, *extra]))
    assert isinstance(cfg, TrainConfig)
    group, name = override.split("=")
    if group == "optimizer":
        assert cfg.optimizer.name is OptimizerName(name)
    if group == "device":
        assert cfg.device.platform is Platform(name)
    if group == "model":
        assert cfg.model.name == name
        assert (cfg.model.path == "/models/x") == pretrained


def test_default_composition_matches_the_contract_keys():
    cfg = validate(compose_train())
    assert cfg.model.name == "llama_tiny" and cfg.dataset.name == "dev_reasoning"
    assert cfg.optimizer.name is OptimizerName.adamw and cfg.device.platform is Platform.auto
    for key in ("max_steps", "batch_size", "seq_len", "grad_accum", "eval_every", "log_every"):
        assert getattr(cfg.trainer, key) > 0 or key == "eval_every"
    assert cfg.checkpoint.every_steps > 0 and cfg.checkpoint.keep > 0
    assert cfg.registry.url == "auto" and cfg.run.name is None and cfg.run.resume.value == "auto"
    assert cfg.dataset.path.endswith("datasets/dev-reasoning/train.jsonl")


def test_debug_fast_is_small():
    cfg = validate(compose_train(["debug=fast"]))
    assert cfg.trainer.max_steps <= 10 and cfg.model.dim <= 64


# Composition errors are one-line InputErrors (what the CLIs print), naming what is wrong.
def test_wrong_type_fails_at_composition_naming_key_and_value():
    with pytest.raises(InputError) as err:
        compose_train(["optimizer.lr=abc"])
    text = str(err.value)
    assert "optimizer.lr" in text and "abc" in text and "\n" not in text


def test_unknown_enum_value_lists_the_choices():
    with pytest.raises(InputError) as err:
        compose_train(["optimizer.name=adam"])
    text = str(err.value)
    assert "adam" in text and "adamw" in text and "lion" in text and "\n" not in text


def test_unknown_group_option_lists_the_options():
    with pytest.raises(InputError) as err:
        compose_train(["model=nope"])
    text = str(err.value)
    assert "model/nope" in text and "llama_tiny" in text and "llama_small" in text
    assert "\n" not in text


@pytest.mark.parametrize(
    "override, key",
    [
        ("trainer.batch_size=0", "trainer.batch_size"),
        ("trainer.grad_accum=3", "trainer.batch_size"),
        ("optimizer.lr=-1", "optimizer.lr"),
        ("model.n_kv_heads=3", "model.n_kv_heads"),
        ("checkpoint.keep=0", "checkpoint.keep"),
        ("device.mem_fraction=1.5", "device.mem_fraction"),
        ("trainer.seq_len=2048", "trainer.seq_len"),  # llama_tiny accepts 1024
    ],
)
def test_out_of_range_values_fail_on_validation_naming_the_key(override, key):
    cfg = compose_train([override])
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert key in str(err.value) and override.split("=")[1] in str(err.value)


def test_cli_help_and_cfg_job():
    helped = run_train("--help")
    assert helped.returncode == 0 and "tunixrt-train" in helped.stdout
    assert "optimizer: adafactor, adamw, lion, sgd" in helped.stdout
    shown = run_train("--cfg", "job", "optimizer=lion", "optimizer.lr=1e-4")
    assert shown.returncode == 0, shown.stderr
    assert "name: lion" in shown.stdout and "lr: 0.0001" in shown.stdout


def test_cli_bad_override_exits_nonzero_with_the_key():
    bad = run_train("optimizer.lr=abc")
    assert bad.returncode != 0 and "optimizer.lr" in bad.stderr


def test_run_folder_is_run_name_or_a_timestamp():
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from tunixrt.paths import repo_path

    with initialize_config_dir(version_base="1.3", config_dir=str(repo_path("conf"))):
        named = compose("train", overrides=["run.name=exp1"], return_hydra_config=True)
        stamped = compose("train", return_hydra_config=True)
    assert OmegaConf.select(named, "hydra.run.dir") == "outputs/exp1"
    assert re.fullmatch(
        r"outputs/\d{4}-\d\d-\d\d/\d\d-\d\d-\d\d", OmegaConf.select(stamped, "hydra.run.dir")
    )


def test_qwen2_0_5b_has_the_shapes_of_qwen2_5_0_5b():
    cfg = validate(compose_train(["model=qwen2_0_5b"]))
    dcfg = decoder_config(cfg.model, vocab_size=2048, dtype=jnp.dtype("float32"))
    # the parameter count Qwen2.5-0.5B's checkpoint holds (tied embeddings)
    assert num_params(dcfg) == 494_032_768
    assert (dcfg.head_dim, dcfg.family, cfg.model.path) == (64, "qwen2", None)
