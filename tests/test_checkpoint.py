"""Checkpointer: retention (newest N plus the best by a metric) and the fallback past a
damaged step, read back with orbax."""

from __future__ import annotations

import numpy as np
import pytest

from tunixrt.checkpoint import CheckpointDamaged, Checkpointer


def state(x: float) -> dict:
    return {
        "model": {"w": np.full((2, 3), x, np.float32)},
        "optimizer": {"count": np.ones((), np.int32)},
    }


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
