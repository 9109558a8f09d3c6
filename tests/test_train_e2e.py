"""End to end: `tunixrt-train debug=fast` as a user runs it, its TensorBoard events read
back with TensorBoard's reader, and its checkpoint restored with orbax."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx

from tests.helpers.config import compose_train
from tests.helpers.processes import run_train
from tests.helpers.tensorboard import read_scalars
from tunixrt.config import validate
from tunixrt.data.pipeline import load_data
from tunixrt.devices import setup_devices
from tunixrt.models.factory import build_model
from tunixrt.train.setup import evaluate

pytestmark = pytest.mark.slow
OVERRIDES = [
    "debug=fast",
    "trainer.max_steps=6",
    "trainer.log_every=2",
    "trainer.eval_every=3",
    "checkpoint.every_steps=3",
    "checkpoint.keep=2",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "debug_fast"
    proc = run_train(*OVERRIDES, f"hydra.run.dir={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"run folder:  {out}" in proc.stdout
    return out


def test_run_folder_layout(run_dir):
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert (run_dir / ".hydra" / "overrides.yaml").read_text().count("debug=fast") == 1
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))


def test_tensorboard_has_one_point_per_logged_step(run_dir):
    scalars = read_scalars(run_dir / "tb")
    for tag in ("train/loss", "train/lr", "train/grad_norm"):
        assert [s for s, _ in scalars[tag]] == [1, 2, 4, 6], tag
    assert [s for s, _ in scalars["eval/loss"]] == [3, 6]
    assert all(np.isfinite(v) for _, v in scalars["train/loss"])
    assert "perf/tokens_per_sec" in scalars


def test_checkpoint_restores_with_orbax_and_reproduces_the_logged_eval_loss(run_dir):
    manager = ocp.CheckpointManager(run_dir / "checkpoints", item_names=("state", "meta"))
    assert manager.all_steps() == [3, 6]
    meta = manager.restore(6, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
    assert meta["step"] == 6 and meta["config"]["trainer"]["max_steps"] == 6

    # Rebuild the same model from the config, restore the arrays into it, and recompute
    # the eval loss: it must equal what the run logged at step 6.
    cfg = validate(compose_train(OVERRIDES))
    devices = setup_devices(cfg.device)
    data = load_data(
        cfg.dataset,
        rows=cfg.trainer.batch_size,
        seq_len=cfg.trainer.seq_len,
        eval_batches=cfg.trainer.eval_batches,
        seed=cfg.seed,
    )
    model = build_model(
        cfg.model,
        vocab_size=data.tokenizer.vocab_size,
        dtype=devices.compute_dtype,
        seed=cfg.seed + 1,
        devices=devices,
    )
    fresh = nnx.to_pure_dict(nnx.state(model))
    target = {"model": fresh}
    restored = manager.restore(
        6, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(target, partial_restore=True))
    ).state
    assert jax.tree.structure(restored["model"]) == jax.tree.structure(fresh)
    state = nnx.state(model)
    nnx.replace_by_pure_dict(state, restored["model"])
    nnx.update(model, state)
    logged = dict(read_scalars(run_dir / "tb")["eval/loss"])[6]
    recomputed = evaluate(model, data.eval_batches, devices)
    assert recomputed == pytest.approx(logged, rel=1e-5)
    manager.close()


def test_bad_data_fails_before_compiling_with_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "completion": "b"}\n{"completion": "c"}\n', encoding="utf-8")
    out = tmp_path / "run"
    proc = run_train("debug=fast", "dataset=jsonl", f"dataset.path={bad}", f"hydra.run.dir={out}")
    assert proc.returncode == 2
    assert f"{bad}:2: missing key 'prompt'" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not list(out.glob("checkpoints/*")) and not (out / "tb").exists()
