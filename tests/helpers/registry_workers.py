"""Entry points of the processes that registry tests spawn; importing this module must
stay cheap (no pytest), since each of up to 8 processes does it."""

from __future__ import annotations

import logging
import os
import signal
from typing import Any


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def open_and_write(url: str, run_dir: str, index: int, steps: int, barrier: Any, out: Any) -> None:
    """Open the registry at the same moment as the other workers (the first use of an
    empty database), then write one run: `steps` logs of 4 metrics, each its own
    transaction, a checkpoint, and the final status. Reports warnings and errors."""
    from tunixrt.registry import Registry, RunInfo

    collect = _Collect()
    logging.getLogger("tunixrt.registry").addHandler(collect)
    error = None
    try:
        barrier.wait(timeout=60)
        with Registry.open(url) as reg:
            rec = reg.start_run(
                RunInfo(name=f"worker-{index}", run_dir=run_dir, config={"index": index}),
                write_every_s=0.0,
            )
            for step in range(steps):
                rec.log_metrics(
                    step, {"loss": 1.0 / (step + 1), "lr": 1e-3, "grad_norm": 0.5, "tps": 1e4}
                )
            rec.checkpoint(steps - 1, f"{run_dir}/checkpoints/{steps - 1}", {"loss": 0.1})
            if not rec.finish("completed", last_step=steps - 1):
                error = "finish did not reach the registry"
    except Exception as err:  # reported to the test, which fails with it
        error = f"{type(err).__name__}: {err}"
    out.put({"index": index, "error": error, "warnings": collect.messages})


def start_and_die(url: str, run_dir: str) -> None:
    """Register a run, log a little, then die the way `kill -9` kills."""
    from tunixrt.registry import Registry, RunInfo

    reg = Registry.open(url)
    rec = reg.start_run(RunInfo(name="killed", run_dir=run_dir), write_every_s=0.0)
    rec.log_metrics(3, {"loss": 2.5})
    rec.flush()  # the writer thread writes it; a kill must not race that write
    os.kill(os.getpid(), signal.SIGKILL)
