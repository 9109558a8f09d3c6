"""What a Hydra job knows that `train()` needs, gathered in the CLI layer: the run
folder, the overrides as typed and the sweep the job belongs to. Also keeps a registry
password out of the files Hydra writes before the job starts."""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from tunixrt.files import mask_secrets_in_file
from tunixrt.registry import mask_text
from tunixrt.sweeps import read_sweep_id
from tunixrt.train.context import RunContext


def run_context() -> RunContext:
    """The context of the running Hydra job (single run or one job of a sweep)."""
    hc = HydraConfig.get()
    sweep = read_sweep_id(Path(hc.sweep.dir)) if hc.mode == RunMode.MULTIRUN else None
    return RunContext(
        run_dir=Path(hc.runtime.output_dir),
        overrides=tuple(hc.overrides.task),
        sweep_id=sweep,
    )


def mask_hydra_files(run_dir: Path) -> None:
    """Hydra saves the composed config and the overrides before the job starts; mask
    any URL password in them (e.g. registry.url=postgresql://user:pw@host/db)."""
    for path in (run_dir / ".hydra").glob("*.yaml"):
        mask_secrets_in_file(path)


def resume_hint(context: RunContext) -> str:
    """The command that continues a stopped run: the same overrides, and the run folder
    unless run.name names it."""
    task = [o for o in context.overrides if not o.startswith("hydra.run.dir=")]
    named = any(o.startswith("run.name=") for o in task)
    where = [] if named else [f"hydra.run.dir={context.run_dir}"]
    return mask_text(" ".join(["tunixrt-train", *task, *where]))
