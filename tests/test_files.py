"""Writes that a kill cannot leave half done: atomic text files, folder swaps, the
TensorBoard rewrite on resume, and `tunixrt export`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers.tensorboard import read_scalars
from tunixrt.files import atomic_write_text, recover_folder, replace_folder
from tunixrt.tensorboard import TensorBoardWriter, truncate_after


def test_a_failed_atomic_write_keeps_the_old_text(tmp_path, monkeypatch):
    path = tmp_path / "config.yaml"
    atomic_write_text(path, "url: postgresql://u:***@h/db\n")
    assert path.read_text() == "url: postgresql://u:***@h/db\n"

    def killed(*args: object) -> None:
        raise KeyboardInterrupt  # as if the process stopped between write and rename

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(path, "half")
    assert path.read_text() == "url: postgresql://u:***@h/db\n"
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]  # no temporary left


def folder(path: Path, text: str) -> Path:
    path.mkdir()
    (path / "f").write_text(text)
    return path


def test_a_folder_swap_cut_between_its_renames_recovers(tmp_path, monkeypatch):
    target, new = folder(tmp_path / "tb", "old"), folder(tmp_path / "tb.new", "new")
    real_rename, calls = Path.rename, {"n": 0}

    def rename_then_die(self: Path, to: Path) -> Path:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # killed after target -> target.old
        return real_rename(self, to)

    monkeypatch.setattr(Path, "rename", rename_then_die)
    with pytest.raises(KeyboardInterrupt):
        replace_folder(new, target)
    monkeypatch.undo()
    assert not target.exists()
    recover_folder(target)
    assert (target / "f").read_text() == "old"
    replace_folder(new, target)
    assert (target / "f").read_text() == "new" and not (tmp_path / "tb.old").exists()


def test_the_tensorboard_rewrite_cut_short_loses_no_event(tmp_path, monkeypatch):
    logdir = tmp_path / "tb"
    w = TensorBoardWriter(logdir)
    for step in range(1, 8):
        w.write_scalars(step, {"train/loss": float(step)})
    w.close()
    real_rename, calls = Path.rename, {"n": 0}

    def rename_then_die(self: Path, to: Path) -> Path:
        calls["n"] += 1
        if to == logdir:  # the kept events are ready; the swap itself is cut
            raise KeyboardInterrupt
        return real_rename(self, to)

    monkeypatch.setattr(Path, "rename", rename_then_die)
    with pytest.raises(KeyboardInterrupt):
        truncate_after(logdir, 4)
    monkeypatch.undo()
    assert truncate_after(logdir, 4) == 3  # the next resume recovers and truncates
    assert [s for s, _ in read_scalars(logdir)["train/loss"]] == [1, 2, 3, 4]
