"""What the user watches: a tqdm bar with ETA on a terminal, plain log lines elsewhere."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from tunixrt.config import Progress

log = logging.getLogger(__name__)


def format_scalars(scalars: Mapping[str, float]) -> str:
    return " ".join(f"{k.split('/')[-1]}={v:.4g}" for k, v in scalars.items())


def format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class ProgressDisplay:
    """Steps `first_step+1 .. total`; `update` is called after every step."""

    def __init__(self, mode: Progress, total: int, first_step: int = 0) -> None:
        use_bar = mode is Progress.bar or (mode is Progress.auto and sys.stderr.isatty())
        self.total, self.first_step = total, first_step
        self._start = time.perf_counter()
        self._bar = (
            tqdm(total=total, initial=first_step, unit="step", dynamic_ncols=True, file=sys.stderr)
            if use_bar
            else None
        )

    def eta(self, step: int) -> float:
        done = step - self.first_step
        elapsed = time.perf_counter() - self._start
        return elapsed / done * (self.total - step) if done > 0 else float("nan")

    def update(self, step: int, scalars: Mapping[str, float] | None = None) -> None:
        if self._bar is not None:
            self._bar.update(step - self._bar.n)
            if scalars:
                self._bar.set_postfix_str(format_scalars(scalars), refresh=False)
        elif scalars:
            log.info(
                "step %d/%d %s eta=%s",
                step,
                self.total,
                format_scalars(scalars),
                format_seconds(self.eta(step)),
            )

    def __enter__(self) -> ProgressDisplay:
        # Console log lines go through tqdm.write while the bar is up, so they don't tear it.
        if self._bar is not None:
            self._redirect = logging_redirect_tqdm()
            self._redirect.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()
            self._redirect.__exit__(None, None, None)
