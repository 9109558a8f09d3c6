"""Running scripts/train.py in a subprocess, and killing it at a chosen moment."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
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


def stepping_overrides(steps: int, cache: Path, *, checkpoint_every: int) -> list[str]:
    """`debug=fast` for `steps` steps, every step logged, a checkpoint every
    `checkpoint_every` steps (all kept) and a fixed decay horizon, so a run stopped and
    resumed follows the straight one step for step; `cache` is the compilation cache."""
    return [
        "debug=fast",
        f"trainer.max_steps={steps}",
        "trainer.log_every=1",
        "trainer.eval_every=10",
        f"checkpoint.every_steps={checkpoint_every}",
        f"checkpoint.keep={steps}",
        f"optimizer.decay_steps={steps}",
        f"device.compile_cache_dir={cache}",
    ]


def wait_for(
    pattern: str, root: Path, procs: Sequence[subprocess.Popen[str]], timeout: float = 180
) -> Path:
    """The first path under `root` matching `pattern`, once one exists; fails if a
    process in `procs` ends first (with its output) or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while not (found := sorted(root.glob(pattern))):
        for proc in procs:
            if proc.poll() is not None:
                output = proc.stdout.read() if proc.stdout else ""
                raise AssertionError(f"a run ended before {pattern} appeared: {output[-3000:]}")
        assert time.monotonic() < deadline, f"{pattern} did not appear under {root}"
        time.sleep(0.02)
    return found[0]


def kill_when(proc: subprocess.Popen[str], path: Path, timeout: float = 120) -> None:
    """SIGKILL `proc` as soon as `path` exists (e.g. a checkpoint landed); fails if the
    process ends first or `timeout` seconds pass."""
    wait_for(path.name, path.parent, [proc], timeout)
    proc.kill()
    proc.wait(timeout=30)
