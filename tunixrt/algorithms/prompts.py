"""The prompts GRPO samples for, each with the answer its completions are scored
against, and the order a run draws them in.

The order is a shuffle per epoch drawn from (seed, epoch), read `prompts_per_step` at a
time; its position (epoch, index) is all the state, saved in every checkpoint, so a
resumed run draws the prompts it would have drawn without the stop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tunixrt.config import ConfigError, TrainConfig
from tunixrt.data.pipeline import generated_traces, only_families
from tunixrt.data.schema import Trace, read_examples
from tunixrt.data.sources import resolve_files
from tunixrt.evaluation.scoring import EvalItem, read_eval_set, trace_item


def prompt_items(cfg: TrainConfig) -> tuple[list[EvalItem], str]:
    """algorithm.prompts' items (eval items or traces), else the dataset's training
    traces as items; only dataset.families' where it names some. Returns the items and
    where they came from, for messages."""
    families = cfg.dataset.families
    path = cfg.algorithm.prompts
    if path is not None:
        items = read_eval_set(path)
        source = path
        if families is not None:
            items = [i for i in items if i.category in families]
    elif cfg.dataset.generate > 0:
        items = [_item(e) for e in generated_traces(cfg.dataset, cfg.seed)]
        source = "the trace generator (dataset.generate)"
    else:
        files = resolve_files(cfg.dataset.path)
        items = [
            trace_item(e)
            for f in files
            for e in only_families(read_examples(f), families, str(f))
            if isinstance(e, Trace)
        ]
        source = ", ".join(map(str, files))
    if not items:
        raise ConfigError(
            f"algorithm.prompts: {source} holds no prompt with an expected answer"
            + (f" in dataset.families={families}" if families is not None else "")
        )
    return items, source


def _item(example: Any) -> EvalItem:
    assert isinstance(example, Trace)  # the generator writes traces only
    return trace_item(example)


@dataclass
class PromptOrder:
    """Which items a step samples for: a shuffle of `count` indices per epoch."""

    count: int
    seed: int
    epoch: int = 0
    index: int = 0  # the next position in this epoch's shuffle

    def take(self, n: int) -> list[int]:
        """The next n item indices, into the next epoch where this one ends."""
        out: list[int] = []
        while len(out) < n:
            order = self._shuffle(self.epoch)
            got = order[self.index : self.index + n - len(out)]
            out.extend(int(i) for i in got)
            self.index += len(got)
            if self.index >= self.count:
                self.epoch, self.index = self.epoch + 1, 0
        return out

    def _shuffle(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.count)

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "index": self.index, "count": self.count}

    def restore(self, state: dict[str, Any]) -> None:
        if int(state["count"]) != self.count:
            raise ConfigError(
                f"the checkpoint drew from {state['count']} prompts, but algorithm.prompts "
                f"now holds {self.count}: resume with the same prompts, or start a new run"
            )
        self.epoch, self.index = int(state["epoch"]), int(state["index"])
