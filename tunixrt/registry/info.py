"""What a run tells the registry when it starts, and helpers that gather it; plain
Python only, so the caller converts its config (e.g. OmegaConf.to_container) first."""

from __future__ import annotations

import enum
import hashlib
import json
import math
import socket
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

DEFAULT_PACKAGES = (
    "tunixrt",
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "orbax-checkpoint",
    "numpy",
    "hydra-core",
    "tokenizers",
    "sqlalchemy",
)


@dataclass
class RunInfo:
    name: str
    run_dir: str | Path  # made absolute; the same folder again means a resume
    config: Mapping[str, Any] = field(default_factory=dict)  # masked before storing
    overrides: Sequence[str] = ()
    tb_dir: str | Path | None = None
    checkpoint_dir: str | Path | None = None
    device_kind: str | None = None  # e.g. "cpu", "NVIDIA H100 80GB HBM3", "TPU v5 lite"
    device_count: int | None = None
    versions: Mapping[str, str] = field(default_factory=dict)
    git_commit: str | None = None
    git_dirty: bool | None = None
    host: str = field(default_factory=socket.gethostname)
    sweep_id: str | None = None
    # The step a resumed run restarts from: metric points and checkpoint rows after it
    # are dropped, as the run will log and save those steps again. None keeps them.
    resume_step: int | None = None
    # Where the initial weights came from (`init.from`): the source folder read, and the
    # registered run that wrote it, if any. Kept from the first start on every resume.
    init_from: str | None = None
    parent_id: str | None = None


def json_safe(value: Any) -> Any:
    """`value` as strict JSON: enums by value, paths and unknown objects as text, and
    NaN or infinity as null (PostgreSQL's JSONB rejects them)."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(v) for v in value]
    if isinstance(value, enum.Enum):
        return json_safe(value.value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


def config_hash(config: Mapping[str, Any]) -> str:
    """sha256 of the config as canonical JSON (sorted keys, no whitespace)."""
    text = json.dumps(json_safe(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def package_versions(packages: Iterable[str] = DEFAULT_PACKAGES) -> dict[str, str]:
    """Installed versions of `packages`, read from metadata without importing them."""
    out = {}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_state(path: str | Path = ".") -> tuple[str | None, bool | None]:
    """(commit, dirty) of the git checkout holding `path`; (None, None) outside one."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=path, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit, dirty
