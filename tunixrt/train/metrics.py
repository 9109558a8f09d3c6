"""Throughput between two logged steps, and the compile time of the first step."""

from __future__ import annotations

import logging
import time
from typing import Any

import jax

log = logging.getLogger(__name__)


class Throughput:
    """Counts real (non-padding) tokens and wall time between `interval` calls."""

    def __init__(self) -> None:
        self._t0 = time.perf_counter()
        self._tokens = 0
        self._last_step = 0
        self.compile_seconds: float | None = None

    def add_tokens(self, n: int) -> None:
        self._tokens += n

    def first_step_done(self, outputs: Any) -> None:
        """Block on step 1: its time is mostly compilation, kept out of the rates."""
        jax.block_until_ready(outputs)
        now = time.perf_counter()
        self.compile_seconds = now - self._t0
        log.info("first step (compile + run) took %.1fs", self.compile_seconds)
        self._t0, self._tokens, self._last_step = now, 0, 1

    def exclude(self, seconds: float) -> None:
        """Leave `seconds` (evaluation) out of the current interval's time."""
        self._t0 += seconds

    def interval(self, step: int) -> dict[str, float]:
        now = time.perf_counter()
        seconds, steps = now - self._t0, step - self._last_step
        if steps <= 0 or seconds <= 0:
            return {}
        rates = {"perf/tokens_per_sec": self._tokens / seconds, "perf/step_time": seconds / steps}
        self._t0, self._tokens, self._last_step = now, 0, step
        return rates
