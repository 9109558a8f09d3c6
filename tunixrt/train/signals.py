"""Graceful stops: SIGTERM, Ctrl-C or SIGUSR2 ask the loop to stop after the current
step; a second signal aborts at once.

SIGUSR2 is the warning SLURM (through submitit) sends before a time limit or a
preemption. While the loop runs, tunixrt's handler replaces submitit's; once the
checkpoint is saved, `hand_back` gives the signal to the handler that was there before
(submitit's, which requeues the job), so the requeued job resumes from that checkpoint."""

from __future__ import annotations

import logging
import signal
import threading
from collections import deque
from collections.abc import Callable
from types import FrameType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

log = logging.getLogger(__name__)


class Preempted(Exception):
    """The run stopped on a signal after saving a checkpoint; it can be resumed."""

    def __init__(self, signal_name: str, step: int, run_dir: str) -> None:
        super().__init__(f"stopped by {signal_name} after step {step}")
        self.signal_name, self.step, self.run_dir = signal_name, step, run_dir

    @property
    def exit_code(self) -> int:
        # the shell's convention for "terminated by signal N": 128 + N
        return 128 + int(getattr(signal, self.signal_name, signal.SIGTERM))


class StopRequest:
    """Context manager: installs the handlers (main thread only) and restores the old
    ones on exit. `requested` names the first signal received, or is None."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.requested is not None:
            raise KeyboardInterrupt(f"second {name}: aborting without a checkpoint")
        self.requested = name
        log.warning("%s received: finishing this step, then saving a checkpoint", name)

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class StopVote:
    """Several processes (`device.distributed`) must stop after the same step, or the
    ones still stepping wait forever on the others' collectives. A signal reaches each
    process at its own moment, so after every step each process casts its vote (the
    number of the signal it received, or 0) into a max over the mesh, and all read the
    outcome of step s after step s + LAG: the same value everywhere, and by then long
    computed, so the host never waits on the step it just dispatched."""

    LAG = 2

    def __init__(self, stop: StopRequest, mesh: Mesh) -> None:
        self._stop = stop
        self._votes: deque[jax.Array] = deque()
        every = PartitionSpec(mesh.axis_names)  # one element a device, all of them
        self._sharding = NamedSharding(mesh, every)
        self._size = mesh.devices.size
        self._local = len(self._sharding.addressable_devices)
        self._max = jax.jit(jnp.max, out_shardings=NamedSharding(mesh, PartitionSpec()))

    def after_step(self) -> str | None:
        """Cast this step's vote; the signal all processes agreed on LAG steps ago, or
        None to go on."""
        code = int(getattr(signal, self._stop.requested)) if self._stop.requested else 0
        local = np.full((self._local,), code, np.int32)
        votes = jax.make_array_from_process_local_data(self._sharding, local, (self._size,))
        self._votes.append(self._max(votes))
        if len(self._votes) <= self.LAG:
            return None
        agreed = int(jax.device_get(self._votes.popleft()))
        return signal.Signals(agreed).name if agreed else None


def agreed_stop(stop: StopRequest, mesh: Mesh) -> Callable[[], str | None]:
    """After each step: the signal to stop on, or None. One process: its own signal, at
    once; several: what `StopVote` agrees on."""
    if jax.process_count() == 1:
        return lambda: stop.requested
    return StopVote(stop, mesh).after_step


def hand_back(stop: Preempted) -> None:
    """After a stop on SIGUSR2 has been saved and recorded, deliver the signal again to
    whatever handles it now (the loop's handler is gone): submitit's requeues the job and
    exits; with no handler installed, the default action ends the process."""
    if stop.signal_name == signal.SIGUSR2.name:
        signal.raise_signal(signal.SIGUSR2)
