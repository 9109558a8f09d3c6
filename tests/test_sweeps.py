"""Multirun sweeps: grid jobs registered under one sweep, HParams records in each run's
event folder, the end-of-sweep summary, the joblib and SLURM launcher presets."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from tests.helpers.processes import run_train
from tunixrt.cli.main import main as tunixrt_cli
from tunixrt.registry import Registry, RunInfo, create_sweep, get_run, leaderboard, list_runs, swept
from tunixrt.registry.models import Sweep

FAST = ["debug=fast", "trainer.max_steps=3", "trainer.eval_every=3", "checkpoint.every_steps=3"]


def multirun(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    sweep = f"hydra.sweep.dir={tmp_path / 'sweep'}"
    return run_train("-m", *FAST, *args, f"registry.url='{url}'", sweep, timeout=600)


def hparams_records(tb_dir: Path) -> dict[str, object]:
    acc = EventAccumulator(str(tb_dir))
    acc.Reload()
    content = acc.PluginTagToContent("hparams")
    data = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    metrics = [m.name.tag for m in experiment.experiment.metric_infos]
    assert metrics == ["eval/loss", "train/loss", "eval/accuracy"]
    return {
        k: v.number_value if v.HasField("number_value") else v.string_value
        for k, v in data.session_start_info.hparams.items()
    }


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("grid")
    proc = multirun(tmp, "optimizer.lr=1e-3,3e-3", "seed=0,1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "4 jobs, 0 failed" in proc.stdout
    return tmp


@pytest.mark.slow
def test_grid_runs_are_one_sweep_in_the_registry(grid):
    url = f"sqlite:///{grid / 'registry.db'}"
    sweep_id = json.loads((grid / "sweep" / "sweep.json").read_text())["id"]
    with Registry.open(url) as reg:
        runs = list_runs(reg, sweep=sweep_id)
        assert len(runs) == 4 and {r.status for r in runs} == {"completed"}
        pairs = {
            (get_run(reg, r.id).config["optimizer"]["lr"], get_run(reg, r.id).config["seed"])
            for r in runs
        }
        with reg.session(read_only=True) as s:
            sweep = s.get_one(Sweep, sweep_id)
            assert sweep.status == "completed" and sweep.optimized_metric == "eval/loss"
    assert pairs == {(1e-3, 0), (1e-3, 1), (3e-3, 0), (3e-3, 1)}
    folders = sorted(p.name for p in (grid / "sweep").iterdir() if p.is_dir())
    assert folders[0].startswith("0_") and "optimizer.lr=0.001" in folders[0]
    assert {Path(r.run_dir).parent for r in runs} == {(grid / "sweep").resolve()}


@pytest.mark.slow
def test_each_run_writes_its_hparams(grid):
    records = [hparams_records(tb) for tb in sorted((grid / "sweep").glob("*/tb"))]
    assert len(records) == 4
    assert {(r["optimizer.lr"], r["seed"]) for r in records} == {
        (1e-3, 0.0),
        (1e-3, 1.0),
        (3e-3, 0.0),
        (3e-3, 1.0),
    }
    assert all(r["model.name"] == "llama_tiny" and r["optimizer.name"] == "adamw" for r in records)
    assert records[0]["trainer.eval_every"] == 3.0  # every override, not only KEY_HPARAMS


@pytest.mark.slow
def test_compare_sweep_ranks_by_the_metric(grid, capsys):
    url = f"sqlite:///{grid / 'registry.db'}"
    assert tunixrt_cli(["runs", "compare", "--sweep", "latest", "--registry", url, "--json"]) == 0
    board = json.loads(capsys.readouterr().out)
    assert board["keys"] == ["optimizer.lr", "seed"] and len(board["runs"]) == 4
    values = [r["eval/loss"] for r in board["runs"]]
    assert values == sorted(values)
    assert (
        tunixrt_cli(["runs", "compare", "--sweep", board["sweep"][:8], "--registry", url, "--csv"])
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "id,status,optimizer.lr,seed,eval/loss" and len(lines) == 5


@pytest.mark.slow
def test_a_failing_job_is_reported_and_the_others_complete(tmp_path):
    proc = multirun(tmp_path, "trainer.batch_size=4,0,2")
    assert proc.returncode == 1
    out = proc.stdout
    assert "3 jobs, 1 failed" in out and "failures:" in out
    assert "trainer.batch_size=0: expected a positive integer" in out.split("failures:")[1]
    with Registry.open(f"sqlite:///{tmp_path / 'registry.db'}") as reg:
        assert sorted(r.status for r in list_runs(reg)) == ["completed", "completed"]


@pytest.mark.slow
def test_joblib_preset_runs_jobs_in_parallel_on_one_sqlite_registry(tmp_path):
    proc = multirun(tmp_path, "launcher=local_parallel", "seed=0,1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "database is locked" not in proc.stdout + proc.stderr
    with Registry.open(f"sqlite:///{tmp_path / 'registry.db'}") as reg:
        runs = list_runs(reg)
    assert [r.status for r in runs] == ["completed", "completed"]
    (a, b) = sorted(runs, key=lambda r: r.started_at)
    assert b.started_at < a.ended_at  # the two jobs overlapped in time


def test_slurm_preset_composes_with_requeue_settings():
    from hydra import compose, initialize_config_dir

    from tunixrt.paths import repo_path

    with initialize_config_dir(version_base="1.3", config_dir=str(repo_path("conf"))):
        cfg = compose("train", overrides=["launcher=slurm"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert launcher.max_num_timeout > 0 and launcher.signal_delay_s >= 60
    assert launcher.gpus_per_node == 1 and cfg.device.platform.value == "gpu"
    assert cfg.run.resume.value == "auto"  # a requeued job resumes in its own folder


def test_swept_keeps_only_varying_keys():
    jobs = [["debug=fast", "lr=1", "seed=0"], ["debug=fast", "lr=2", "seed=0"]]
    assert swept(jobs) == [["lr=1"], ["lr=2"]]
    assert swept([["a=1"]]) == [["a=1"]]


@pytest.mark.parametrize(
    ("metric", "order"), [("eval/loss", [1, 2, 0]), ("eval/accuracy", [0, 2, 1])]
)
def test_leaderboard_puts_the_best_first_in_the_metric_s_direction(tmp_path, metric, order):
    """Lowest loss first, highest accuracy first; a run without the metric last."""
    values = [0.9, 0.1, 0.5]
    with Registry.open(f"sqlite:///{tmp_path / 'r.db'}") as reg:
        sweep = create_sweep(
            reg, folder=str(tmp_path), sweeper="basic", search_space={}, optimized_metric=metric
        )
        for n, value in enumerate([*values, None]):
            info = RunInfo(name=f"job{n}", run_dir=tmp_path / f"job{n}", sweep_id=sweep)
            rec = reg.start_run(info, write_every_s=0.0)
            if value is not None:
                rec.log_metrics(1, {metric: value})
            rec.finish("completed")
        board = leaderboard(reg, sweep)
    assert [row["name"] for row in board.rows] == [f"job{n}" for n in order] + ["job3"]
