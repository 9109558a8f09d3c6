"""`train()` from plain Python: a config built from the typed dataclasses, a folder, no
Hydra; the same config the Hydra app composes, and a run that reports like one."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hydra.core.hydra_config import HydraConfig

from tests.helpers.tensorboard import read_scalars
from tunixrt.composition import compose
from tunixrt.config import (
    CheckpointConfig,
    ConfigError,
    DatasetConfig,
    EvalConfig,
    ModelConfig,
    OptimizerConfig,
    Progress,
    RegistryConfig,
    TrainConfig,
    TrainerConfig,
    validate,
)
from tunixrt.paths import repo_path
from tunixrt.registry import Registry, get_run, list_runs
from tunixrt.train import RunContext, train

pytestmark = pytest.mark.slow


def python_config(registry_url: str) -> TrainConfig:
    """What `debug=fast trainer.max_steps=4` composes, written out as dataclasses."""
    data = repo_path("datasets", "dev-reasoning")
    return TrainConfig(
        dataset=DatasetConfig(
            name="dev_reasoning",
            path=str(data / "train.jsonl"),
            valid_path=str(data / "valid.jsonl"),
            tokenizer=str(data / "tokenizer.json"),
            eval_path=str(data / "eval.jsonl"),
        ),
        model=ModelConfig(
            name="llama_tiny",
            dim=64,
            n_layers=2,
            n_heads=4,
            n_kv_heads=2,
            ffn_dim=128,
            max_seq_len=256,
        ),
        optimizer=OptimizerConfig(name="adamw", lr=3e-3, weight_decay=0.1, warmup_steps=1),
        trainer=TrainerConfig(
            max_steps=4,
            batch_size=4,
            seq_len=192,
            eval_every=3,
            eval_batches=1,
            log_every=2,
            progress=Progress.log,
        ),
        checkpoint=CheckpointConfig(every_steps=3, keep=2),
        eval=EvalConfig(max_examples=4, max_new_tokens=16, samples=2),
        registry=RegistryConfig(url=registry_url),
    )


def test_a_typed_config_equals_what_hydra_composes(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    composed = validate(compose(["debug=fast", "trainer.max_steps=4", f"registry.url={url}"]))
    assert composed == validate(python_config(url))


def test_train_from_python_without_hydra(tmp_path):
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    assert not HydraConfig.initialized()
    context = RunContext(tmp_path / "run", overrides=("optimizer.lr=0.001",))
    result = train(python_config(url), context)
    assert result.final_step == 4 and result.resumed_from is None
    logged = dict(read_scalars(tmp_path / "run" / "tb")["train/loss"])
    assert logged == pytest.approx(result.train_losses) and sorted(logged) == [1, 2, 4]
    assert sorted(int(p.name) for p in (tmp_path / "run" / "checkpoints").iterdir()) == [3, 4]
    with Registry.open(url) as reg:
        (summary,) = list_runs(reg)
        run = get_run(reg, summary.id)
    assert run.status == "completed" and run.last_step == 4
    assert run.overrides == ["optimizer.lr=0.001"] and run.sweep_id is None
    assert run.run_dir == str((tmp_path / "run").resolve())


def test_a_folder_is_enough_and_the_same_call_resumes(tmp_path):
    cfg = python_config(f"sqlite:///{tmp_path / 'registry.db'}")
    cfg.trainer.max_steps = 3
    train(cfg, tmp_path / "run")
    cfg.trainer.max_steps = 4
    again = train(cfg, str(tmp_path / "run"))
    assert again.resumed_from == 3 and again.final_step == 4


def test_a_missing_or_wrong_value_names_its_key():
    with pytest.raises(ConfigError, match=r"dataset\.name"):
        validate(TrainConfig())
    cfg = python_config("sqlite://")
    cfg.trainer.max_steps = "many"  # type: ignore[assignment]
    with pytest.raises(ConfigError, match=r"trainer\.max_steps"):
        validate(cfg)
    cfg = python_config("sqlite://")
    cfg.model.norm = "batch"  # type: ignore[assignment]
    with pytest.raises(ConfigError, match=r"model\.norm"):
        validate(cfg)


@pytest.mark.parametrize(
    ("module", "must_not_load"),
    [("tunixrt.train", "hydra"), ("tunixrt.registry", "jax"), ("tunixrt.cli.runs", "jax")],
)
def test_dependencies_point_one_way(module, must_not_load):
    """The training library needs no Hydra; the registry and its CLI need no JAX."""
    code = f"import sys, {module}; print(any(m.split('.')[0] == {must_not_load!r} for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
