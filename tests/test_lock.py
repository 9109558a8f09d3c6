"""One process per run folder: a second start fails at once naming the holder; the lock
of a killed run is taken over."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest

from tests.helpers.config import compose_train
from tests.helpers.paths import ROOT
from tunixrt.train.lock import RunFolderInUse, RunLock

HOLD = (
    "import sys, time; from pathlib import Path; from tunixrt.train.lock import RunLock\n"
    "with RunLock(Path(sys.argv[1])):\n"
    "    print('locked', flush=True); time.sleep(120)\n"
)


def holder(run_dir) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_start_fails_naming_the_holder_and_a_dead_ones_lock_is_taken_over(tmp_path):
    from tunixrt.train import train

    run_dir = tmp_path / "run"
    proc = holder(run_dir)
    try:
        cfg = compose_train(["debug=fast", "trainer.max_steps=1", "registry.url=null"])
        with pytest.raises(RunFolderInUse) as err:
            train(cfg, run_dir)
        assert f"PID {proc.pid}" in str(err.value) and socket.gethostname() in str(err.value)
        assert not (run_dir / "checkpoints").exists()  # failed before touching the run
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert train(cfg, run_dir).final_step == 1  # the killed holder's lock is free


def test_the_lock_is_released_on_exit_and_reentry_in_one_process_fails(tmp_path):
    with RunLock(tmp_path), pytest.raises(RunFolderInUse), RunLock(tmp_path):
        pass
    with RunLock(tmp_path):
        pass


def test_the_cli_reports_a_busy_folder_in_one_line(tmp_path):
    from tests.helpers.processes import run_train

    proc = holder(tmp_path / "run")
    try:
        done = run_train("debug=fast", "registry.url=null", f"hydra.run.dir={tmp_path / 'run'}")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    out = done.stdout + done.stderr  # Hydra logs to stdout
    assert done.returncode == 2
    assert f"is in use by host {socket.gethostname()}, PID {proc.pid}" in out
    assert "Traceback" not in out
