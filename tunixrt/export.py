"""`tunixrt export`: a run's checkpoint as a Hugging Face folder that transformers loads.

The model is rebuilt from the config stored in the checkpoint (a pretrained model is
read again from its `model.path`; a LoRA run's checkpoint holds only the adapters, so its
base is loaded from the reference in the meta and its hash checked), the checkpoint's
weights are put in, and `save_pretrained` writes config.json, safetensors (adapters
merged) and the tokenizer.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from contextlib import closing
from pathlib import Path
from typing import Any

import jax.numpy as jnp

from tunixrt.checkpoint import Checkpointer, load_train_state, model_state
from tunixrt.config import ConfigError, DeviceConfig, Platform, TrainConfig, validate
from tunixrt.data.pipeline import Tokenizer, load_tokenizer
from tunixrt.data.tokenize import TextTokenizer
from tunixrt.devices import setup_devices
from tunixrt.files import replace_folder
from tunixrt.lora_base import load_base
from tunixrt.models.decoder import Decoder
from tunixrt.models.factory import build_model
from tunixrt.models.hf import save_pretrained

log = logging.getLogger(__name__)


def locate(target: str, registry_url: str | None = None) -> tuple[Path, int | None]:
    """(checkpoints folder, step or None for the newest) of a run folder, a checkpoint
    step folder (RUN/checkpoints/STEP) or a registered run id."""
    path = Path(target)
    if (path / "checkpoints").is_dir():
        return path / "checkpoints", None
    if path.is_dir() and path.name.isdigit() and (path / "meta").exists():
        return path.parent, int(path.name)
    if path.exists():
        raise ConfigError(
            f"{path}: neither a run folder (with checkpoints/) nor a "
            "checkpoint step folder (RUN/checkpoints/STEP)"
        )
    from tunixrt.registry import Registry, get_run
    from tunixrt.registry.urls import cli_url

    with Registry.open_existing(cli_url(registry_url), create=False) as registry:
        run = get_run(registry, target)
    return Path(run.checkpoint_dir or Path(run.run_dir) / "checkpoints"), None


def choose_step(ck: Checkpointer, step: int | None) -> int:
    """`step` (None: the newest), checked to be one the folder holds."""
    steps = ck.steps()
    chosen = step if step is not None else max(steps, default=-1)
    if chosen not in steps:
        what = f"step {chosen}" if chosen >= 0 else "any step"
        raise ConfigError(f"{ck.directory}: no checkpoint of {what} (have: {steps})")
    return chosen


def _config(meta: dict[str, Any]) -> TrainConfig:
    return validate(meta["config"])


def _tunixrt_tokenizer_dir(tok: TextTokenizer, source: str, folder: Path) -> Path:
    """The bundled tokenizer as transformers expects it: tokenizer.json plus a
    tokenizer_config.json naming the special tokens."""
    (folder / "tokenizer.json").write_bytes(Path(source).read_bytes())
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|bos|>",
        "eos_token": "<|eos|>",
        "pad_token": "<|pad|>",
        "model_max_length": 1 << 30,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    ids = {"bos_token_id": tok.bos_id, "eos_token_id": tok.eos_id, "pad_token_id": tok.pad_id}
    (folder / "config.json").write_text(json.dumps(ids) + "\n")
    return folder


def load_model(ck: Checkpointer, step: int) -> tuple[TrainConfig, Tokenizer, Decoder]:
    """The config, tokenizer and float32 model of checkpoint `step`, rebuilt from the
    config stored in it, with a LoRA run's base loaded and checked, and the
    checkpoint's weights put in."""
    meta = ck.read_meta(step)
    cfg = _config(meta)
    devices = setup_devices(DeviceConfig(platform=Platform.auto))
    tok = load_tokenizer(cfg.dataset, cfg.model.path)
    model = build_model(
        cfg.model,
        vocab_size=tok.vocab_size,
        dtype=jnp.dtype("float32"),
        seed=cfg.seed,
        devices=devices,
    )
    base = meta.get("base")
    if base is not None:
        load_base(base, model, ck)
    adapters_only = base is not None
    arrays = ck.restore_model(step, model_state(model, adapters_only=adapters_only))
    load_train_state(model, None, {"model": arrays}, adapters_only=adapters_only)
    return cfg, tok, model


def export(
    target: str, out: str | Path, *, step: int | None = None, registry_url: str | None = None
) -> Path:
    ckdir, found = locate(target, registry_url)
    ck = Checkpointer(ckdir, every_steps=0, keep=1 << 30, read_only=True)
    with closing(ck):
        step = choose_step(ck, step if step is not None else found)
        _check_destination(Path(out), _config(ck.read_meta(step)), ckdir)
        cfg, tok, model = load_model(ck, step)
    with tempfile.TemporaryDirectory() as tmp:
        if isinstance(tok, TextTokenizer):
            assert cfg.dataset.tokenizer is not None
            tokenizer_dir = _tunixrt_tokenizer_dir(tok, cfg.dataset.tokenizer, Path(tmp))
        else:
            tokenizer_dir = Path(str(cfg.model.path))
        # Written whole beside OUT, then swapped in: a failed or killed export leaves OUT
        # as it was.
        staging = Path(out).with_name(f".{Path(out).name}.partial")
        shutil.rmtree(staging, ignore_errors=True)
        save_pretrained(model, staging, tokenizer_dir=tokenizer_dir)
        replace_folder(staging, Path(out))
    log.info("exported step %d of %s to %s", step, ckdir, out)
    return Path(out)


def _check_destination(out: Path, cfg: TrainConfig, ckdir: Path) -> None:
    """OUT must not be the pretrained folder the model is read from, nor hold the run's
    checkpoints: replacing it would destroy what the export reads."""
    sources = [ckdir.resolve()]
    if cfg.model.path is not None:
        sources.append(Path(cfg.model.path).resolve())
    target = out.resolve()
    for source in sources:
        if target == source or source.is_relative_to(target):
            raise ConfigError(
                f"{out}: refusing to export into {source}, which the export reads from; "
                "choose another folder"
            )
