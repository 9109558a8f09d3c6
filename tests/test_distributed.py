"""Multi-host training (`device.distributed`) with two local CPU processes on JAX's own
runtime: each process owns one CPU device and builds half of every batch's rows; they
train, stop together on a signal that only one of them receives, resume, and agree with
the one-process run's losses. Process 0 alone writes TensorBoard and the registry."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.config import compose_train
from tests.helpers.data import addition_traces, write_jsonl
from tests.helpers.processes import start_train, stepping_overrides, wait_for
from tests.helpers.tensorboard import read_scalars
from tests.test_train_grpo import common as grpo_common
from tests.test_train_grpo import grpo
from tunixrt.config import ConfigError, DistributedConfig
from tunixrt.registry import Registry, get_run, list_runs
from tunixrt.train import train

STEPS = 40


def overrides(cache: Path) -> list[str]:
    return stepping_overrides(STEPS, cache, checkpoint_every=2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_processes(common: list[str], count: int = 2) -> list[subprocess.Popen[str]]:
    port = free_port()
    return [
        start_train(
            *common,
            "device.distributed.enabled=true",
            f"device.distributed.coordinator=127.0.0.1:{port}",
            f"device.distributed.num_processes={count}",
            f"device.distributed.process_id={index}",
            "device.distributed.timeout_s=120",
        )
        for index in range(count)
    ]


def finish(procs: list[subprocess.Popen[str]], timeout: float = 180) -> list[tuple[int, str]]:
    """(exit code, output) of each process once all have ended."""
    deadline = time.monotonic() + timeout
    out = []
    for proc in procs:
        try:
            text, _ = proc.communicate(timeout=max(deadline - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise
        out.append((proc.returncode, text))
    return out


def stopped_step(output: str) -> int:
    found = re.search(r"stopped by SIGTERM after step (\d+)", output)
    assert found, output[-3000:]
    return int(found.group(1))


@pytest.mark.slow
def test_two_processes_train_stop_together_resume_and_match_one_process(tmp_path):
    cache = tmp_path / "jax_cache"
    reference = tmp_path / "reference"
    train(compose_train([*overrides(cache), "registry.url=null"]), reference)

    url = f"sqlite:///{tmp_path / 'registry.db'}"
    run_dir = tmp_path / "run"
    common = [*overrides(cache), f"registry.url='{url}'", f"hydra.run.dir={run_dir}"]
    procs = start_processes(common)
    wait_for("checkpoints/2", run_dir, procs)
    procs[1].send_signal(signal.SIGTERM)  # only the second process hears it
    (code0, out0), (code1, out1) = finish(procs)
    assert code0 == code1 == 128 + signal.SIGTERM, out0[-3000:] + out1[-3000:]
    step = stopped_step(out0)
    assert stopped_step(out1) == step < STEPS  # both stopped after the same step
    assert max(int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit()) == step
    # process 0 speaks for the run; the other logs only what goes wrong
    assert "step 1/40" in out0 and "step 1/40" not in out1

    resumed = finish(start_processes(common))
    assert [code for code, _ in resumed] == [0, 0], resumed[0][1][-3000:] + resumed[1][1][-3000:]
    assert f"resumed from step {step}" in resumed[0][1]

    got, want = read_scalars(run_dir / "tb"), read_scalars(reference / "tb")
    assert [s for s, _ in got["train/loss"]] == list(range(1, STEPS + 1))
    for tag in ("train/loss", "train/grad_norm", "eval/loss"):
        np.testing.assert_allclose(
            [v for _, v in got[tag]], [v for _, v in want[tag]], rtol=1e-5, atol=1e-5
        )
    assert len(list((run_dir / "tb").glob("events.out.tfevents.*"))) == 2  # one per start
    with Registry.open(url) as reg:
        (only,) = list_runs(reg)
        row = get_run(reg, only.id)
    assert row.status == "completed" and row.last_step == STEPS and row.resume_count == 1
    assert row.device_count == 2


@pytest.mark.slow
def test_two_processes_run_grpo_as_one(tmp_path):
    """Both processes sample the same groups (one program over both devices, the same
    seed) and each device trains on half of the rows: the losses and rewards are the
    one-process run's."""
    data = write_jsonl(tmp_path / "add.jsonl", addition_traces(200))
    cache, sft = tmp_path / "jax_cache", tmp_path / "sft"
    start = [*grpo_common(data, cache), "trainer.max_steps=60", "optimizer.lr=1e-2"]
    train(compose_train(start), sft)
    runs = grpo(data, cache, sft, "trainer.max_steps=3")
    train(compose_train(runs), tmp_path / "one")
    procs = start_processes([*runs, f"hydra.run.dir={tmp_path / 'two'}"])
    for code, out in finish(procs):
        assert code == 0, out[-3000:]
    got, want = read_scalars(tmp_path / "two" / "tb"), read_scalars(tmp_path / "one" / "tb")
    for tag in ("train/loss", "grpo/reward", "grpo/completion_tokens", "grpo/kl"):
        assert [s for s, _ in got[tag]] == [1, 2, 3], tag
        np.testing.assert_allclose(
            [v for _, v in got[tag]], [v for _, v in want[tag]], rtol=1e-5, atol=1e-5
        )
    assert any(v > 0 for _, v in want["grpo/reward_std"])  # the steps had something to learn


def free_slurm_port() -> int:
    """A free port in the range JAX derives from SLURM_JOB_ID (61440 + id % 4096)."""
    for port in range(61440 + os.getpid() % 2048, 65536):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 61440-65535")


@pytest.mark.slow
def test_the_processes_are_read_from_slurms_environment(tmp_path):
    job = free_slurm_port() - 61440
    common = [*overrides(tmp_path / "cache"), "trainer.max_steps=4", "registry.url=null"]
    slurm = {
        "SLURM_JOB_ID": str(job),
        "SLURM_STEP_NODELIST": "localhost",
        "SLURM_NTASKS": "2",
        "SLURM_STEP_NUM_NODES": "1",
    }
    procs = [
        start_train(
            *common,
            "device.distributed.enabled=true",
            f"hydra.run.dir={tmp_path / 'run'}",
            env={**slurm, "SLURM_PROCID": str(i), "SLURM_LOCALID": str(i)},
        )
        for i in range(2)
    ]
    for i, (code, out) in enumerate(finish(procs)):
        assert code == 0, out[-3000:]
        assert f"process {i} of 2" in out
    assert (tmp_path / "run" / "checkpoints" / "4").is_dir()


def test_settings_are_checked_before_anything_starts():
    with pytest.raises(ConfigError, match=r"device\.distributed\.num_processes"):
        DistributedConfig(enabled=True, coordinator="10.0.0.1:1234")
    with pytest.raises(ConfigError, match=r"device\.distributed\.process_id=2.*\[0, 2\)"):
        DistributedConfig(enabled=True, coordinator="10.0.0.1:1234", num_processes=2, process_id=2)
    with pytest.raises(ConfigError, match=r"device\.distributed\.coordinator='node7'.*host:port"):
        DistributedConfig(enabled=True, coordinator="node7", num_processes=2, process_id=0)
    with pytest.raises(ConfigError, match="null unless device.distributed.coordinator"):
        DistributedConfig(enabled=True, process_id=1)
