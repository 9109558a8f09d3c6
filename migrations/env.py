"""Alembic environment. The database comes from, in order: the connection passed by
`tunixrt db` (config.attributes["connection"]), `alembic -x url=...`,
$TUNIXRT_REGISTRY_URL, and finally the default SQLite file outputs/registry.db."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context

from tunixrt.registry.engine import make_engine
from tunixrt.registry.models import Base
from tunixrt.registry.urls import cli_url

config = context.config
target_metadata = Base.metadata

if config.config_file_name is not None and config.attributes.get("connection") is None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _url() -> str:
    return cli_url(context.get_x_argument(as_dictionary=True).get("url"))


def _configure(**kwargs: object) -> None:
    context.configure(
        target_metadata=target_metadata,
        compare_type=True,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=True,
        **kwargs,
    )


def run_offline() -> None:
    _configure(url=_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(_url(), statement_timeout_s=None)  # migrations may be long
    try:
        with engine.connect() as conn:
            _configure(connection=conn)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
