"""One interface for metrics: the loop writes scalars to a `MetricWriter` and never
knows whether they go to TensorBoard, a log, or several places at once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol


class MetricWriter(Protocol):
    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None: ...

    def write_text(self, step: int, tag: str, text: str) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class MultiWriter:
    """Fan every call out to several writers."""

    def __init__(self, writers: Sequence[MetricWriter]) -> None:
        self.writers = list(writers)

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        for w in self.writers:
            w.write_scalars(step, scalars)

    def write_text(self, step: int, tag: str, text: str) -> None:
        for w in self.writers:
            w.write_text(step, tag, text)

    def flush(self) -> None:
        for w in self.writers:
            w.flush()

    def close(self) -> None:
        for w in self.writers:
            w.close()
