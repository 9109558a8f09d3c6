"""Resume rules: which config changes a resumed run accepts, and the policy of
`run.resume` (auto, never, must).

A run is identified by everything in its config except the keys below: a resumed run
may train longer, log, evaluate and save on another cadence, or run on another machine
or mesh (a checkpoint restores onto any device count), but it must not change the
model, data, optimizer or batch shape it was saved with.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from tunixrt.config import ConfigError, Resume, TrainConfig
from tunixrt.dotted import flatten

# Dotted prefixes of keys that may change between a run and its resume.
MUTABLE = (
    "trainer.max_steps",
    "trainer.log_every",
    "trainer.eval_every",
    "trainer.eval_batches",
    "trainer.progress",
    "checkpoint.",
    "run.",
    "registry.",
    "dataset.cache_dir",
    "dataset.workers",
    "device.platform",
    "device.preallocate",
    "device.mem_fraction",
    "device.compile_cache_dir",
    "device.mesh.",
    "device.distributed.",  # a run may move between hosts; process_id differs per process
)


def identity(config: Mapping[str, Any]) -> dict[str, Any]:
    """The flattened keys that define a run (everything but `MUTABLE`)."""
    return {
        k: v
        for k, v in flatten(config).items()
        if not any(k == m or k.startswith(m) for m in MUTABLE)
    }


def identity_hash(config: Mapping[str, Any]) -> str:
    """sha256 of `identity(config)`: equal for a run and any resume it accepts. (The
    registry's `config_hash` hashes the whole config.)"""
    blob = json.dumps(identity(config), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def with_defaults(saved: Mapping[str, Any]) -> dict[str, Any]:
    """A checkpoint's config with the keys it lacks (it was saved by a tunixrt that did
    not have them yet) at their defaults, so they do not count as changed. A config the
    schema cannot take is returned as it is, for `check_compatible` to name its keys."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(TrainConfig), dict(saved))
        out = OmegaConf.to_container(merged, resolve=True, enum_to_str=True)
    except OmegaConfBaseException:
        return dict(saved)
    return {str(k): v for k, v in out.items()} if isinstance(out, dict) else dict(saved)


def check_compatible(saved: Mapping[str, Any], now: Mapping[str, Any], where: str) -> None:
    """Raise naming every identity key whose value differs, with both values."""
    old, new = identity(saved), identity(now)
    diffs = [
        f"  {key}: checkpoint has {old.get(key, '<absent>')!r}, this run has "
        f"{new.get(key, '<absent>')!r}"
        for key in sorted(old.keys() | new.keys())
        if old.get(key, "<absent>") != new.get(key, "<absent>")
    ]
    if diffs:
        raise ConfigError(
            f"cannot resume {where}: the config differs from the checkpoint's in\n"
            + "\n".join(diffs)
            + "\nrevert these keys, or start a new run (another run.name or run.resume=never "
            "in a new folder)"
        )


def check_policy(policy: Resume, newest: int | None, where: str) -> bool:
    """Whether to resume, given the newest complete checkpoint step (or None)."""
    if policy is Resume.never and newest is not None:
        raise ConfigError(
            f"run.resume=never but {where} already holds checkpoints (newest: step {newest}); "
            "choose another run.name or folder, or use run.resume=auto to continue it"
        )
    if policy is Resume.must and newest is None:
        raise ConfigError(f"run.resume=must but {where} holds no complete checkpoint")
    return newest is not None and policy is not Resume.never
