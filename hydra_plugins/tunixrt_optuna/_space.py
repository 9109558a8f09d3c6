"""The search space: one readable string per key, parsed into optuna distributions.

    optimizer.lr: "log_float(1e-4, 3e-3)"      # log-uniform float in [low, high]
    optimizer.weight_decay: "float(0.0, 0.2)"  # uniform; float(0, 0.2, step=0.05) for a grid
    optimizer.warmup_steps: "int(0, 50)"       # integer in [low, high]; int(0, 50, step=10)
    model.dim: "log_int(64, 512)"              # integer, log-uniform
    optimizer: "choice(adamw, lion)"           # categorical over Hydra override values

A choice's values are typed like Hydra's (64 an int, 1e-3 a float, true a bool, null,
'quoted text' a string) for optuna's records, and each is written back into the job's
override exactly as the user typed it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hydra.errors import CompactHydraException
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

FORMS = (
    "float(low, high), log_float(low, high), int(low, high), log_int(low, high), choice(a, b, ...)"
)
_CALL = re.compile(r"^\s*(\w+)\s*\((.*)\)\s*$", re.DOTALL)
_NUMERIC = ("float", "log_float", "int", "log_int")


class SearchSpaceError(CompactHydraException, ValueError):
    """A search-space entry that cannot be parsed; the message names its key. Hydra
    prints a CompactHydraException as its message alone, without a traceback."""


@dataclass(frozen=True)
class Param:
    """One searched key: optuna's distribution, and how a sampled value becomes a Hydra
    override. `lhs` is the override's left side when it differs from the name (+key)."""

    name: str
    distribution: BaseDistribution
    texts: tuple[str, ...] = ()  # choice: each value as written, in the choices' order
    lhs: str = ""

    def override(self, value: Any) -> str:
        lhs = self.lhs or self.name
        if self.texts:
            return f"{lhs}={self.texts[int(self.distribution.to_internal_repr(value))]}"
        if isinstance(self.distribution, IntDistribution):
            return f"{lhs}={int(value)}"
        return f"{lhs}={float(value)!r}"


def parse_space(params: Mapping[str, Any]) -> dict[str, Param]:
    """`hydra.sweeper.params` -> {key: Param}. Nested mappings flatten to dotted keys, so
    `+hydra.sweeper.params.optimizer.lr=...` on the command line replaces the entry
    `optimizer.lr` of a preset (the later entry wins)."""
    return {key: parse_param(key, spec) for key, spec in _flatten(params).items()}


def parse_param(key: str, spec: Any) -> Param:
    try:
        if not isinstance(spec, str):
            raise ValueError(f"expected a string, got {type(spec).__name__}")
        match = _CALL.match(spec)
        if match is None or match.group(1) not in (*_NUMERIC, "choice"):
            raise ValueError("unknown form")
        kind, body = match.groups()
        args = _split(body)
        if kind == "choice":
            return choice_param(key, args)
        return Param(key, _numeric(kind, args))
    except (ValueError, TypeError) as err:
        raise SearchSpaceError(
            f"hydra.sweeper.params: {key}={spec!r}: {err}; expected one of {FORMS}"
        ) from None


def choice_param(name: str, texts: list[str], lhs: str = "") -> Param:
    """A categorical over override values (also used for `key=a,b` on the command line)."""
    if not texts:
        raise ValueError("a choice needs at least one value")
    if "" in texts:
        raise ValueError("empty value in the choice")
    if len(set(texts)) != len(texts):
        raise ValueError("repeated value in the choice")
    values = [_literal(t) for t in texts]
    return Param(name, CategoricalDistribution(values), tuple(texts), lhs)


def _numeric(kind: str, args: list[str]) -> BaseDistribution:
    bounds = [a for a in args if "=" not in a]
    named = dict(_named(a) for a in args if "=" in a)
    if len(bounds) != 2:
        raise ValueError(f"{kind} takes two bounds, low and high")
    if set(named) - {"step"}:
        raise ValueError(f"unknown argument {sorted(set(named) - {'step'})[0]!r}; only step")
    log = kind.startswith("log_")
    step = named.get("step")
    if kind.endswith("int"):
        ilow, ihigh = (_int(b) for b in bounds)
        return IntDistribution(ilow, ihigh, log=log, step=1 if step is None else _int(step))
    low, high = (_float(b) for b in bounds)
    return FloatDistribution(low, high, log=log, step=None if step is None else _float(step))


def _split(body: str) -> list[str]:
    """Top-level comma-separated items; commas inside quotes or brackets stay."""
    items, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(body):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(body[start:i].strip())
            start = i + 1
    if quote or depth:
        raise ValueError("unbalanced quotes or brackets")
    items.append(body[start:].strip())
    return [] if items == [""] else items


def _named(arg: str) -> tuple[str, str]:
    name, value = arg.split("=", 1)
    return name.strip(), value.strip()


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an integer") from None


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite number")
    return value


def _literal(text: str) -> Any:
    """A choice value typed as Hydra would read it; anything else stays a string."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "null":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out
