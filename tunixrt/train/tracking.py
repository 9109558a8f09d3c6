"""Register a training run in the SQL registry, and keep secrets out of what a run
writes: the registry URL's password never reaches a log, a file or TensorBoard."""

from __future__ import annotations

import json
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
from tunixrt.train.resume import config_hash, flatten

log = logging.getLogger(__name__)

OUTPUTS = "outputs"  # the folder whose registry.db is the default registry
SWEEP_FILE = "sweep.json"  # in a sweep's folder: its registry id, for the jobs to link to

# Config values every run shows in TensorBoard's HParams table, beside the swept keys.
KEY_HPARAMS = (
    "seed",
    "dataset.name",
    "model.name",
    "model.dim",
    "model.n_layers",
    "optimizer.name",
    "optimizer.lr",
    "optimizer.schedule",
    "optimizer.warmup_steps",
    "optimizer.weight_decay",
    "trainer.max_steps",
    "trainer.batch_size",
    "trainer.seq_len",
    "trainer.grad_accum",
)


def hparams(config: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Dotted key -> value: the keys this job overrides, then `KEY_HPARAMS`."""
    flat = dict(flatten(config))
    swept = [o.split("=", 1)[0].lstrip("+~") for o in overrides if "=" in o]
    keys = [k for k in swept if k in flat] + [k for k in KEY_HPARAMS if k not in swept]
    return {k: flat[k] for k in keys if k in flat}


def sweep_id() -> str | None:
    """The registry id of the sweep this Hydra job belongs to, if any."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    path = Path(HydraConfig.get().sweep.dir) / SWEEP_FILE
    return str(json.loads(path.read_text())["id"]) if path.is_file() else None


def quiet_libraries() -> None:
    # orbax logs every file it writes at INFO through absl; jax logs each backend it
    # probes and does not find (TPU on every GPU or CPU machine); alembic logs its
    # plugins as they load
    for name in ("absl", "jax._src.xla_bridge", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


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
        sweep_id=sweep_id(),
    )
    recorder = registry.start_run(info)
    recorder.start_keepalive()
    log.info("registry: run %s in %s", recorder.id, registry.url)
    return recorder
