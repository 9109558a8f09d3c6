"""SLURM-style preemption through submitit's local executor: SIGUSR2 stops the job after
its step with a checkpoint, submitit requeues it, and the requeued job resumes from that
checkpoint, ending exactly as an uninterrupted run; the registry row goes preempted ->
running -> completed."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from tests.helpers.config import compose_train
from tests.helpers.processes import start_train, stepping_overrides, wait_for
from tests.helpers.tensorboard import read_scalars
from tunixrt.registry import Registry, get_run, list_runs
from tunixrt.train import train

pytestmark = pytest.mark.slow
STEPS = 40


def overrides(cache: Path) -> list[str]:
    return stepping_overrides(STEPS, cache, checkpoint_every=4)


def params(run_dir: Path) -> dict:
    with ocp.CheckpointManager(run_dir / "checkpoints", item_names=("state", "meta")) as m:
        state = m.restore(STEPS, args=ocp.args.Composite(state=ocp.args.PyTreeRestore())).state
    return jax.tree.map(np.asarray, state)


def test_sigusr2_saves_requeues_and_resumes_exactly(tmp_path):
    cache = tmp_path / "jax_cache"
    reference = tmp_path / "reference"
    train(compose_train([*overrides(cache), "registry.url=null"]), reference)

    url = f"sqlite:///{tmp_path / 'registry.db'}"
    sweep = tmp_path / "sweep"
    proc = start_train(
        "-m",
        "hydra/launcher=submitit_local",
        *overrides(cache),
        f"registry.url='{url}'",
        f"hydra.sweep.dir={sweep}",
    )
    wait_for("*/checkpoints/4", sweep, [proc])
    job_pid = json.loads(wait_for("*/.lock", sweep, [proc]).read_text())["pid"]
    os.kill(job_pid, signal.SIGUSR2)  # what SLURM sends before a time limit

    statuses: list[str] = []
    while proc.poll() is None:
        with Registry.open(url) as reg:
            runs = list_runs(reg)
        if runs and (not statuses or statuses[-1] != runs[0].status):
            statuses.append(runs[0].status)
        time.sleep(0.05)
    output = proc.stdout.read() if proc.stdout else ""
    assert proc.returncode == 0, output[-3000:]
    assert "preempted" in statuses and statuses[-1] == "completed"
    assert statuses.index("preempted") < len(statuses) - 1 - statuses[::-1].index("running")

    (job_dir,) = [p.parent for p in sweep.glob("*/checkpoints")]
    logs = "".join(p.read_text() for p in (sweep / ".submitit").rglob("*_log.*"))
    stopped = re.search(r"stopped by SIGUSR2 after step (\d+)", logs)
    resumed = re.search(r"resumed from step (\d+)", logs)
    assert stopped and resumed and stopped.group(1) == resumed.group(1), logs[-3000:]
    with Registry.open(url) as reg:
        row = get_run(reg, list_runs(reg)[0].id)
    assert row.resume_count == 1 and row.last_step == STEPS
    assert (
        read_scalars(job_dir / "tb")["train/loss"] == read_scalars(reference / "tb")["train/loss"]
    )
    jax.tree.map(np.testing.assert_array_equal, params(job_dir), params(reference))
