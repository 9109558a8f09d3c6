"""One process per run folder: `tunixrt-train` holds an exclusive lock on RUN/.lock
while the run is open. The kernel drops the lock when its process dies (a SIGKILL, a
crash), so the next start takes a dead run's lock over without anyone deleting it."""

from __future__ import annotations

import fcntl
import json
import os
import socket
from pathlib import Path
from types import TracebackType
from typing import IO

from tunixrt.errors import InputError

LOCK_FILE = ".lock"


class RunFolderInUse(InputError):
    """Another live process trains in this run folder."""


class RunLock:
    """Context manager: the exclusive lock on a run folder, with the holder's host and
    PID written in the lock file for the message another start shows."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK_FILE
        self._file: IO[str] | None = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(f)
            f.close()
            raise RunFolderInUse(
                f"run folder {self.path.parent} is in use by {holder}; wait for that run to "
                "end or stop it (its checkpoints are kept), or choose another run.name"
            ) from None
        f.seek(0)
        f.truncate()
        json.dump({"host": socket.gethostname(), "pid": os.getpid()}, f)
        f.flush()
        self._file = f
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        err: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def _holder(f: IO[str]) -> str:
    f.seek(0)
    try:
        info = json.loads(f.read() or "{}")
    except json.JSONDecodeError:
        info = {}
    return f"host {info.get('host', '?')}, PID {info.get('pid', '?')}"
