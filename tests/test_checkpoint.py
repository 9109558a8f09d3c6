"""Checkpointer: retention (newest N plus the best by a metric), and the fallback past a
damaged step, which is set aside as corrupt-STEP, while any other read error raises;
read back with orbax."""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from tunixrt.checkpoint import CheckpointDamaged, Checkpointer, damage


def state(x: float, *, noise: bool = False) -> dict:
    """`noise` adds a [256, 256] random array: it does not compress, so OCDBT writes it
    to a data file of its own (small arrays sit inside the index nodes)."""
    model = {"w": np.full((2, 3), x, np.float32)}
    if noise:
        model["noise"] = np.random.default_rng(int(x)).normal(size=(256, 256)).astype(np.float32)
    return {"model": model, "optimizer": {"count": np.ones((), np.int32)}}


def test_keeps_newest_and_best(tmp_path):
    ck = Checkpointer(tmp_path, every_steps=1, keep=1, best_metric="eval/loss", best_mode="min")
    for step, loss in zip(range(1, 5), [3.0, 1.0, 2.0, 4.0], strict=True):
        ck.save(step, state(step), {"step": step}, {"eval/loss": loss})
    ck.wait()
    assert ck.steps() == [2, 4]  # 4 is the newest, 2 the lowest eval loss
    restored = ck.restore(2, state(0.0))
    np.testing.assert_array_equal(restored.arrays["model"]["w"], np.full((2, 3), 2.0))
    assert restored.meta == {"step": 2}
    ck.close()


def test_restore_newest_skips_a_damaged_step(tmp_path):
    ck = Checkpointer(tmp_path, every_steps=1, keep=5)
    for step in (1, 2):
        ck.save(step, state(step), {"step": step})
    ck.wait()
    for f in (tmp_path / "2" / "state").rglob("*"):
        if f.is_file():
            f.write_bytes(b"garbage")
    restored = ck.restore_newest(state(0.0))
    assert restored.step == 1 and restored.meta == {"step": 1}
    assert (tmp_path / "corrupt-2").is_dir() and ck.steps() == [1]
    for f in (tmp_path / "1" / "state").rglob("*"):
        if f.is_file():
            f.write_bytes(b"garbage")
    with pytest.raises(CheckpointDamaged):
        ck.restore_newest(state(0.0))
    ck.close()


def test_due_follows_every_steps(tmp_path):
    ck = Checkpointer(tmp_path, every_steps=3, keep=1)
    assert [s for s in range(1, 10) if ck.due(s)] == [3, 6, 9]
    assert not Checkpointer(tmp_path / "x", every_steps=0, keep=1).due(3)


def saved_steps(folder: Path, *steps: int) -> Checkpointer:
    ck = Checkpointer(folder, every_steps=1, keep=5)
    for step in steps:
        ck.save(step, state(step, noise=True), {"step": step})
    ck.wait()
    return ck


def array_file(item: Path) -> Path:
    """The file of an orbax item folder that holds the noise array's data."""
    files = (item / "ocdbt.process_0" / "d").iterdir()
    return max(files, key=lambda f: f.stat().st_size)


def truncate(f: Path) -> None:
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def zero(f: Path) -> None:
    f.write_bytes(bytes(f.stat().st_size))


DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    # how a step folder is damaged: what the read raised
    "truncated array file": (lambda d: truncate(array_file(d / "state")), "OUT_OF_RANGE"),
    "zeroed array file": (lambda d: zero(array_file(d / "state")), "FAILED_PRECONDITION"),
    "deleted manifest": (lambda d: (d / "state" / "manifest.ocdbt").unlink(), "NOT_FOUND"),
    "empty tree metadata": (lambda d: (d / "state" / "_METADATA").write_bytes(b""), "JSON"),
    "garbled meta": (lambda d: (d / "meta" / "metadata").write_text('{"step": 2'), "JSON"),
    "binary meta": (lambda d: (d / "meta" / "metadata").write_bytes(b"\xff\x00"), "JSON"),
    "deleted meta": (lambda d: (d / "meta" / "metadata").unlink(), "missing file"),
    "no state item": (lambda d: ocp.test_utils.erase_and_create_empty(d / "state").rmdir(), "item"),
}


@pytest.mark.parametrize("how", list(DAMAGE))
def test_a_damaged_step_is_set_aside_and_written_again(tmp_path, caplog, how):
    ck = saved_steps(tmp_path, 1, 2)
    spoil, reason = DAMAGE[how]
    spoil(tmp_path / "2")
    target = jax.tree.map(jnp.asarray, state(0.0, noise=True))  # as training restores
    with caplog.at_level(logging.WARNING, "tunixrt.checkpoint"):
        restored = ck.restore_newest(target)
    assert restored.step == 1
    np.testing.assert_array_equal(restored.arrays["model"]["w"], np.full((2, 3), 1.0))
    assert not (tmp_path / "2").exists() and (tmp_path / "corrupt-2").is_dir()
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "step 2 is damaged" in warning and str(tmp_path / "corrupt-2") in warning
    assert reason in warning
    with ocp.CheckpointManager(tmp_path, item_names=("state", "meta")) as m:
        assert m.all_steps() == [1]  # orbax does not take corrupt-2 for a step
    ck.save(2, state(2.0, noise=True), {"step": 2})
    ck.wait()
    assert ck.restore_newest(state(0.0, noise=True)).step == 2
    ck.close()


def test_damaged_metadata_is_set_aside_when_looking_for_the_newest(tmp_path):
    ck = saved_steps(tmp_path, 1, 2, 3)
    (tmp_path / "3" / "meta" / "metadata").write_text("")
    spoil, _ = DAMAGE["truncated array file"]
    spoil(tmp_path / "2")
    assert ck.newest_readable_meta() == (2, {"step": 2})  # only the meta is read here
    assert ck.restore_newest(state(0.0, noise=True)).step == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1", "corrupt-2", "corrupt-3"]
    ck.close()


def test_a_step_damaged_twice_keeps_both_copies(tmp_path):
    ck = saved_steps(tmp_path, 1, 2)
    for _ in range(2):
        (tmp_path / "2" / "meta" / "metadata").write_text("{")
        assert ck.restore_newest(state(0.0, noise=True)).step == 1
        ck.save(2, state(2.0, noise=True), {"step": 2})
        ck.wait()
    assert {"corrupt-2", "corrupt-2.2"} <= {p.name for p in tmp_path.iterdir()}
    ck.close()


@pytest.mark.parametrize(
    "err",
    [
        PermissionError(errno.EACCES, "Permission denied", "state/d/x"),
        OSError(errno.EIO, "Input/output error"),
        MemoryError(),
        KeyboardInterrupt(),
        # tensorstore's own reports of the same, as ValueError with a status code
        ValueError('PERMISSION_DENIED: Error reading "model.w/0.0": Permission denied'),
        ValueError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 4096 bytes"),
        ValueError('UNAVAILABLE: Error reading "model.w/0.0": Input/output error'),
    ],
    ids=lambda e: type(e).__name__ + str(e)[:20],
)
def test_other_read_errors_raise_and_leave_the_step(tmp_path, monkeypatch, err):
    ck = saved_steps(tmp_path, 1, 2)

    def failing(self, *args):
        raise err

    monkeypatch.setattr(Checkpointer, "restore", failing)
    monkeypatch.setattr(Checkpointer, "read_meta", failing)
    with pytest.raises(type(err)):
        ck.restore_newest(state(0.0, noise=True))
    with pytest.raises(type(err)):
        ck.newest_readable_meta()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1", "2"]
    monkeypatch.undo()
    ck.close()


def wrapped(cause: BaseException) -> Exception:
    """An error as orbax raises it for a failed read into jax arrays."""
    err = Exception("Encountered error while reading array index: (slice(0, 2, 1),).")
    err.__cause__ = cause
    return err


def test_damage_is_read_from_the_error():
    assert damage(ValueError('DATA_LOSS: Error reading "model.w/.zarray"')) is not None
    assert damage(wrapped(ValueError("OUT_OF_RANGE: Requested byte range"))) is not None
    assert damage(wrapped(ValueError("PERMISSION_DENIED: Failed to open"))) is None
    assert damage(wrapped(MemoryError())) is None
    assert damage(FileNotFoundError("File meta/metadata not found.")) is not None
    assert damage(ValueError("some other ValueError")) is None
    assert damage(IsADirectoryError(errno.EISDIR, "Is a directory")) is None


def test_lora_base_is_saved_once_beside_the_steps(tmp_path):
    ck = saved_steps(tmp_path, 1)
    base = state(3.0, noise=True)["model"]
    ck.save_base(base)
    got = ck.restore_base(state(0.0, noise=True)["model"])
    jax.tree.map(np.testing.assert_array_equal, got, base)
    assert ck.steps() == [1]  # orbax does not take base/ for a step
    truncate(array_file(tmp_path / "base"))
    with pytest.raises(CheckpointDamaged, match=r"base: the saved base weights are damaged"):
        ck.restore_base(state(0.0, noise=True)["model"])
    assert (tmp_path / "base").is_dir()  # no other copy: left where it is
    ck.close()
