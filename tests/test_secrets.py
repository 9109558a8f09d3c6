"""A password in registry.url (PostgreSQL) reaches no file of the output folders, no
console line, and no row of any table of the registry or the Optuna storage: for a run,
a SIGTERMed run, a grid sweep and an Optuna search."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from tests.helpers.processes import run_train, start_train
from tests.helpers.registry import fresh_pg_database, pg_admin, pg_url

pytestmark = pytest.mark.slow
SECRET = "pl4nted-S3cret"  # pragma: allowlist secret  (a fake, planted to be found)
FAST = ["debug=fast", "trainer.max_steps=3", "trainer.eval_every=3", "checkpoint.every_steps=3"]


def finished(proc: subprocess.CompletedProcess[str], code: int = 0) -> str:
    output = proc.stdout + proc.stderr
    assert proc.returncode == code, output[-3000:]
    return output


def sigtermed(url: str, out: Path) -> str:
    args = ["debug=fast", "trainer.max_steps=400", "checkpoint.every_steps=2"]
    proc = start_train(*args, f"registry.url='{url}'", f"hydra.run.dir={out}")
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "step 2/" in line or (out / "checkpoints" / "2").exists():
            proc.send_signal(signal.SIGTERM)
            break
    lines.append(proc.stdout.read())
    assert proc.wait(timeout=120) == 128 + signal.SIGTERM, "".join(lines)[-3000:]
    output = "".join(lines)
    assert "Resume with: tunixrt-train" in output
    return output


def table_rows(database: str) -> dict[str, list[str]]:
    """Every row of every table outside the catalogs, as text."""
    with pg_admin(database) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE "
            "table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
        return {
            f"{schema}.{name}": [
                str(r[0]) for r in conn.execute(f'SELECT t::text FROM "{schema}"."{name}" t')
            ]
            for schema, name in tables
        }


def test_a_planted_password_is_written_nowhere(tmp_path):
    with fresh_pg_database() as database:
        url = pg_url(database, password=SECRET)
        registry = f"registry.url='{url}'"
        console = [
            finished(run_train(*FAST, registry, f"hydra.run.dir={tmp_path / 'run'}")),
            sigtermed(url, tmp_path / "stopped"),
            finished(
                run_train("-m", *FAST, "seed=0,1", registry, f"hydra.sweep.dir={tmp_path / 'grid'}")
            ),
            finished(
                run_train(
                    "-m",
                    "hparams_search=lr_optuna",
                    "hydra.sweeper.n_trials=2",
                    *FAST,
                    registry,
                    f"hydra.sweep.dir={tmp_path / 'optuna'}",
                    timeout=600,
                )
            ),
        ]
        rows = table_rows(database)

    for text in console:
        assert SECRET not in text
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) > 50  # the runs wrote their folders
    leaks = [str(p) for p in files if SECRET.encode() in p.read_bytes()]
    assert not leaks
    assert len(rows["public.runs"]) == 1 + 1 + 2 + 2 and rows["public.sweeps"]
    assert any("***" in r for r in rows["public.runs"])  # the URL is there, masked
    assert any(name.endswith(".trials") or name.endswith(".trial_user_attributes") for name in rows)
    leaks = [name for name, texts in rows.items() if any(SECRET in t for t in texts)]
    assert not leaks
