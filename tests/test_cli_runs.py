"""`tunixrt runs` and `tunixrt db` through main(argv): JSON output, tables, short ids,
errors as one line, and no password anywhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.registry import sqlite_url
from tunixrt.cli.main import main
from tunixrt.registry import Registry, RunInfo, create_sweep, head_revision, mask_url

SECRET = "s3cret-pw"


def with_password(url: str) -> str:
    """The same database with a password in the URL; the test server trusts any."""
    if url.startswith("postgresql"):
        return url.replace("postgres@", f"postgres:{SECRET}@", 1)
    return url


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert SECRET not in out + err
    return code, out, err


@pytest.fixture
def populated(registry_url: str, tmp_path: Path) -> tuple[str, list[str]]:
    url = with_password(registry_url)
    with Registry.open(url) as reg:
        sweep = create_sweep(reg, folder=str(tmp_path), sweeper="basic", search_space=[])
        ids = []
        for i, status in enumerate(["completed", "failed", None]):
            config = {"optimizer": {"lr": 10.0**-i}, "registry": {"url": url}}
            rec = reg.start_run(
                RunInfo(
                    name=f"run{i}",
                    run_dir=tmp_path / f"run{i}",
                    config=config,
                    overrides=[f"registry.url={url}"],
                    sweep_id=sweep if i < 2 else None,
                )
            )
            rec.log_metrics(10, {"train/loss": 3.0 - i, "eval/loss": 4.0 - i})
            rec.checkpoint(10, str(tmp_path / f"run{i}" / "checkpoints" / "10"), {"x": 1.0})
            if status:
                rec.finish(status, error="boom" if status == "failed" else None, last_step=10)
            ids.append(rec.id)
    return url, ids


def test_runs_list_json(
    populated: tuple[str, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    url, ids = populated
    code, out, _ = run_cli(capsys, "runs", "list", "--registry", url, "--json")
    runs = json.loads(out)
    assert code == 0 and [r["id"] for r in runs] == ids[::-1]  # newest first
    first = runs[-1]
    assert first["name"] == "run0" and first["status"] == "completed"
    assert first["last_step"] == 10 and first["metrics"] == {"eval/loss": 4.0, "train/loss": 3.0}
    assert first["created_at"].endswith("+00:00") and first["sweep_id"]
    assert first["run_dir"].endswith("run0")

    code, out, _ = run_cli(
        capsys, "runs", "list", "--registry", url, "--json", "--status", "failed"
    )
    assert [r["name"] for r in json.loads(out)] == ["run1"]
    sweep = first["sweep_id"][:8]
    code, out, _ = run_cli(capsys, "runs", "list", "--registry", url, "--json", "--sweep", sweep)
    assert [r["name"] for r in json.loads(out)] == ["run1", "run0"]
    code, out, _ = run_cli(capsys, "runs", "list", "--registry", url, "--json", "--name", "n2")
    assert [r["name"] for r in json.loads(out)] == ["run2"]


def test_runs_list_table_and_env_url(
    populated: tuple[str, list[str]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, ids = populated
    monkeypatch.setenv("TUNIXRT_REGISTRY_URL", url)
    code, out, _ = run_cli(capsys, "runs", "list", "--limit", "2")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 3
    assert lines[0].split() == [
        "ID",
        "NAME",
        "STATUS",
        "CREATED",
        "(UTC)",
        "STEP",
        "eval/loss",
        "train/loss",
    ]
    assert lines[1].split()[:3] == [ids[2][:8], "run2", "running"]
    assert lines[1].index("running") == lines[2].index("failed")  # aligned columns


def test_runs_show(populated: tuple[str, list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    url, ids = populated
    code, out, _ = run_cli(capsys, "runs", "show", ids[1][:6], "--registry", url)
    assert code == 0 and ids[1] in out and "boom" in out and "optimizer.lr = 0.1" in out
    assert "checkpoints" in out and "train/loss" in out
    code, out, _ = run_cli(capsys, "runs", "show", ids[1], "--registry", url, "--json")
    run = json.loads(out)
    assert run["status"] == "failed" and run["error"] == "boom"
    assert run["checkpoints"][0]["step"] == 10 and run["checkpoints"][0]["metrics"] == {"x": 1.0}
    assert run["config"]["registry"]["url"] == mask_url(url)
    assert run["metric_steps"] == {"eval/loss": 10, "train/loss": 10}


def test_runs_compare(populated: tuple[str, list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    url, ids = populated
    code, out, _ = run_cli(
        capsys, "runs", "compare", ids[0], ids[1][:8], "--registry", url, "--json"
    )
    result = json.loads(out)
    assert code == 0 and result["config"] == {"optimizer.lr": [1.0, 0.1]}
    assert result["metrics"] == {"eval/loss": [4.0, 3.0], "train/loss": [3.0, 2.0]}
    code, out, _ = run_cli(capsys, "runs", "compare", ids[0], ids[1], "--registry", url)
    assert code == 0 and "optimizer.lr" in out and ids[0][:8] in out


def test_runs_tag(populated: tuple[str, list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    url, ids = populated
    code, out, _ = run_cli(capsys, "runs", "tag", ids[0][:8], "note=a=b", "--registry", url)
    assert code == 0 and out.strip() == f"{ids[0]}: note=a=b"
    code, out, _ = run_cli(capsys, "runs", "list", "--registry", url, "--json")
    assert json.loads(out)[-1]["tags"] == {"note": "a=b"}
    code, _, err = run_cli(capsys, "runs", "tag", ids[0], "novalue", "--registry", url)
    assert code == 2 and "KEY=VALUE" in err


def test_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TUNIXRT_REGISTRY_URL", raising=False)
    code, _, err = run_cli(capsys, "runs", "list")
    assert code == 2 and "no registry at" in err and "outputs/registry.db" in err
    assert not (tmp_path / "outputs").exists()  # reading creates nothing

    bad = f"postgresql+psycopg://postgres:{SECRET}@127.0.0.1:1/x"
    code, _, err = run_cli(capsys, "runs", "show", "abc", "--registry", bad)
    assert code == 2 and err.count("\n") == 1 and "postgres:***@127.0.0.1:1" in err
    code, _, err = run_cli(capsys, "db", "current", "--registry", bad)
    assert code == 2 and "***" in err

    url = sqlite_url(tmp_path / "r.db")
    Registry.open(url).close()
    code, _, err = run_cli(capsys, "runs", "show", "ffff", "--registry", url)
    assert code == 2 and "no run with id 'ffff'" in err


def test_db_upgrade_and_current(registry_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    url = with_password(registry_url)
    head = head_revision()
    code, out, _ = run_cli(capsys, "db", "current", "--registry", url)
    assert code == 0 and "current: empty" in out
    code, out, _ = run_cli(capsys, "db", "upgrade", "--registry", url)
    assert code == 0 and f"upgraded: empty -> {head}" in out
    code, out, _ = run_cli(capsys, "db", "upgrade", "--registry", url)
    assert code == 0 and f"already at {head}" in out
    code, out, _ = run_cli(capsys, "db", "current", "--registry", url)
    assert code == 0 and f"current: {head}" in out and "up to date" in out
