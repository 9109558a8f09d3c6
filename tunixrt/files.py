"""Files written so that a crash or a kill at any moment leaves either the old content
or the new, never a half-written file: write beside the target, then rename over it
(a rename within one folder is atomic on POSIX)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from tunixrt.registry.urls import mask_text


def atomic_write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def replace_folder(new: Path, target: Path) -> None:
    """Put the complete folder `new` in place of `target` (which may exist). Between
    the two renames `target` is at `target.old`; `recover_folder` finishes the swap."""
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    new.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def recover_folder(target: Path) -> None:
    """Finish a `replace_folder` that a kill interrupted: with `target` gone, the old
    folder is put back; with both there, the old one is dropped."""
    old = target.with_name(target.name + ".old")
    if old.exists():
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.rename(target)


def mask_secrets_in_file(path: Path) -> None:
    """Rewrite a text file (atomically) with every password inside a URL masked."""
    text = path.read_text(encoding="utf-8")
    masked = mask_text(text)
    if masked != text:
        atomic_write_text(path, masked)
