"""What `tunixrt eval` and `tunixrt generate` run: a registered run id, a run folder (its
newest checkpoint), a checkpoint step folder (RUN/checkpoints/STEP) or a Hugging Face
folder (config.json and safetensors).

Resolving a target reads only the checkpoint's metadata, so bad input (a missing
folder, an unknown step, a bad override) is reported before any model is built.
"""

from __future__ import annotations

import logging
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tunixrt.config import TrainConfig
from tunixrt.errors import InputError

if TYPE_CHECKING:  # jax loads only when a command needs a model
    from tunixrt.checkpoint import Checkpointer
    from tunixrt.evaluation.generate import Tokenizer
    from tunixrt.models import Decoder


@dataclass(frozen=True)
class Target:
    cfg: TrainConfig | None  # the run's config; None for a Hugging Face folder
    step: int | None  # the checkpoint step; None for a Hugging Face folder
    checkpoints: Path | None  # RUN/checkpoints
    hf_dir: Path | None  # the Hugging Face folder

    @property
    def run_dir(self) -> Path | None:
        return None if self.checkpoints is None else self.checkpoints.parent

    @property
    def folder(self) -> Path:
        """What was evaluated: the checkpoint step folder, or the Hugging Face folder."""
        if self.hf_dir is not None:
            return self.hf_dir
        assert self.checkpoints is not None
        return self.checkpoints / str(self.step)

    def describe(self) -> str:
        if self.hf_dir is not None:
            return str(self.hf_dir)
        return f"{self.run_dir} step {self.step}"


class _ReadOnlyNotice(logging.Filter):
    """Drops orbax's warnings that a folder opened read-only is read-only: these
    commands only read checkpoints, on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return "read_only=True" not in message and "directory is read only" not in message


_NOTICE = _ReadOnlyNotice()


def open_checkpoints(folder: Path) -> Checkpointer:
    from tunixrt.checkpoint import Checkpointer

    logging.getLogger("absl").addFilter(_NOTICE)  # a set: adding it again is a no-op
    return Checkpointer(folder, every_steps=0, keep=1 << 30, read_only=True)


def is_hf_folder(path: Path) -> bool:
    return (path / "config.json").is_file() and not (path / "checkpoints").is_dir()


def resolve(given: str, *, step: int | None, registry_url: str | None) -> Target:
    """The target's kind, folder, step and config, without loading weights."""
    from tunixrt.export import choose_step, locate

    path = Path(given)
    if path.is_dir() and is_hf_folder(path):
        if step is not None:
            raise InputError(f"{given}: --step goes with a run, not a Hugging Face folder")
        return Target(None, None, None, path.resolve())
    if not path.exists() and ("/" in given or given.startswith(".")):
        raise InputError(f"{given}: no such folder")
    ckdir, found = locate(given, registry_url)
    if not ckdir.is_dir():
        raise InputError(f"{ckdir}: no checkpoints folder; the run saved no checkpoint yet")
    ck = open_checkpoints(ckdir)
    with closing(ck):
        chosen = choose_step(ck, step if step is not None else found)
        cfg = _stored_config(ck, chosen)
    # as located, not resolved: the registry knows a run by its folder as it was given
    return Target(cfg, chosen, ckdir, None)


def _stored_config(ck: Checkpointer, step: int) -> TrainConfig:
    from tunixrt.config import validate

    return validate(ck.read_meta(step)["config"])


def load(target: Target) -> tuple[Tokenizer, Decoder]:
    """The tokenizer and the float32 model of a resolved target."""
    import jax.numpy as jnp

    from tunixrt.config import DeviceConfig, ModelConfig, Platform
    from tunixrt.data.chat import ChatTokenizer
    from tunixrt.devices import setup_devices
    from tunixrt.export import load_model
    from tunixrt.models.factory import build_model

    if target.hf_dir is not None:
        chat = ChatTokenizer.from_folder(target.hf_dir)
        model = build_model(
            ModelConfig(name="hf", path=str(target.hf_dir)),
            vocab_size=chat.vocab_size,
            dtype=jnp.dtype("float32"),
            seed=0,
            devices=setup_devices(DeviceConfig(platform=Platform.auto)),
        )
        return chat, model
    assert target.checkpoints is not None and target.step is not None
    ck = open_checkpoints(target.checkpoints)
    with closing(ck):
        _, tokenizer, model = load_model(ck, target.step)
    return tokenizer, model
