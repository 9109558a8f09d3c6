"""`init.from`: a new run starts from another run's weights (by run folder, checkpoint
step folder, run id or exported Hugging Face folder) with a fresh optimizer; the
registry records the parent and `tunixrt runs show` prints the lineage."""

from __future__ import annotations

import contextlib
import io
import shutil
from contextlib import closing
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx

from tests.helpers.config import compose_train
from tunixrt.checkpoint import Checkpointer
from tunixrt.cli.main import main as tunixrt_cli
from tunixrt.config import ConfigError, validate
from tunixrt.export import export, load_model
from tunixrt.models.lora import LoRALinear
from tunixrt.registry import Registry, get_run, run_id_of_folder
from tunixrt.train.init_from import find_origin, start_from
from tunixrt.train.loop import train
from tunixrt.train.setup import setup
from tunixrt.train.step import eval_step

pytestmark = pytest.mark.slow

FAST = ["debug=fast", "trainer.log_every=1", "checkpoint.every_steps=3"]
LORA = ["model.lora.rank=4"]


def run_cfg(registry: str, *extra: str) -> object:
    return compose_train([*FAST, f"registry.url={registry}", *extra])


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('lineage') / 'registry.db'}"


@pytest.fixture(scope="module")
def stage_a(tmp_path_factory: pytest.TempPathFactory, registry: str) -> Path:
    """Three steps from scratch: the source of the other runs."""
    folder = tmp_path_factory.mktemp("a") / "run"
    train(run_cfg(registry, "trainer.max_steps=3", "run.name=stage-a"), folder)
    return folder


@pytest.fixture(scope="module")
def lora_a(tmp_path_factory: pytest.TempPathFactory, registry: str) -> Path:
    folder = tmp_path_factory.mktemp("lora-a") / "run"
    # a high learning rate, so that the adapters are far from zero after three steps
    train(run_cfg(registry, *LORA, "trainer.max_steps=3", "optimizer.lr=0.05"), folder)
    return folder


def params(model: nnx.Module) -> dict[str, np.ndarray]:
    flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
    return {".".join(map(str, p)): np.asarray(jax.device_get(v.get_value())) for p, v in flat}


def source_model(run_dir: Path, step: int = 3) -> nnx.Module:
    ck = Checkpointer(run_dir / "checkpoints", every_steps=0, keep=100, read_only=True)
    with closing(ck):
        return load_model(ck, step)[2]


def started(registry: str, given: str, *extra: str) -> nnx.Module:
    """A model of a new run's config with init.from=`given` applied, as a run does."""
    cfg = validate(run_cfg(registry, f"init.from={given}", *extra))
    origin = find_origin(cfg)
    assert origin is not None
    s = setup(cfg)
    start_from(origin, s.model, s.data.tokenizer)
    return s.model


def logits(model: nnx.Module) -> np.ndarray:
    ids = np.arange(1, 41, dtype=np.int32).reshape(2, 20)
    return np.asarray(model(ids))


@pytest.mark.parametrize("form", ["run folder", "step folder", "run id"])
def test_every_form_of_the_source_gives_its_weights(registry, stage_a, form):
    with Registry.open(registry) as reg:
        run_id = run_id_of_folder(reg, stage_a)
    assert run_id is not None
    given = {
        "run folder": str(stage_a),
        "step folder": str(stage_a / "checkpoints" / "3"),
        "run id": run_id,
    }[form]
    got, want = params(started(registry, given)), params(source_model(stage_a))
    assert got.keys() == want.keys()
    for name, value in want.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)


def test_an_exported_folder_gives_the_same_function(registry, stage_a, tmp_path):
    folder = export(str(stage_a), tmp_path / "hf")
    np.testing.assert_allclose(
        logits(started(registry, str(folder))), logits(source_model(stage_a)), atol=1e-5
    )


def test_lora_sources_are_merged_and_lora_runs_start_with_zero_adapters(registry, stage_a, lora_a):
    source = source_model(lora_a)
    deltas = [
        float(np.abs(np.asarray(m.lora_b[...])).max())
        for _, m in nnx.iter_modules(source)
        if isinstance(m, LoRALinear)
    ]
    assert max(deltas) > 1e-3  # the source's adapters change its function
    merged = started(registry, str(lora_a))
    assert not any(isinstance(m, LoRALinear) for _, m in nnx.iter_modules(merged))
    np.testing.assert_allclose(logits(merged), logits(source), atol=1e-5)
    # a LoRA run from a full model: the source is its base, its adapters start at zero
    adapted = started(registry, str(stage_a), *LORA)
    assert any(isinstance(m, LoRALinear) for _, m in nnx.iter_modules(adapted))
    np.testing.assert_allclose(logits(adapted), logits(source_model(stage_a)), atol=1e-5)


def test_a_run_trains_on_from_the_source_and_records_its_lineage(registry, stage_a, tmp_path):
    cfg_b = run_cfg(registry, f"init.from={stage_a}", "trainer.max_steps=2", "run.name=stage-b")
    b = train(cfg_b, tmp_path / "b")
    # its first loss is the source model's loss on the run's first batch: the weights
    # came over, and the optimizer started fresh (step 1 of its own schedule)
    s = setup(validate(cfg_b))
    batch = {k: jax.numpy.asarray(v) for k, v in next(s.data.train).items()}
    loss_sum, count = eval_step(source_model(stage_a), batch, 0)
    assert b.train_losses[1] == pytest.approx(float(loss_sum) / float(count), abs=1e-5)
    assert b.final_step == 2

    c = train(run_cfg(registry, f"init.from={b.run_dir}", "trainer.max_steps=1"), tmp_path / "c")
    with Registry.open(registry) as reg:
        ids = [run_id_of_folder(reg, folder) for folder in (stage_a, b.run_dir, c.run_dir)]
        details = get_run(reg, ids[2])
    assert details.init_from == str((b.run_dir / "checkpoints" / "2").resolve())
    assert [(a.id, a.name) for a in details.lineage] == [(ids[1], "stage-b"), (ids[0], "stage-a")]
    assert details.lineage[0].init_from == str((stage_a / "checkpoints" / "3").resolve())
    assert details.lineage[1].init_from is None

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert tunixrt_cli(["runs", "show", ids[2], "--registry", registry]) == 0
    text = out.getvalue()
    assert "lineage" in text and ids[1][:8] in text and "stage-a" in text


def test_a_resume_does_not_read_the_source_again(registry, tmp_path):
    source = tmp_path / "source"
    train(run_cfg(registry, "trainer.max_steps=3"), source)
    cfg = run_cfg(registry, f"init.from={source}", "trainer.max_steps=3")
    first = train(cfg, tmp_path / "run")
    shutil.rmtree(source)  # gone: a resume needs only the run's own checkpoints
    again = train(run_cfg(registry, f"init.from={source}", "trainer.max_steps=6"), first.run_dir)
    assert again.resumed_from == 3 and again.final_step == 6


def test_a_lora_run_from_a_source_resumes_on_its_saved_base(registry, stage_a, tmp_path):
    same = [f"init.from={stage_a}", *LORA, "optimizer.decay_steps=6"]  # one lr schedule
    first = train(run_cfg(registry, *same, "trainer.max_steps=3"), tmp_path / "run")
    longer = run_cfg(registry, *same, "trainer.max_steps=6")
    again = train(longer, first.run_dir)
    reference = train(longer, tmp_path / "reference")
    assert again.resumed_from == 3
    assert again.train_losses[6] == reference.train_losses[6]


def test_a_source_of_another_shape_names_the_parameters(registry, stage_a, tmp_path):
    with pytest.raises(ConfigError, match=r"init.from: .* does not fit.*shape \(64,"):
        train(run_cfg(registry, f"init.from={stage_a}", "model.ffn_dim=96"), tmp_path / "run")
    assert not any(p.name.isdigit() for p in (tmp_path / "run" / "checkpoints").glob("*"))


def test_a_missing_source_fails_before_the_run_is_registered(registry, tmp_path):
    missing = tmp_path / "nowhere" / "run"
    with pytest.raises(ConfigError, match=r"init.from=.*nowhere"):
        train(run_cfg(registry, f"init.from={missing}"), tmp_path / "run")
    with Registry.open(registry) as reg:
        assert run_id_of_folder(reg, tmp_path / "run") is None


def test_another_tokenizer_is_refused(registry, stage_a, small_tokenizer, tmp_path):
    other = [f"dataset.tokenizer={small_tokenizer}"]
    with pytest.raises(ConfigError, match="another vocabulary"):
        train(run_cfg(registry, f"init.from={stage_a}", *other), tmp_path / "run")
