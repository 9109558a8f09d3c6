"""Exact resume: a run stopped (cleanly, by SIGTERM, by SIGKILL, by a damaged checkpoint)
and started again ends bit-identical to one that never stopped; so does a LoRA run on a
base from scratch, whose checkpoints hold only the adapters."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from tests.helpers.config import compose_train
from tests.helpers.data import cache_folders
from tests.helpers.paths import DEV_DATA
from tests.helpers.processes import start_train
from tests.helpers.tensorboard import read_scalars
from tunixrt.checkpoint import Checkpointer
from tunixrt.config import ConfigError
from tunixrt.data import DataError
from tunixrt.export import export, load_model
from tunixrt.models.hf import load_pretrained
from tunixrt.registry import Registry, RunDetails, get_run, list_runs
from tunixrt.train import setup as train_setup
from tunixrt.train.loop import NonFiniteError, train
from tunixrt.train.step import make_train_step

pytestmark = pytest.mark.slow
STEPS = 40


def overrides(cache: Path, **extra: object) -> list[str]:
    base = {
        # the token cache beside the compile cache (a folder of the module's own)
        "dataset.cache_dir": str(cache / "tokens"),
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
    """Killed two steps after checkpoint 12 was started: the resumed run restores the
    newest complete checkpoint and trains the steps after it again (the killed run had
    logged them), ending as the reference did."""
    proc = cli(tmp_path, overrides(cache))
    assert proc.stdout is not None
    ran = []
    for line in proc.stdout:
        ran.append(line)
        if f"step 14/{STEPS}" in line:
            proc.kill()
            break
    proc.wait(timeout=30)
    ran_text = "".join(ran)
    assert f"step 14/{STEPS}" in ran_text, ran_text[-3000:]
    result = train(compose_train(overrides(cache)), tmp_path)
    assert result.resumed_from in (8, 12)  # 12 unless its async save was cut short
    assert f"step {result.resumed_from + 1}/{STEPS}" in ran_text  # done once before...
    assert result.resumed_from + 1 in result.train_losses  # ... and trained again here
    assert_same_run(tmp_path, reference)


def empty_state_files(step_dir: Path) -> None:
    for f in (step_dir / "state").rglob("*"):
        if f.is_file():
            f.write_bytes(b"")  # a disk that lost the data after the rename


def truncate_array_file(step_dir: Path) -> None:
    """Cut the largest array data file (it holds several weights) in half."""
    f = max(
        (step_dir / "state" / "ocdbt.process_0" / "d").iterdir(), key=lambda f: f.stat().st_size
    )
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def garble_meta(step_dir: Path) -> None:
    meta = step_dir / "meta" / "metadata"
    meta.write_text(meta.read_text()[:100])


def registry_row(url: str, run_dir: Path) -> RunDetails:
    with Registry.open(url) as reg:
        (summary,) = [r for r in list_runs(reg) if r.run_dir == str(run_dir.resolve())]
        return get_run(reg, summary.id)


def row_at_first_step(monkeypatch, url: str, run_dir: Path) -> list[RunDetails]:
    """The run's registry row as it is when the first step starts (filled in then)."""
    seen = []

    def make(*key):
        real_step = make_train_step(*key)  # the step the config asks for (wrt, loss chunks)

        def step(model, optimizer, batch):
            if not seen:
                seen.append(registry_row(url, run_dir))
            return real_step(model, optimizer, batch)

        return step

    monkeypatch.setattr(train_setup, "make_train_step", make)
    return seen


@pytest.mark.parametrize("damage", [empty_state_files, truncate_array_file, garble_meta])
def test_damaged_newest_checkpoint_falls_back_to_the_previous(
    tmp_path, cache, reference, monkeypatch, session_registry, damage: Callable[[Path], None]
):
    train(compose_train(overrides(cache, **{"trainer.max_steps": 16})), tmp_path)
    damage(tmp_path / "checkpoints" / "16")
    seen = row_at_first_step(monkeypatch, session_registry, tmp_path)
    result = train(compose_train(overrides(cache)), tmp_path)
    assert result.resumed_from == 12
    assert_same_run(tmp_path, reference)
    assert (tmp_path / "checkpoints" / "corrupt-16").is_dir()
    jax.tree.map(np.testing.assert_array_equal, params(tmp_path, 16), params(reference, 16))
    (resumed,) = seen
    assert resumed.last_step == 12 and resumed.resume_count == 1
    assert [c.step for c in resumed.checkpoints] == [4, 8, 12]  # 16's row went with it
    done = registry_row(session_registry, tmp_path)
    assert done.status == "completed" and done.last_step == STEPS
    assert [c.step for c in done.checkpoints] == list(range(4, STEPS + 1, 4))


def test_unreadable_checkpoint_raises_instead_of_falling_back(
    tmp_path, cache, monkeypatch, session_registry
):
    train(compose_train(overrides(cache, **{"trainer.max_steps": 8})), tmp_path)
    meta = tmp_path / "checkpoints" / "8" / "meta" / "metadata"
    meta.chmod(0)

    def unreadable(*args: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(meta))

    if os.access(meta, os.R_OK):  # root reads it anyway: fail the read as the OS would
        monkeypatch.setattr(Checkpointer, "read_meta", unreadable)
    try:
        with pytest.raises(PermissionError):
            train(compose_train(overrides(cache)), tmp_path)
    finally:
        meta.chmod(0o644)
        monkeypatch.undo()
    # denied while restoring the arrays, after the run was registered
    monkeypatch.setattr(Checkpointer, "restore", unreadable)
    with pytest.raises(PermissionError):
        train(compose_train(overrides(cache)), tmp_path)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["4", "8"]
    row = registry_row(session_registry, tmp_path)
    assert row.status == "failed" and row.error.startswith("PermissionError")
    assert row.last_step == 8


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
    calls = {"n": 0}

    def make(*key):
        real_step = make_train_step(*key)  # the step the config asks for (wrt, loss chunks)

        def poisoned(model, optimizer, batch):
            calls["n"] += 1
            if calls["n"] == 10:  # step 10: NaN weights make the loss and gradients NaN
                batch = {**batch, "weights": batch["weights"] * np.nan}
            return real_step(model, optimizer, batch)

        return poisoned

    monkeypatch.setattr(train_setup, "make_train_step", make)
    with pytest.raises(NonFiniteError, match=r"^step 10: non-finite"):
        train(compose_train(overrides(cache)), tmp_path)
    with ocp.CheckpointManager(tmp_path / "checkpoints", item_names=("state", "meta")) as m:
        assert m.all_steps() == [4, 8]
    jax.tree.map(np.testing.assert_array_equal, params(tmp_path, 8), params(reference, 8))


def test_compile_cache_is_filled(cache, reference):
    assert any(cache.iterdir())
    assert cache_folders(cache / "tokens", DEV_DATA / "train.jsonl")  # the run read the cache


def test_a_run_read_from_memory_resumes_from_the_cache_exactly(tmp_path, cache, reference):
    """Steps 1-13 tokenized in memory (dataset.cache_dir=null), 14-40 from the token
    cache: the same losses and weights as the reference, which read the cache all along."""
    train(
        compose_train(overrides(cache, **{"trainer.max_steps": 13, "dataset.cache_dir": "null"})),
        tmp_path,
    )
    result = train(compose_train(overrides(cache)), tmp_path)
    assert result.resumed_from == 13
    assert_same_run(tmp_path, reference)


def test_unpacked_losses_are_the_same_with_and_without_the_cache(tmp_path, cache):
    runs = {}
    for where in ("null", str(tmp_path / "tokens")):
        run_dir = tmp_path / where.replace("/", "_")
        extra = {"trainer.max_steps": 8, "dataset.pack": False, "dataset.cache_dir": where}
        train(compose_train(overrides(cache, **extra)), run_dir)
        runs[where] = run_dir
    memory, cached = runs.values()
    assert [s for s, _ in losses(cached)] == list(range(1, 9))
    assert losses(memory) == losses(cached)
    jax.tree.map(np.testing.assert_array_equal, params(memory, 8), params(cached, 8))


def test_a_changed_data_file_stops_the_resume(tmp_path, cache):
    data = tmp_path / "train.jsonl"
    shutil.copy(DEV_DATA / "train.jsonl", data)
    extra = {"dataset": "jsonl", "dataset.path": str(data), "trainer.max_steps": 4}
    train(compose_train(overrides(cache, **extra)), tmp_path / "run")
    lines = data.read_text().splitlines(keepends=True)
    data.write_text("".join(lines[1:] + lines[:1]))  # the same records, another order
    with pytest.raises(DataError, match="the training data differ from the checkpoint's"):
        train(
            compose_train(overrides(cache, **{**extra, "trainer.max_steps": 8})), tmp_path / "run"
        )


def saved_arrays(item: Path) -> list[str]:
    """The dotted names of the arrays an orbax item folder holds, from its metadata."""
    tree = ocp.StandardCheckpointer().metadata(item).item_metadata
    return sorted(leaf.name for leaf in jax.tree.leaves(tree))


def lora_run(cache: Path, run_dir: Path, steps: int) -> int | None:
    cfg = overrides(cache, **{"model.lora.rank": 2, "trainer.max_steps": steps})
    return train(compose_train(cfg), run_dir).resumed_from


def test_lora_from_scratch_saves_its_base_once_and_resumes_exactly(tmp_path, cache):
    lora_run(cache, tmp_path / "ref", 8)
    lora_run(cache, tmp_path / "run", 4)
    assert lora_run(cache, tmp_path / "run", 8) == 4
    ckdir = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in ckdir.iterdir()) == ["4", "8", "base"]
    names = saved_arrays(ckdir / "8" / "state")
    model = [n for n in names if n.startswith("model.")]
    assert model and all(n.endswith((".lora_a", ".lora_b")) for n in model)
    assert any(n.endswith(".kernel") for n in saved_arrays(ckdir / "base"))
    assert losses(tmp_path / "run") == losses(tmp_path / "ref")
    got, want = params(tmp_path / "run", 8), params(tmp_path / "ref", 8)
    jax.tree.map(np.testing.assert_array_equal, got, want)  # adapters and optimizer state

    out = export(str(tmp_path / "run"), tmp_path / "hf")
    with closing(Checkpointer(ckdir, every_steps=0, keep=1, read_only=True)) as ck:
        _, _, adapted = load_model(ck, 8)
    tokens = np.random.default_rng(0).integers(0, 2048, (2, 16), dtype=np.int32)
    np.testing.assert_allclose(load_pretrained(out)(tokens), adapted(tokens), atol=1e-4)
