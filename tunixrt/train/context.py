"""What a run needs to know about how it was launched: its folder, the command-line
overrides and the sweep it belongs to. The Hydra entry gathers these from Hydra; from
plain Python a folder is enough."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from tunixrt.paths import OUTPUTS


@dataclass(frozen=True)
class RunContext:
    run_dir: Path  # checkpoints/, tb/ and the registry's record of the run point here
    overrides: tuple[str, ...] = ()  # as typed; shown in HParams and stored (masked)
    sweep_id: str | None = None  # the registry id of the sweep this run is a job of

    @classmethod
    def of(cls, where: RunContext | str | Path | None, run_name: str | None) -> RunContext:
        """A context from a folder; None: outputs/RUN_NAME, or outputs/DATE/TIME as
        `tunixrt-train` names a run without `run.name`."""
        if isinstance(where, RunContext):
            return where
        if where is None:
            stamp = datetime.datetime.now().strftime("%Y-%m-%d/%H-%M-%S")
            where = Path(OUTPUTS) / (run_name or stamp)
        return cls(Path(where))
