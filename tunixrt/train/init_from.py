"""`init.from`: a fresh run starts from the weights of another run's checkpoint or of a
Hugging Face folder, with a fresh optimizer.

The run's own config decides the model's shape; the source must hold a parameter of
the same shape under every name (`copy_weights` names each one that differs). A source
trained with LoRA is merged first (W + scale * A @ B), so the new run starts from the
function the source computed; with LoRA on in the new run, that merged model becomes
its frozen base and its adapters start fresh (B = 0: the same function again). The
tokenizer must be the source's too, or the ids would mean other tokens.

Only a fresh start reads the source: a resume continues from the run's own checkpoints,
which hold everything (the LoRA base included, saved once at the start).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flax import nnx

from tunixrt.config import ConfigError, TrainConfig
from tunixrt.errors import InputError
from tunixrt.models.lora import FROZEN_BASE, merge_lora
from tunixrt.paths import OUTPUTS
from tunixrt.registry import Registry, RegistryError, run_id_of_folder
from tunixrt.registry.urls import resolve_url
from tunixrt.sharding import put_whole
from tunixrt.targets import Target, load, resolve

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Origin:
    """The source of a fresh run's weights, resolved before anything is built."""

    given: str  # init.from as the user wrote it
    target: Target
    parent_id: str | None  # the registered run that wrote the checkpoint, if any

    @property
    def folder(self) -> str:
        """What was read: the checkpoint step folder or the Hugging Face folder."""
        return str(self.target.folder.resolve())


def find_origin(cfg: TrainConfig) -> Origin | None:
    """init.from resolved (a run id through the run's registry), or None when unset.
    Reads only metadata, so a wrong source fails before the run is registered."""
    given = cfg.init_from
    if given is None:
        return None
    url = resolve_url(cfg.registry.url, OUTPUTS)
    try:
        target = resolve(given, step=None, registry_url=url)
    except (InputError, RegistryError) as err:
        raise ConfigError(f"init.from={given!r}: {err}") from None
    return Origin(given, target, _parent_id(url, target.run_dir))


def _parent_id(url: str | None, run_dir: Path | None) -> str | None:
    if url is None or run_dir is None:
        return None
    try:
        with Registry.open_existing(url, create=False) as registry:
            return run_id_of_folder(registry, run_dir.resolve())
    except RegistryError:  # no registry there yet: the source run was not registered
        return None


def start_from(origin: Origin, model: nnx.Module, tokenizer: Any) -> None:
    """Put the source's weights (LoRA merged) into `model`'s base parameters."""
    source_tokenizer, source = load(origin.target)
    if source_tokenizer.vocab() != tokenizer.vocab():
        raise ConfigError(
            f"init.from={origin.given!r}: {origin.target.describe()} was trained with "
            f"another vocabulary ({source_tokenizer.source}) than this run's tokenizer "
            f"({tokenizer.source}); use the same dataset.tokenizer or model.path"
        )
    copy_weights(merge_lora(source), model, origin.target.describe())
    log.info("init.from: starting from the weights of %s", origin.target.describe())


def copy_weights(source: nnx.Module, model: nnx.Module, where: str) -> None:
    """Every base parameter of `model` set to the parameter of the same name in
    `source` (in `model`'s dtype and sharding); raises ConfigError naming the
    parameters missing, extra or of another shape."""
    have = dict(_leaves(nnx.to_pure_dict(nnx.state(source, nnx.Param))))
    state = nnx.state(model, FROZEN_BASE)
    want = dict(_leaves(nnx.to_pure_dict(state)))
    problems = [f"{_name(p)}: missing" for p in want if p not in have]
    problems += [f"{_name(p)}: not in this model" for p in have if p not in want]
    problems += [
        f"{_name(p)}: shape {tuple(have[p].shape)} there, {tuple(v.shape)} here"
        for p, v in want.items()
        if p in have and have[p].shape != v.shape
    ]
    if problems:
        shown = "; ".join(problems[:6]) + (
            f"; and {len(problems) - 6} more" if len(problems) > 6 else ""
        )
        raise ConfigError(
            f"init.from: {where} does not fit this run's model ({shown}); "
            "choose the model config the source was trained with"
        )
    values = {p: put_whole(have[p].astype(v.dtype), v.sharding) for p, v in want.items()}
    nnx.replace_by_pure_dict(state, _nest(values))
    nnx.update(model, state)


def _leaves(tree: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(tree, dict):
        for key, child in tree.items():
            yield from _leaves(child, (*prefix, key))
    else:
        yield prefix, tree


def _nest(flat: dict[tuple[Any, ...], Any]) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for path, value in flat.items():
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return out


def _name(path: tuple[Any, ...]) -> str:
    return ".".join(map(str, path))
