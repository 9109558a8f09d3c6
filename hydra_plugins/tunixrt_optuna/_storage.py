"""Where studies live, and opening one.

Default (`hydra.sweeper.storage: null`): beside the run registry that `registry.url`
names, never in the registry's own tables. Optuna's RDBStorage and the registry both
keep their Alembic revision in a table named `alembic_version`, so one schema cannot
hold both: each would refuse the other's revision. Hence:

  SQLite file .../registry.db     -> SQLite file .../optuna.db (same folder)
  PostgreSQL database             -> the same database, schema `optuna` (or
                                     `<registry schema>_optuna`), created on first
                                     use, selected by the URL's libpq options
  registry.url: null, or :memory: -> an in-memory study (lost at exit; logged)

The derived URL is a plain SQLAlchemy URL, so `optuna-dashboard URL` and
`optuna.load_study(storage=URL)` open the same study.
"""

from __future__ import annotations

import logging
import re
from typing import Literal

import optuna
from hydra.errors import CompactHydraException
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

from tunixrt.registry.urls import mask_url, resolve_url, sqlite_path

log = logging.getLogger(__name__)

SCHEMA = "optuna"
SQLITE_FILE = "optuna.db"
# libpq's options: "-csearch_path=name" or "-c search_path=name"
_SEARCH_PATH = re.compile(r"-c\s*search_path\s*=\s*([A-Za-z_]\w*)")


class StorageError(CompactHydraException, ValueError):
    """No storage can be derived, or the study cannot be opened; says what to set."""


def storage_url(storage: str | None, registry_url: str | None) -> str | None:
    """The study's SQLAlchemy URL: `storage` when given, else one beside the registry
    (`registry_url` is the job's `registry.url`, "auto" included); None: in memory."""
    if storage:
        return storage
    registry = resolve_url(registry_url)
    if registry is None:
        return None
    url = make_url(registry)
    backend = url.get_backend_name()
    if backend == "sqlite":
        path = sqlite_path(url)
        if path is None:
            return None
        optuna_db = URL.create("sqlite", database=str(path.with_name(SQLITE_FILE)))
        return optuna_db.render_as_string(hide_password=False)
    if backend == "postgresql":
        options = str(url.query.get("options", ""))
        match = _SEARCH_PATH.search(options)
        # A registry in a schema of its own (a team's, a test's) gets its own studies too.
        schema = f"{match.group(1)}_{SCHEMA}" if match else SCHEMA
        options = _SEARCH_PATH.sub("", options).strip()
        options = f"{options} -csearch_path={schema}".strip()
        return url.update_query_dict({"options": options}).render_as_string(hide_password=False)
    raise StorageError(
        f"cannot place an Optuna study beside the registry {mask_url(registry)} "
        f"({backend}); set hydra.sweeper.storage to a SQLAlchemy URL"
    )


def open_storage(url: str | None, heartbeat_s: int | None = None) -> optuna.storages.BaseStorage:
    """The study's storage: SQL at `url`, else in memory. With `heartbeat_s`, a RUNNING
    trial whose heartbeat is older than two intervals counts as stale (its sweeper died)."""
    if url is None:
        return optuna.storages.InMemoryStorage()
    _prepare(url)
    grace = None if heartbeat_s is None else 2 * heartbeat_s
    return optuna.storages.RDBStorage(url, heartbeat_interval=heartbeat_s, grace_period=grace)


def open_study(
    url: str | None,
    name: str,
    direction: Literal["minimize", "maximize"],
    storage: optuna.storages.BaseStorage | None = None,
) -> optuna.Study:
    """Create the study, or load it when one of that name exists (a restarted search).
    `storage` (from `open_storage`) replaces the one `url` would give."""
    if url is None:
        log.warning("no registry and no hydra.sweeper.storage: study %s lives in memory", name)
    storage = storage or open_storage(url)
    study = optuna.create_study(
        storage=storage, study_name=name, direction=direction, load_if_exists=True
    )
    if study.direction.name.lower() != direction:
        raise StorageError(
            f"study {name} in {mask_url(url or 'memory')} was created to "
            f"{study.direction.name.lower()}, not {direction}; set hydra.sweeper.study_name "
            "to start another study"
        )
    return study


def _prepare(url: str) -> None:
    """What RDBStorage expects to exist: a SQLite file's folder, a PostgreSQL schema
    named by the URL's search_path option."""
    parsed = make_url(url)
    path = sqlite_path(parsed)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    match = _SEARCH_PATH.search(str(parsed.query.get("options", "")))
    if parsed.get_backend_name() == "postgresql" and match:
        engine = create_engine(parsed)
        try:
            with engine.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{match.group(1)}"'))
        finally:
            engine.dispose()
