"""Graceful stops: SIGTERM or Ctrl-C ask the loop to stop after the current step; a
second Ctrl-C (or SIGTERM) aborts at once."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

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

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

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
