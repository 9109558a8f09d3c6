"""A training run as the registry sees it, on SQLite and PostgreSQL: its row, metric
history and checkpoint rows; failed, preempted and lost runs; the masked password."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.helpers.config import compose_train
from tests.helpers.data import write_jsonl
from tests.helpers.processes import kill_when, run_train, start_train
from tests.helpers.tensorboard import read_scalars
from tunixrt.data import DataError
from tunixrt.registry import Registry, get_run, list_runs
from tunixrt.registry.models import MetricPoint
from tunixrt.train import setup as train_setup
from tunixrt.train.loop import train
from tunixrt.train.signals import Preempted
from tunixrt.train.step import make_train_step

pytestmark = pytest.mark.slow

FAST = [
    "debug=fast",
    "trainer.max_steps=6",
    "trainer.log_every=2",
    "trainer.eval_every=3",
    "checkpoint.every_steps=3",
]


def the_run(url: str, run_dir: Path, **open_kwargs):
    with Registry.open(url, **open_kwargs) as reg:
        (summary,) = [r for r in list_runs(reg) if r.run_dir == str(run_dir.resolve())]
        return get_run(reg, summary.id)


def history(url: str, run_id: str, name: str) -> list[tuple[int, float]]:
    with Registry.open(url) as reg, reg.session(read_only=True) as s:
        rows = s.scalars(
            select(MetricPoint)
            .where(MetricPoint.run_id == run_id, MetricPoint.name == name)
            .order_by(MetricPoint.step)
        )
        return [(p.step, p.value) for p in rows]


def test_run_row_metrics_and_checkpoints_then_resume(registry_url, tmp_path):
    train(compose_train([*FAST, f"registry.url='{registry_url}'"]), tmp_path)
    run = the_run(registry_url, tmp_path)
    assert run.status == "completed" and run.last_step == 6 and run.resume_count == 0
    assert run.config["trainer"]["max_steps"] == 6 and run.device_count >= 1
    assert run.tb_dir == str((tmp_path / "tb").resolve()) and run.versions["jax"]
    assert [c.step for c in run.checkpoints] == [3, 6]
    assert run.checkpoints[-1].metrics == {"eval/loss": pytest.approx(run.metrics["eval/loss"])}
    tb = read_scalars(tmp_path / "tb")["train/loss"]
    assert history(registry_url, run.id, "train/loss") == [(s, pytest.approx(v)) for s, v in tb]

    train(
        compose_train([*FAST, "trainer.max_steps=8", f"registry.url='{registry_url}'"]),
        tmp_path,
    )
    again = the_run(registry_url, tmp_path)
    assert again.id == run.id and again.resume_count == 1
    assert again.status == "completed" and again.last_step == 8
    steps = [s for s, _ in history(registry_url, run.id, "train/loss")]
    assert steps == [1, 2, 4, 6, 7, 8]  # first step of the restart is logged, no step twice


def test_bad_data_is_recorded_as_failed(registry_url, tmp_path):
    bad = write_jsonl(tmp_path / "bad.jsonl", ['{"prompt": "x"}'])
    with pytest.raises(DataError):
        train(
            compose_train(
                [*FAST, "dataset=jsonl", f"dataset.path={bad}", f"registry.url='{registry_url}'"]
            ),
            tmp_path / "run",
        )
    run = the_run(registry_url, tmp_path / "run")
    assert run.status == "failed" and run.ended_at is not None
    assert "DataError" in run.error and f"{bad}:1:" in run.error


def test_signal_is_recorded_as_preempted(registry_url, tmp_path, monkeypatch):
    calls = {"n": 0}

    def make(*key):
        real_step = make_train_step(*key)  # the step the config asks for (wrt, loss chunks)

        def step_then_term(*args):
            calls["n"] += 1
            if calls["n"] == 4:
                os.kill(os.getpid(), signal.SIGTERM)  # as a scheduler would, mid-run
            return real_step(*args)

        return step_then_term

    monkeypatch.setattr(train_setup, "make_train_step", make)
    with pytest.raises(Preempted):
        train(compose_train([*FAST, f"registry.url='{registry_url}'"]), tmp_path)
    run = the_run(registry_url, tmp_path)
    assert run.status == "preempted" and run.last_step == 4
    assert 4 in [c.step for c in run.checkpoints]


def test_sigkilled_run_shows_as_lost(registry_url, tmp_path):
    out = tmp_path / "run"
    args = ["debug=fast", "trainer.max_steps=400", "checkpoint.every_steps=2"]
    proc = start_train(*args, f"registry.url='{registry_url}'", f"hydra.run.dir={out}", quiet=True)
    kill_when(proc, out / "checkpoints" / "2")
    assert the_run(registry_url, out).status == "running"  # its heartbeat is fresh
    time.sleep(1.5)
    assert the_run(registry_url, out, lost_after_s=1.0).status == "lost"


def test_password_never_written(pg_database, tmp_path):
    from tests.helpers.registry import pg_url

    secret = "s3cr3t-pw"
    url = pg_url(pg_database, password=secret)
    out = tmp_path / "run"
    proc = run_train(*FAST, f"registry.url='{url}'", f"hydra.run.dir={out}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert secret not in proc.stdout + proc.stderr
    for path in out.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    run = the_run(url, out)
    assert secret not in repr(run) and "***" in run.config["registry"]["url"]


def test_thirty_runs_in_one_process_leave_no_connection_open(tmp_path):
    """Each train() disposes its registry engine: a sweep of 30 jobs in one process (what
    Hydra's basic launcher does) ends with as many server connections as it started."""
    from tests.helpers.registry import fresh_pg_database, pg_admin, pg_url

    with fresh_pg_database() as database:
        url = pg_url(database)

        def connections() -> int:
            with pg_admin() as admin:
                row = admin.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (database,)
                ).fetchone()
            return int(row[0])

        before = connections()
        cfg = [
            "debug=fast",
            "trainer.max_steps=1",
            "trainer.eval_batches=1",
            f"device.compile_cache_dir={tmp_path / 'cache'}",
            f"registry.url='{url}'",
        ]
        for job in range(30):
            train(compose_train([*cfg, f"seed={job}"]), tmp_path / str(job))
        assert connections() == before
        with Registry.open(url) as reg:
            runs = list_runs(reg, limit=100)
        assert len(runs) == 30 and {r.status for r in runs} == {"completed"}
