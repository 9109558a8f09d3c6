"""tunixrt's Optuna sweeper (hydra_plugins/tunixrt_optuna): the search-space syntax, the
study's storage beside the registry, and real searches run as `tunixrt-train -m`."""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from hydra.core.override_parser.overrides_parser import OverridesParser  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from optuna.distributions import (  # noqa: E402
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState  # noqa: E402

from hydra_plugins.tunixrt_optuna._search import (  # noqa: E402
    _fail_stale,
    default_study_name,
    split_arguments,
)
from hydra_plugins.tunixrt_optuna._space import (  # noqa: E402
    SearchSpaceError,
    parse_param,
    parse_space,
)
from hydra_plugins.tunixrt_optuna._storage import (  # noqa: E402
    StorageError,
    open_storage,
    open_study,
    storage_url,
)
from hydra_plugins.tunixrt_optuna.config import SearchSettings  # noqa: E402
from tests.helpers.paths import ROOT  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)


# --- the search-space syntax ---------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("log_float(1e-4, 3e-3)", FloatDistribution(1e-4, 3e-3, log=True)),
        ("float(0.0, 0.2)", FloatDistribution(0.0, 0.2)),
        ("float(0, 1, step=0.25)", FloatDistribution(0.0, 1.0, step=0.25)),
        ("int(0, 50)", IntDistribution(0, 50)),
        (" int( 0 , 50 , step = 10 ) ", IntDistribution(0, 50, step=10)),
        ("log_int(8, 512)", IntDistribution(8, 512, log=True)),
        ("choice(adamw, lion)", CategoricalDistribution(["adamw", "lion"])),
        (
            "choice(64, -1, 1e-3, true, null, 'a, b')",
            CategoricalDistribution([64, -1, 1e-3, True, None, "a, b"]),
        ),
    ],
)
def test_parse_good_forms(spec: str, expected: object) -> None:
    assert parse_param("some.key", spec).distribution == expected


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("uniform(0, 1)", "unknown form"),
        ("log_float 1e-4, 3e-3", "unknown form"),
        ("float(1)", "two bounds"),
        ("float(1, 0)", "low"),
        ("log_float(0, 1)", "low"),
        ("float(0, inf)", "not a finite number"),
        ("int(0.5, 3)", "not an integer"),
        ("float(0, 1, steps=2)", "unknown argument 'steps'"),
        ("choice()", "at least one value"),
        ("choice(a, , b)", "empty value"),
        ("choice(a, a)", "repeated value"),
        ("choice('a, b)", "unbalanced"),
        (0.5, "expected a string"),
    ],
)
def test_parse_bad_forms_name_the_key(spec: object, says: str) -> None:
    with pytest.raises(SearchSpaceError) as err:
        parse_param("optimizer.lr", spec)
    message = str(err.value)
    assert "hydra.sweeper.params: optimizer.lr=" in message
    assert says in message
    assert "log_float(low, high)" in message  # the forms it takes


@pytest.mark.parametrize(
    ("spec", "value"),
    [
        ("log_float(1e-6, 1e-3)", 1.2345678901234567e-05),
        ("float(0, 0.2)", 0.1),
        ("int(0, 50)", 36),
        ("choice(64, -1)", -1),
        ("choice(adamw, 'a b')", "a b"),
        ("choice(true, null)", None),
    ],
)
def test_overrides_read_back_by_hydra_as_sampled(spec: str, value: object) -> None:
    text = parse_param("trainer.x", spec).override(value)
    override = OverridesParser.create().parse_override(text)
    assert override.key_or_group == "trainer.x"
    assert override.value() == value


def test_nested_params_flatten_and_the_later_entry_wins() -> None:
    # `+hydra.sweeper.params.optimizer.lr=...` on the command line nests under "optimizer"
    space = parse_space({"optimizer.lr": "float(0, 1)", "optimizer": {"lr": "float(0, 2)"}})
    assert list(space) == ["optimizer.lr"]
    assert space["optimizer.lr"].distribution == FloatDistribution(0.0, 2.0)


def test_command_line_pins_or_searches_keys() -> None:
    space = parse_space({"optimizer.lr": "float(0, 1)", "seed": "int(0, 9)"})
    fixed, searched = split_arguments(
        ["hparams_search=lr_optuna", "seed=3", "trainer.seq_len=64,128", "+x=a,b"], space
    )
    assert fixed == ["hparams_search=lr_optuna", "seed=3"]  # seed is pinned, not searched
    assert set(searched) == {"optimizer.lr", "trainer.seq_len", "x"}
    assert searched["trainer.seq_len"].distribution == CategoricalDistribution([64, 128])
    assert searched["x"].override("b") == "+x=b"
    with pytest.raises(SearchSpaceError, match="hydra.sweeper.params"):
        split_arguments(["optimizer.lr=interval(0.1, 0.5)"], space)


def test_default_study_name_is_stable_per_command() -> None:
    cfg = OmegaConf.create({"hydra": {"runtime": {"choices": {"hparams_search": "lr_optuna"}}}})
    name = default_study_name(cfg, ["hparams_search=lr_optuna", "debug=fast"])
    assert name.startswith("tunixrt-lr_optuna-")
    assert name == default_study_name(cfg, ["debug=fast", "hparams_search=lr_optuna"])
    # the same search, launched in parallel
    assert name == default_study_name(
        cfg, ["hparams_search=lr_optuna", "debug=fast", "launcher=local_parallel"]
    )
    assert name != default_study_name(cfg, ["hparams_search=lr_optuna", "model=llama_small"])


# --- storage ---------------------------------------------------------------------------


def test_storage_url_beside_the_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert storage_url("sqlite:////x/y.db", "auto") == "sqlite:////x/y.db"
    assert storage_url(None, f"sqlite:///{tmp_path}/reg.db") == f"sqlite:///{tmp_path}/optuna.db"
    monkeypatch.setenv("TUNIXRT_REGISTRY_URL", f"sqlite:///{tmp_path}/env/registry.db")
    assert storage_url(None, "auto") == f"sqlite:///{tmp_path}/env/optuna.db"
    assert storage_url(None, None) is None  # no registry: in memory
    pg = "postgresql+psycopg://u:pw@h/db"
    assert storage_url(None, pg) == f"{pg}?options=-csearch_path%3Doptuna"
    in_schema = storage_url(None, f"{pg}?options=-csearch_path%3Dteam")
    assert in_schema == f"{pg}?options=-csearch_path%3Dteam_optuna"
    with pytest.raises(StorageError, match="hydra.sweeper.storage"):
        storage_url(None, "mysql://u@h/db")


def test_study_and_registry_share_a_database(registry_url: str, backend: str) -> None:
    """Optuna and the registry both keep an `alembic_version` table; the derived storage
    keeps them apart, so each still opens after the other wrote."""
    from tunixrt.registry import Registry

    Registry.open(registry_url).close()
    url = storage_url(None, registry_url)
    assert url is not None
    study = open_study(url, "s", "minimize")
    study.tell(study.ask({"x": FloatDistribution(0, 1)}), 0.5)
    try:
        Registry.open(registry_url).close()
        assert len(optuna.load_study(study_name="s", storage=url).trials) == 1
        with pytest.raises(StorageError, match="created to minimize"):
            open_study(url, "s", "maximize")
    finally:
        if backend == "postgresql":
            _drop_optuna_schema(registry_url)


def _drop_optuna_schema(registry_url: str) -> None:
    from psycopg import sql
    from sqlalchemy.engine import make_url

    from tests.helpers.registry import pg_admin

    url = make_url(registry_url)
    schema = str(url.query["options"]).split("=", 1)[1] + "_optuna"
    with pg_admin(url.database) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def test_only_trials_without_a_recent_heartbeat_are_marked_failed(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path}/optuna.db", heartbeat_s=1)
    study = open_study(f"sqlite:///{tmp_path}/optuna.db", "s", "minimize", storage)
    done = study.ask({"x": FloatDistribution(0, 1)})
    study.tell(done, 1.0)
    dead = study.ask({"x": FloatDistribution(0, 1)})  # its sweeper died
    alive = study.ask({"x": FloatDistribution(0, 1)})  # another search still runs it
    for trial in (dead, alive):
        storage.record_heartbeat(trial._trial_id)
    time.sleep(3.5)  # past the grace period of two intervals (SQLite times are whole seconds)
    storage.record_heartbeat(alive._trial_id)
    _fail_stale(study)
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE, TrialState.FAIL, TrialState.RUNNING]


# --- real searches -----------------------------------------------------------------------


def _search_cmd(tmp_path: Path, *extra: str) -> list[str]:
    """A search with its study in tmp_path/optuna.db. registry.url=null keeps the runs out
    of the registry, and so the sweep summary's verdict (tunixrt.sweeps) out of the exit
    code: these tests read the outcome from the study."""
    return [
        sys.executable,
        "scripts/train.py",
        "-m",
        "hparams_search=lr_optuna",
        "debug=fast",
        "trainer.max_steps=3",
        "registry.url=null",
        f"hydra.sweeper.storage=sqlite:///{tmp_path}/optuna.db",
        f"hydra.sweep.dir={tmp_path}/sweep",
        *extra,
    ]


def _run(cmd: list[str], log: Path) -> None:
    with log.open("a") as out:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, timeout=300)
    assert proc.returncode == 0, log.read_text()[-4000:]


def _trials_in(db: Path, state: str) -> int:
    """Trials of the study file in `state`, read with sqlite3 while a search writes it."""
    if not db.exists():
        return 0
    with sqlite3.connect(db, timeout=5) as conn:
        try:
            query = "SELECT count(*) FROM trials WHERE state = ?"
            return int(conn.execute(query, (state,)).fetchone()[0])
        except sqlite3.OperationalError:  # tables not created yet
            return 0


def _complete(db: Path) -> int:
    return _trials_in(db, "COMPLETE")


def _running(db: Path) -> int:
    return _trials_in(db, "RUNNING")


def _load(tmp_path: Path) -> optuna.Study:
    storage = f"sqlite:///{tmp_path}/optuna.db"
    names = optuna.get_all_study_names(storage)
    assert len(names) == 1, names  # both parts in one study
    return optuna.load_study(study_name=names[0], storage=storage)


@pytest.mark.slow
def test_killed_search_continues_in_the_same_study(tmp_path: Path) -> None:
    log = tmp_path / "search.log"
    cmd = _search_cmd(tmp_path, "hydra.sweeper.n_trials=3", "hydra.sweeper.heartbeat_s=1")
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 180
        while _complete(tmp_path / "optuna.db") < 1:
            assert proc.poll() is None, log.read_text()[-4000:]
            assert time.monotonic() < deadline, log.read_text()[-4000:]
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert _complete(tmp_path / "optuna.db") < 3
    time.sleep(3)  # past the grace period (two 1 s heartbeats): its trial is now stale

    _run(cmd, log)  # the same command again

    study = _load(tmp_path)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 3
    assert complete[0].number == 0  # the first part's trial is kept
    assert all(math.isfinite(t.value) for t in complete)
    assert len({tuple(sorted(t.params.items())) for t in complete}) == 3
    assert not study.get_trials(states=(TrialState.RUNNING,))  # the killed one: FAIL
    for trial in complete:
        overrides = trial.user_attrs["overrides"]
        assert "trainer.max_steps=3" in overrides
        assert f"optimizer.warmup_steps={trial.params['optimizer.warmup_steps']}" in overrides
        assert Path(trial.user_attrs["run_dir"]).name.startswith(f"{trial.number}_")
    # job number = trial number: no folder clash; the killed trial may have none
    jobs = [p.name.split("_", 1)[0] for p in (tmp_path / "sweep").iterdir() if p.is_dir()]
    assert len(jobs) == len(set(jobs))
    assert {str(t.number) for t in complete} <= set(jobs) <= {str(t.number) for t in study.trials}


@pytest.mark.slow
def test_failed_trial_is_recorded_and_the_search_goes_on(tmp_path: Path) -> None:
    # seq_len=-1 fails config validation; with seed 1 the second trial draws it
    _run(
        _search_cmd(
            tmp_path,
            "hydra.sweeper.n_trials=2",
            "hydra.sweeper.sampler.seed=1",
            "+hydra.sweeper.params.trainer.seq_len='choice(192, -1)'",
        ),
        tmp_path / "search.log",
    )
    study = _load(tmp_path)
    failed = study.get_trials(states=(TrialState.FAIL,))
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 2 and failed
    assert {t.params["trainer.seq_len"] for t in failed} == {-1}
    assert {t.params["trainer.seq_len"] for t in complete} == {192}
    results = OmegaConf.load(tmp_path / "sweep" / "optuna_results.yaml")
    assert results.complete == 2 and results.failed == len(failed)
    assert results.best.number in {t.number for t in complete}


@pytest.mark.slow
def test_two_searches_on_one_study_leave_each_others_trials_running(tmp_path: Path) -> None:
    """While search A runs a long trial, search B on the same study runs and ends; B
    must not fail A's trial (A beats for it), and A's trial completes."""
    storage = f"sqlite:///{tmp_path}/optuna.db"

    def search(name: str, *extra: str) -> list[str]:
        return [
            sys.executable,
            "scripts/train.py",
            "-m",
            "hparams_search=lr_optuna",
            "debug=fast",
            "registry.url=null",
            f"hydra.sweeper.storage={storage}",
            "hydra.sweeper.study_name=shared",
            "hydra.sweeper.heartbeat_s=1",
            f"hydra.sweep.dir={tmp_path}/{name}",
            *extra,
        ]

    log_a = tmp_path / "a.log"
    with log_a.open("w") as out:
        a = subprocess.Popen(
            search("a", "hydra.sweeper.n_trials=1", "trainer.max_steps=150"),
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 180
        while not _running(tmp_path / "optuna.db"):
            assert a.poll() is None, log_a.read_text()[-4000:]
            assert time.monotonic() < deadline, log_a.read_text()[-4000:]
            time.sleep(0.2)
        _run(search("b", "hydra.sweeper.n_trials=2", "trainer.max_steps=3"), tmp_path / "b.log")
        assert _running(tmp_path / "optuna.db"), "search B failed or ended A's trial"
        assert a.wait(timeout=300) == 0, log_a.read_text()[-4000:]
    finally:
        if a.poll() is None:
            a.kill()
    study = optuna.load_study(study_name="shared", storage=storage)
    assert not study.get_trials(states=(TrialState.FAIL, TrialState.RUNNING))
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) >= 2


def _settings(direction: str | None) -> SearchSettings:
    return SearchSettings(
        n_trials=1,
        n_jobs=1,
        direction=direction,  # type: ignore[arg-type]
        study_name=None,
        storage=None,
        max_failures=None,
        heartbeat_s=30,
        seed=0,
        n_startup_trials=1,
        params={},
    )


@pytest.mark.parametrize(
    ("direction", "metric", "expected"),
    [
        (None, "eval/loss", "minimize"),
        (None, "eval/accuracy", "maximize"),
        (None, "my/score", "minimize"),
        ("maximize", "my/score", "maximize"),
        ("maximize", "eval/accuracy", "maximize"),
    ],
)
def test_the_direction_follows_the_metric(
    direction: str | None, metric: str, expected: str
) -> None:
    assert _settings(direction).direction_for(metric) == expected


def test_a_direction_against_the_metric_is_refused() -> None:
    with pytest.raises(ValueError, match="direction=minimize works against optimized_metric"):
        _settings("minimize").direction_for("eval/accuracy")


def test_a_trial_asked_but_never_beaten_fails_after_the_grace_period(tmp_path: Path) -> None:
    """A sweeper killed between asking a trial and its first heartbeat leaves a RUNNING
    trial optuna's own stale check never sees; it fails once older than the grace period,
    while a trial just asked by a live search keeps running."""
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(storage=open_storage(url, heartbeat_s=1), study_name="s")
    old = study.ask()
    with sqlite3.connect(tmp_path / "optuna.db") as conn:  # asked 3 s ago, no heartbeat
        conn.execute(
            "UPDATE trials SET datetime_start = datetime(datetime_start, '-3 seconds') "
            "WHERE trial_id = ?",
            (old._trial_id,),
        )
    # a new sweeper process reads the study as the database holds it
    study = optuna.load_study(storage=open_storage(url, heartbeat_s=1), study_name="s")
    fresh = study.ask()
    _fail_stale(study)
    states = {t.number: t.state for t in study.get_trials()}
    assert states == {old.number: TrialState.FAIL, fresh.number: TrialState.RUNNING}
