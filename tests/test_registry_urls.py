"""Registry URLs: defaults, the environment variable, and masking passwords."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tunixrt.registry import (
    config_hash,
    default_url,
    json_safe,
    mask_config,
    mask_text,
    mask_url,
    resolve_url,
)


def test_default_and_resolved_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TUNIXRT_REGISTRY_URL", raising=False)
    assert default_url(tmp_path) == f"sqlite:///{tmp_path}/registry.db"
    assert resolve_url(None, tmp_path) is None  # registry.url=null: unregistered
    assert resolve_url("auto", tmp_path) == default_url(tmp_path)
    assert resolve_url("sqlite:///x.db", tmp_path) == "sqlite:///x.db"
    monkeypatch.setenv("TUNIXRT_REGISTRY_URL", "postgresql+psycopg://h/db")
    assert resolve_url("auto", tmp_path) == "postgresql+psycopg://h/db"
    assert resolve_url("sqlite:///x.db", tmp_path) == "sqlite:///x.db"  # explicit wins


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql+psycopg://bob:pw@db.lan:5432/reg",
            "postgresql+psycopg://bob:***@db.lan:5432/reg",
        ),
        ("postgresql://bob:p%40ss%2Fw@h/reg", "postgresql://bob:***@h/reg"),
        (
            "postgresql://bob@h/reg?password=pw&sslmode=require",
            "postgresql://bob@h/reg?password=***&sslmode=require",
        ),
        ("sqlite:////tmp/registry.db", "sqlite:////tmp/registry.db"),
    ],
)
def test_mask_url(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def test_mask_text_and_config() -> None:
    text = "failed: postgresql://bob:p@ss@h/db and mysql://u:x@h2/d?password=y"
    assert (
        mask_text(text) == "failed: postgresql://bob:***@h/db and mysql://u:***@h2/d?password=***"
    )
    config = {
        "registry": {"url": "postgresql+psycopg://bob:pw@h/db"},
        "dataset": {"path": "/data/x.jsonl", "mirror": "https://u:tok@example.org/x"},
        "overrides": ["registry.url=postgresql://bob:pw@h/db", "optimizer.lr=1e-3"],
    }
    masked = mask_config(config)
    assert masked == {
        "registry": {"url": "postgresql+psycopg://bob:***@h/db"},
        "dataset": {"path": "/data/x.jsonl", "mirror": "https://u:***@example.org/x"},
        "overrides": ["registry.url=postgresql://bob:***@h/db", "optimizer.lr=1e-3"],
    }
    assert config["registry"]["url"].endswith("bob:pw@h/db")  # the input is untouched


def test_json_safe_and_hash() -> None:
    assert json_safe({"a": float("nan"), "b": (1, Path("/x")), 3: float("inf")}) == {
        "a": None,
        "b": [1, "/x"],
        "3": None,
    }
    assert config_hash({"a": 1, "b": 2}) == config_hash({"b": 2, "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


def test_registry_imports_no_jax() -> None:
    code = "import sys, tunixrt.registry, tunixrt.cli.main; sys.exit('jax' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
