"""Register a training run in the SQL registry, and keep secrets out of what a run
writes: the registry URL's password never reaches a log, a file or TensorBoard."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tunixrt.config import TrainConfig
from tunixrt.devices import Devices
from tunixrt.registry import (
    Registry,
    RunInfo,
    RunRecorder,
    git_state,
    mask_text,
    package_versions,
    resolve_url,
)
from tunixrt.train.resume import config_hash

log = logging.getLogger(__name__)

OUTPUTS = "outputs"  # the folder whose registry.db is the default registry


def hydra_overrides() -> list[str]:
    """The command-line overrides of this Hydra job, or [] outside Hydra."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def mask_hydra_files(run_dir: Path) -> None:
    """Hydra saves the composed config and the overrides before the job starts; mask
    any URL password in them (e.g. registry.url=postgresql://user:pw@host/db)."""
    for path in (run_dir / ".hydra").glob("*.yaml"):
        text = path.read_text(encoding="utf-8")
        masked = mask_text(text)
        if masked != text:
            path.write_text(masked, encoding="utf-8")


def start_recording(
    cfg: TrainConfig,
    config: dict[str, Any],
    run_dir: Path,
    devices: Devices,
    resume_step: int | None,
) -> RunRecorder | None:
    """Open the registry and create (or, on resume, reopen) the run's row. An
    unreachable registry fails the run here, before anything compiles; with
    registry.url=null the run is not registered."""
    url = resolve_url(cfg.registry.url, OUTPUTS)
    if url is None:
        log.info("registry.url is null: this run is not registered")
        return None
    registry = Registry.open(url)
    commit, dirty = git_state(Path(__file__).resolve().parent)
    info = RunInfo(
        name=cfg.run.name or run_dir.name,
        run_dir=run_dir.resolve(),
        config=config,
        overrides=hydra_overrides(),
        config_hash=config_hash(config),
        tb_dir=(run_dir / "tb").resolve(),
        checkpoint_dir=(run_dir / "checkpoints").resolve(),
        device_kind=devices.devices[0].device_kind,
        device_count=len(devices.devices),
        versions=package_versions(),
        git_commit=commit,
        git_dirty=dirty,
        resume_step=resume_step,
    )
    recorder = registry.start_run(info)
    recorder.start_keepalive()
    log.info("registry: run %s in %s", recorder.id, registry.url)
    return recorder
