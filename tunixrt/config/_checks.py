"""The error every config check raises, and the check itself."""

from __future__ import annotations

from typing import Any

from tunixrt.errors import InputError


class ConfigError(InputError, ValueError):
    """A config value is outside its allowed range; the message names the key."""


def _require(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"invalid config value {key}={value!r}: expected {allowed}")
