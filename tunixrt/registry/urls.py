"""Where the registry lives, and how its URL is shown: never with a password."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

ENV_URL = "TUNIXRT_REGISTRY_URL"
AUTO = "auto"  # a config value meaning: the env variable, else SQLite in outputs/
FILENAME = "registry.db"
MASK = "***"

# scheme://user:SECRET@host — greedy up to the token's last "@", since a raw "@" in a
# password is more likely than one in a host name.
_USERINFO = re.compile(r"(\b[A-Za-z][\w+.-]*://[^\s:/@]*:)\S*@")
# libpq also takes the password as a query parameter: ?password=SECRET
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&\s]*", re.IGNORECASE)


def default_url(outputs_dir: str | Path = "outputs") -> str:
    """The SQLite file in the outputs folder, as an absolute URL so that a change of
    working directory (Hydra's chdir, a SLURM job) still finds the same file."""
    path = Path(outputs_dir).expanduser().resolve() / FILENAME
    return URL.create("sqlite", database=str(path)).render_as_string(hide_password=False)


def resolve_url(cfg_url: str | None, outputs_dir: str | Path = "outputs") -> str | None:
    """The URL a run registers in. `None` (registry.url=null) runs unregistered;
    "auto" (or an empty string) means $TUNIXRT_REGISTRY_URL if set, else the
    SQLite file under `outputs_dir`; anything else is an explicit SQLAlchemy URL."""
    if cfg_url is None:
        return None
    if cfg_url.strip() in ("", AUTO):
        return os.environ.get(ENV_URL) or default_url(outputs_dir)
    return cfg_url


def cli_url(flag: str | None) -> str:
    """The CLI's URL: --registry, else $TUNIXRT_REGISTRY_URL, else ./outputs/registry.db."""
    return flag or os.environ.get(ENV_URL) or default_url("outputs")


def mask_text(text: str) -> str:
    """`text` with every password inside a URL replaced by ***."""
    text = _USERINFO.sub(lambda m: m.group(1) + MASK + "@", text)
    return _QUERY_PASSWORD.sub(lambda m: m.group(1) + MASK, text)


def mask_url(url: str | URL) -> str:
    """A URL safe to print: SQLAlchemy's rendering with the password hidden, and a
    password given as a query parameter (?password=...) hidden too."""
    try:
        rendered = make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        rendered = str(url)
    return mask_text(rendered)


def mask_config(config: Any) -> Any:
    """A copy of a config (dicts, lists, strings) safe to store: registry.url rendered
    without its password, and any other string holding a URL with a password masked
    (for instance the override "registry.url=postgresql://u:pw@host/db")."""
    if isinstance(config, Mapping):
        out = {}
        for key, value in config.items():
            if key == "registry" and isinstance(value, Mapping):
                value = {
                    k: mask_url(v) if k == "url" and isinstance(v, str) else v
                    for k, v in value.items()
                }
            out[key] = mask_config(value)
        return out
    if isinstance(config, list | tuple):
        return [mask_config(v) for v in config]
    if isinstance(config, str):
        return mask_text(config)
    return config


def sqlite_path(url: str | URL) -> Path | None:
    """The database file of a SQLite URL; None for other backends and in-memory ones."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)
