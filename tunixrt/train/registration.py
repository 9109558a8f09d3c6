"""A run's row in the SQL registry, from start to end: created (or, on resume,
reopened) before anything compiles, heartbeated while the run lives, and closed as
completed, preempted (a signal) or failed (with the error) in one place."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from tunixrt.config import TrainConfig
from tunixrt.devices import Devices
from tunixrt.paths import OUTPUTS
from tunixrt.registry import Registry, RunInfo, RunRecorder, git_state, package_versions
from tunixrt.registry.urls import resolve_url
from tunixrt.train.context import RunContext
from tunixrt.train.signals import Preempted

if TYPE_CHECKING:
    from tunixrt.train.init_from import Origin

log = logging.getLogger(__name__)


class Recording:
    """Context manager around a run's registry row. On exit the row is closed with the
    status the exit means, at the step `step()` reports (until the loop sets it: the
    step the run resumes from, or 0), and the connection pool is disposed. With
    registry.url=null (`recorder` None) it records nothing."""

    def __init__(
        self,
        registry: Registry | None,
        recorder: RunRecorder | None,
        resume_step: int | None = None,
    ) -> None:
        self.registry, self.recorder = registry, recorder
        self.resume_step = resume_step  # as the row has it
        self.step: Callable[[], int] = lambda: self.resume_step or 0

    def resumed_at(self, step: int) -> None:
        """Record that the run resumed from `step`: older than the checkpoint it was
        registered with when that one turned out to be damaged."""
        if step == self.resume_step:
            return
        self.resume_step = step
        if self.registry is not None and self.recorder is not None:
            self.registry.resume_run_at(self.recorder.id, step)

    def __enter__(self) -> Recording:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        err: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self.recorder is None or self.registry is None:
            return
        if err is None:
            status, step, error = "completed", self.step(), None
        elif isinstance(err, Preempted):
            status, step, error = "preempted", err.step, None
        else:
            status, step, error = "failed", self.step(), f"{type(err).__name__}: {err}"
        if not self.recorder.finish(status, error=error, last_step=step):
            log.warning("the registry's record of this run (%s) is incomplete", status)
        self.registry.close()


def start_recording(
    cfg: TrainConfig,
    config: dict[str, Any],
    context: RunContext,
    devices: Devices,
    resume_step: int | None,
    origin: Origin | None = None,
) -> Recording:
    """Open the registry and create (or reopen) the run's row, resuming from
    `resume_step` (the newest checkpoint's; `Recording.resumed_at` corrects it when an
    older one is restored). An unreachable registry fails the run here, before
    anything compiles."""
    url = resolve_url(cfg.registry.url, OUTPUTS)
    if url is None:
        log.info("registry.url is null: this run is not registered")
        return Recording(None, None, resume_step)
    registry = Registry.open(url)
    commit, dirty = git_state(Path(__file__).resolve().parent)
    folder = context.run_dir.resolve()
    info = RunInfo(
        name=cfg.run.name or context.run_dir.name,
        run_dir=folder,
        config=config,
        overrides=list(context.overrides),
        tb_dir=folder / "tb",
        checkpoint_dir=folder / "checkpoints",
        device_kind=devices.devices[0].device_kind,
        device_count=len(devices.devices),
        versions=package_versions(),
        git_commit=commit,
        git_dirty=dirty,
        resume_step=resume_step,
        sweep_id=context.sweep_id,
        init_from=None if origin is None else origin.folder,
        parent_id=None if origin is None else origin.parent_id,
    )
    try:
        recorder = registry.start_run(info)
    except BaseException:
        registry.close()
        raise
    recorder.start_keepalive()
    log.info("registry: run %s in %s", recorder.id, registry.url)
    return Recording(registry, recorder, resume_step)
