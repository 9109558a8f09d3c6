"""Shared fixtures: an isolated run registry, tokenizers, Hydra composition, and registry
databases on SQLite and PostgreSQL. Plain helpers live in tests/helpers/."""

from __future__ import annotations

import gc
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import jax
import pytest
from omegaconf import DictConfig

from tests.helpers.config import compose_train
from tests.helpers.data import build_small_tokenizer
from tests.helpers.paths import DEV_DATA
from tests.helpers.registry import fresh_pg_database, pg_admin, pg_url, sqlite_url

logging.getLogger("absl").setLevel(logging.WARNING)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules with slow tests first, each module's tests kept together and in order:
    xdist (`-n`, `--dist loadscope`) hands out whole modules in this order, so the long
    ones start early and the short ones fill the workers' ends."""
    slow = {item.nodeid.split("::")[0] for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.nodeid.split("::")[0] not in slow)  # stable sort


@pytest.fixture(scope="module", autouse=True)
def release_compiled_programs() -> Iterator[None]:
    """After each test module, drop JAX's compiled programs. XLA:CPU keeps memory maps
    for every program it compiled while JAX caches it; the whole suite in one process
    compiles thousands and ran into the kernel's limit on a process's maps
    (vm.max_map_count, 65530 by default), where the next compilation crashed with a
    segmentation fault. Set up first, this fixture is torn down after the module's own."""
    yield
    jax.clear_caches()
    gc.collect()


@pytest.fixture(scope="session", autouse=True)
def session_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Training runs of the suite (in-process and subprocesses) register in a SQLite file
    of their own instead of the checkout's outputs/registry.db."""
    url = f"sqlite:///{tmp_path_factory.mktemp('registry') / 'registry.db'}"
    old = os.environ.get("TUNIXRT_REGISTRY_URL")
    os.environ["TUNIXRT_REGISTRY_URL"] = url
    yield url
    if old is None:
        os.environ.pop("TUNIXRT_REGISTRY_URL", None)
    else:
        os.environ["TUNIXRT_REGISTRY_URL"] = old


@pytest.fixture(scope="session")
def tokenizer_path() -> Path:
    return DEV_DATA / "tokenizer.json"


@pytest.fixture
def compose_cfg() -> Callable[..., DictConfig]:
    return compose_train


@pytest.fixture(scope="session")
def small_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A byte-level BPE tokenizer with tunixrt's special tokens, trained on a few lines."""
    return build_small_tokenizer(tmp_path_factory.mktemp("tok") / "tokenizer.json")


# Registry databases. PostgreSQL isolation: one fresh database per test session (dropped
# at the end) and one schema per test inside it, selected through the URL's search_path.


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    with fresh_pg_database() as name:
        yield name


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def registry_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """An empty registry database: a SQLite file, or a fresh PostgreSQL schema; a test
    that requests it runs once on each backend."""
    if backend == "sqlite":
        yield sqlite_url(tmp_path / "registry.db")
        return
    from psycopg import sql

    # Requested here, not as a parameter, so SQLite runs never touch PostgreSQL.
    database = request.getfixturevalue("pg_database")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with pg_admin(database) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    yield pg_url(database, schema)
    with pg_admin(database) as conn:
        stmt = sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema))
        conn.execute(stmt)
