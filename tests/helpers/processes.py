"""Running scripts/train.py in a subprocess, and killing it at a chosen moment."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers.config import without_answer_eval
from tests.helpers.paths import ROOT, TRAIN_SCRIPT


def _train_args(args: tuple[str, ...]) -> list[str]:
    if "--help" in args:
        return list(args)
    return without_answer_eval(args)


def run_train(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`python scripts/train.py ARGS` as a user runs it, from the repo root; waits."""
    return subprocess.run(
        [sys.executable, str(TRAIN_SCRIPT), *_train_args(args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def start_train(
    *args: str, quiet: bool = False, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """The same in the background; its output (unbuffered, stderr merged) on a pipe, or
    discarded when `quiet`; `env` adds to the environment."""
    out = subprocess.DEVNULL if quiet else subprocess.PIPE
    return subprocess.Popen(
        [sys.executable, str(TRAIN_SCRIPT), *_train_args(args)],
        stdout=out,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )


def kill_when(proc: subprocess.Popen[str], path: Path, timeout: float = 120) -> None:
    """SIGKILL `proc` as soon as `path` exists (e.g. a checkpoint landed); fails if the
    process ends first or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"the run ended before {path} appeared"
        assert time.monotonic() < deadline, f"{path} did not appear in {timeout} s"
        time.sleep(0.02)
    proc.kill()
    proc.wait(timeout=30)
