"""Hydra's side of the config: the typed schema in Hydra's ConfigStore, the resolvers
that conf/*.yaml use, and composing `conf/train.yaml` with overrides outside a Hydra
app (the `tunixrt` subcommands, tests, notebooks)."""

from __future__ import annotations

from collections.abc import Sequence

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from tunixrt.config import TrainConfig
from tunixrt.errors import InputError
from tunixrt.paths import repo_path


def register_configs() -> None:
    """Register the root schema and the resolvers. conf/train.yaml lists the schema first
    in its defaults, so every group option merged after it is type-checked against the
    dataclasses of `tunixrt.config`."""
    ConfigStore.instance().store(name="train_schema", node=TrainConfig)
    if not OmegaConf.has_resolver("tunixrt.datasets"):
        OmegaConf.register_new_resolver("tunixrt.datasets", lambda: str(repo_path("datasets")))
    if not OmegaConf.has_resolver("tunixrt.either"):
        # ${tunixrt.either:${run.name},fallback}: the first value that is not null
        OmegaConf.register_new_resolver(
            "tunixrt.either", lambda value, fallback: fallback if value is None else value
        )


def compose(overrides: Sequence[str] = ()) -> DictConfig:
    """conf/train.yaml with `overrides` (Hydra's syntax), as `tunixrt-train` composes it.
    A bad override (an unknown group option, key or type) is an `InputError`."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    register_configs()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(repo_path("conf"))):
            return hydra_compose("train", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as err:
        raise InputError(_one_line(err)) from None


def _one_line(err: Exception) -> str:
    """Hydra's message, its cause (which names the key and the value) and the options
    of a group, on one line."""
    lines = str(err).strip().splitlines()
    text = lines[0] if lines else type(err).__name__
    if "Available options" in str(err):
        listed = str(err).split("Available options", 1)[1].split("Config search path")[0]
        options = [line.strip() for line in listed.splitlines()[1:] if line.strip()]
        text += f"; the options are: {', '.join(options)}"
    cause = str(err.__cause__ or "").strip()
    if cause:
        text += f": {cause.splitlines()[0]}"
    return text
