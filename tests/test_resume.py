"""Exact resume: a run stopped (cleanly, by SIGTERM, by SIGKILL, by a damaged checkpoint)
and started again ends bit-identical to one that never stopped."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx

from tests.helpers.config import compose_train
from tests.helpers.processes import kill_when, start_train
from tests.helpers.tensorboard import read_scalars
from tunixrt.config import ConfigError
from tunixrt.train import setup as train_setup
from tunixrt.train.loop import NonFiniteError, train
from tunixrt.train.step import make_train_step

pytestmark = pytest.mark.slow
STEPS = 40


def overrides(cache: Path, **extra: object) -> list[str]:
    base = {
        "debug": "fast",
        "trainer.max_steps": STEPS,
        "trainer.log_every": 1,
        "trainer.eval_every": 10,
        "checkpoint.every_steps": 4,
        "checkpoint.keep": 20,
        "optimizer.decay_steps": STEPS,
        "device.compile_cache_dir": str(cache),
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("jax_cache")


def params(run_dir: Path, step: int) -> dict:
    with ocp.CheckpointManager(run_dir / "checkpoints", item_names=("state", "meta")) as m:
        state = m.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore())).state
    return jax.tree.map(np.asarray, state)


def losses(run_dir: Path) -> list[tuple[int, float]]:
    return read_scalars(run_dir / "tb")["train/loss"]


def assert_same_run(run_dir: Path, reference: Path) -> None:
    assert losses(run_dir) == losses(reference)  # one point per step, equal values
    got, want = params(run_dir, STEPS), params(reference, STEPS)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    jax.tree.map(np.testing.assert_array_equal, got, want)  # bit-identical


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cache) -> Path:
    run_dir = tmp_path_factory.mktemp("reference")
    train(compose_train(overrides(cache)), run_dir)
    assert [s for s, _ in losses(run_dir)] == list(range(1, STEPS + 1))
    return run_dir


def cli(run_dir: Path, args: list[str]) -> subprocess.Popen[str]:
    return start_train(*args, f"hydra.run.dir={run_dir}")


def test_clean_stop_then_longer_run(tmp_path, cache, reference):
    train(compose_train(overrides(cache, **{"trainer.max_steps": 13})), tmp_path)
    result = train(compose_train(overrides(cache)), tmp_path)
    assert result.resumed_from == 13
    assert_same_run(tmp_path, reference)


def test_sigterm_saves_exits_nonzero_and_resumes(tmp_path, cache, reference):
    proc = cli(tmp_path, overrides(cache))
    assert proc.stdout is not None
    for line in proc.stdout:
        if f"step 6/{STEPS}" in line:
            proc.send_signal(signal.SIGTERM)
            break
    out = proc.stdout.read()
    assert proc.wait(timeout=120) == 128 + signal.SIGTERM, out
    assert "stopped by SIGTERM after step" in out and "Resume with: tunixrt-train" in out
    stopped_at = int(out.split("stopped by SIGTERM after step ")[1].split(";")[0])
    assert 6 <= stopped_at < STEPS
    with ocp.CheckpointManager(tmp_path / "checkpoints", item_names=("state", "meta")) as m:
        assert m.latest_step() == stopped_at  # saved on the way out, not only on schedule
    result = train(compose_train(overrides(cache)), tmp_path)
    assert result.resumed_from == stopped_at
    assert_same_run(tmp_path, reference)


def test_sigkill_loses_only_steps_after_the_last_checkpoint(tmp_path, cache, reference):
    kill_when(cli(tmp_path, overrides(cache)), tmp_path / "checkpoints" / "12")
    logged = [s for s, _ in losses(tmp_path)]
    result = train(compose_train(overrides(cache)), tmp_path)
    assert result.resumed_from is not None and result.resumed_from >= 12
    assert max(logged) >= result.resumed_from  # steps after the checkpoint were re-run
    assert_same_run(tmp_path, reference)


def test_damaged_newest_checkpoint_falls_back_to_the_previous(tmp_path, cache, reference):
    train(compose_train(overrides(cache, **{"trainer.max_steps": 16})), tmp_path)
    for f in (tmp_path / "checkpoints" / "16" / "state").rglob("*"):
        if f.is_file():
            f.write_bytes(b"")  # a disk that lost the data after the rename
    result = train(compose_train(overrides(cache)), tmp_path)
    assert result.resumed_from == 12
    assert_same_run(tmp_path, reference)


def test_changed_model_shape_fails_naming_the_keys(tmp_path, cache):
    train(compose_train(overrides(cache, **{"trainer.max_steps": 4})), tmp_path)
    with pytest.raises(ConfigError) as err:
        train(
            compose_train(overrides(cache, **{"model.dim": 32, "trainer.batch_size": 2})),
            tmp_path,
        )
    text = str(err.value)
    assert "model.dim: checkpoint has 64, this run has 32" in text
    assert "trainer.batch_size: checkpoint has 4, this run has 2" in text


def test_resume_policies(tmp_path, cache):
    with pytest.raises(ConfigError, match="run.resume=must"):
        train(compose_train(overrides(cache, **{"run.resume": "must"})), tmp_path)
    train(compose_train(overrides(cache, **{"trainer.max_steps": 4})), tmp_path)
    with pytest.raises(ConfigError, match="run.resume=never"):
        train(compose_train(overrides(cache, **{"run.resume": "never"})), tmp_path)
    done = train(compose_train(overrides(cache, **{"trainer.max_steps": 4})), tmp_path)
    assert done.resumed_from == 4 and done.final_step == 4 and not done.train_losses


def test_nan_stops_with_the_step_and_keeps_the_last_good_checkpoint(
    tmp_path, cache, reference, monkeypatch
):
    real_step = make_train_step(nnx.Param)
    calls = {"n": 0}

    def poisoned(model, optimizer, batch):
        calls["n"] += 1
        if calls["n"] == 10:  # step 10: NaN weights make the loss and gradients NaN
            batch = {**batch, "weights": batch["weights"] * np.nan}
        return real_step(model, optimizer, batch)

    monkeypatch.setattr(train_setup, "make_train_step", lambda wrt: poisoned)
    with pytest.raises(NonFiniteError, match=r"^step 10: non-finite"):
        train(compose_train(overrides(cache)), tmp_path)
    with ocp.CheckpointManager(tmp_path / "checkpoints", item_names=("state", "meta")) as m:
        assert m.all_steps() == [4, 8]
    jax.tree.map(np.testing.assert_array_equal, params(tmp_path, 8), params(reference, 8))


def test_compile_cache_is_filled(cache, reference):
    assert any(cache.iterdir())
