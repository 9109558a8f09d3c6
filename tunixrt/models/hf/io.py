"""Read and write Hugging Face checkpoint folders (config.json + safetensors).

Loading builds the Decoder abstractly (shapes only), checks every tensor's name and
shape against the safetensors headers before reading any data, then reads tensors one
at a time and places each into the model, so host memory holds the model plus about
one tensor. Nothing here unpickles: `.bin` / `.pt` checkpoints are refused.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors import safe_open
from safetensors.numpy import save_file

from tunixrt.models.decoder import Decoder, DecoderConfig
from tunixrt.models.hf.configs import CheckpointError, decoder_config, hf_config
from tunixrt.models.hf.tensors import TensorSpec, hf_shape, tensor_specs, to_hf, to_nnx
from tunixrt.models.lora import LoRALinear

log = logging.getLogger(__name__)

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
INDEX = "model.safetensors.index.json"
_PICKLES = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")
# Copied next to an export so transformers and tokenizers load the same tokenizer.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "generation_config.json",
    "chat_template.jinja",
    "chat_template.json",
)
# Non-persistent buffers that some older checkpoints carry; never parameters.
_BUFFER_SUFFIXES = (".attn.bias", ".attn.masked_bias", "rotary_emb.inv_freq")
DEFAULT_MAX_SHARD_BYTES = 4 * 2**30


# ---------------------------------------------------------------------------- reading


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with path.open() as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: invalid JSON ({err})") from None


def _folder(path: str | os.PathLike) -> Path:
    folder = Path(path)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: not a folder (expected a Hugging Face checkpoint folder)")
    if not (folder / CONFIG).is_file():
        raise CheckpointError(
            f"{folder}: no {CONFIG}; a Hugging Face checkpoint folder holds config.json "
            "and model.safetensors (or model.safetensors.index.json with its shards)"
        )
    return folder


def read_config(
    path: str | os.PathLike,
    *,
    dtype: str = "float32",
    param_dtype: str | None = None,
    attention: str = "auto",
) -> DecoderConfig:
    """The DecoderConfig of the checkpoint folder `path` (from its config.json).

    dtype is the compute dtype; param_dtype (default: dtype) the storage dtype;
    attention is DecoderConfig.attention.
    """
    folder = _folder(path)
    source = folder / CONFIG
    return decoder_config(
        _read_json(source),
        dtype=dtype,
        param_dtype=param_dtype,
        attention=attention,
        source=str(source),
    )


def _weight_files(folder: Path) -> dict[str, Path]:
    """Tensor name -> the safetensors file holding it."""
    index = folder / INDEX
    if index.is_file():
        weight_map = _read_json(index).get("weight_map")
        if not isinstance(weight_map, dict):
            raise CheckpointError(f"{index}: no 'weight_map' object")
        files = {name: folder / file for name, file in weight_map.items()}
        absent = sorted({str(p.name) for p in files.values() if not p.is_file()})
        if absent:
            raise CheckpointError(f"{index}: shard file(s) missing from the folder: {absent}")
        return files
    shards = sorted(folder.glob("*.safetensors"))
    if shards:
        files = {}
        for shard in shards:
            with safe_open(shard, framework="np") as f:
                files.update(dict.fromkeys(f.keys(), shard))
        return files
    pickles = sorted(p.name for pattern in _PICKLES for p in folder.glob(pattern))
    if pickles:
        raise CheckpointError(
            f"{folder}: holds only PyTorch pickle weights ({', '.join(pickles)}); tunixrt "
            "never unpickles (it can run code). Convert to safetensors first, e.g. load it "
            "once with transformers and call save_pretrained(), which writes model.safetensors"
        )
    raise CheckpointError(f"{folder}: no {WEIGHTS} or {INDEX}")


def _resolve(name: str, available: Mapping[str, Path]) -> str | None:
    """The checkpoint's name for `name`: also found without the "model." / "transformer."
    prefix, as in checkpoints saved from the bare base model (LlamaModel, GPT2Model)."""
    if name in available:
        return name
    head, _, rest = name.partition(".")
    return rest if head in ("model", "transformer") and rest in available else None


def _header_shapes(files: Mapping[str, Path]) -> dict[str, tuple[int, ...]]:
    """Shapes from the safetensors headers, reading no tensor data."""
    by_file: dict[Path, list[str]] = defaultdict(list)
    for name, file in files.items():
        by_file[file].append(name)
    shapes = {}
    for file, names in by_file.items():
        with safe_open(file, framework="np") as f:
            shapes.update({n: tuple(f.get_slice(n).get_shape()) for n in names})
    return shapes


def _variables(model: nnx.Module) -> dict[tuple, nnx.Variable]:
    return {path: v for path, v in nnx.iter_graph(model) if isinstance(v, nnx.Variable)}


def _plan(
    folder: Path,
    specs: list[TensorSpec],
    files: Mapping[str, Path],
    variables: Mapping[tuple, nnx.Variable],
) -> dict[Path, list[tuple[str, TensorSpec]]]:
    """Checkpoint name and spec of every tensor to read, grouped by file; raises
    CheckpointError naming every missing tensor and every shape mismatch at once."""
    shapes = _header_shapes(files)
    plan: dict[Path, list[tuple[str, TensorSpec]]] = defaultdict(list)
    missing, mismatched, used = [], [], set()
    for spec in specs:
        name = _resolve(spec.name, files)
        if name is None:
            missing.append(spec.name)
            continue
        used.add(name)
        expected = hf_shape(spec, [tuple(variables[p].get_value().shape) for p in spec.paths])
        if shapes[name] != expected:
            mismatched.append(f"{name}: expected {list(expected)}, got {list(shapes[name])}")
            continue
        plan[files[name]].append((name, spec))
    if missing:
        shown = ", ".join(missing[:12]) + (
            f" and {len(missing) - 12} more" if len(missing) > 12 else ""
        )
        raise CheckpointError(f"{folder}: missing tensor(s) {shown}")
    if mismatched:
        raise CheckpointError(f"{folder}: tensor shape mismatch: " + "; ".join(mismatched))
    unused = sorted(n for n in files if n not in used and not n.endswith(_BUFFER_SUFFIXES))
    if unused:
        log.warning("%s: ignoring %d unused tensor(s): %s", folder, len(unused), unused[:8])
    return plan


def load_pretrained(
    path: str | os.PathLike,
    *,
    dtype: str = "float32",
    param_dtype: str | None = None,
    sharding: jax.sharding.Sharding | None = None,
    attention: str = "auto",
) -> Decoder:
    """A Decoder holding the weights of the Hugging Face checkpoint folder `path`.

    dtype is the compute dtype, param_dtype (default: dtype) the storage dtype of the
    parameters; each parameter goes to `sharding` when given (default device otherwise);
    attention is DecoderConfig.attention (auto, fused or reference).
    Raises CheckpointError (a ValueError) for an unsupported architecture, a missing
    config.json, pickle-only weights, missing tensors or shape mismatches.
    """
    folder = _folder(path)
    cfg = read_config(folder, dtype=dtype, param_dtype=param_dtype, attention=attention)
    files = _weight_files(folder)
    model = nnx.eval_shape(lambda: Decoder(cfg, rngs=nnx.Rngs(0)))
    variables = _variables(model)
    plan = _plan(folder, tensor_specs(cfg), files, variables)
    store = jnp.dtype(cfg.param_dtype)
    for file, entries in plan.items():
        with safe_open(file, framework="np") as f:
            for name, spec in entries:
                for p, value in zip(spec.paths, to_nnx(spec, f.get_tensor(name)), strict=True):
                    value = np.asarray(value, dtype=store)
                    placed = (
                        jnp.asarray(value) if sharding is None else jax.device_put(value, sharding)
                    )
                    variables[p].set_value(placed)
    log.info("loaded %s checkpoint %s", cfg.family, folder)
    return model


# ---------------------------------------------------------------------------- writing


def _param_reader(model: nnx.Module) -> Callable[[tuple[Any, ...]], np.ndarray]:
    """path -> numpy value of each parameter; adapted kernels come out merged."""
    variables = _variables(model)
    adapted = {path: m for path, m in nnx.iter_modules(model) if isinstance(m, LoRALinear)}

    def read(path: tuple[Any, ...]) -> np.ndarray:
        module = adapted.get(path[:-1])
        if module is not None and path[-1] == "kernel":
            return np.asarray(module.merged_kernel())
        return np.asarray(variables[path].get_value())

    return read


def _shards(sizes: list[int], max_bytes: int) -> list[list[int]]:
    """Consecutive groups of tensor indices, each under max_bytes unless one tensor is larger."""
    groups: list[list[int]] = [[]]
    total = 0
    for i, size in enumerate(sizes):
        if groups[-1] and total + size > max_bytes:
            groups.append([])
            total = 0
        groups[-1].append(i)
        total += size
    return groups


def _clear_weights(out: Path) -> None:
    """Remove weights of an earlier export, so no stale shard outlives a new layout."""
    for stale in [*out.glob("model-*-of-*.safetensors"), out / WEIGHTS, out / INDEX]:
        stale.unlink(missing_ok=True)


def _tokenizer_files(tokenizer_dir: Path) -> list[Path]:
    """The files of TOKENIZER_FILES in tokenizer_dir; at least one must be a tokenizer."""
    present = [tokenizer_dir / n for n in TOKENIZER_FILES if (tokenizer_dir / n).is_file()]
    if not any(p.name in ("tokenizer.json", "tokenizer.model", "vocab.json") for p in present):
        raise CheckpointError(
            f"{tokenizer_dir}: no tokenizer files (tokenizer.json, tokenizer.model or vocab.json)"
        )
    templates = tokenizer_dir / "additional_chat_templates"
    return present + ([templates] if templates.is_dir() else [])


def _token_ids(tokenizer_dir: Path | None) -> dict[str, Any]:
    """bos/eos/pad ids of the source checkpoint's config.json, when there is one."""
    source = tokenizer_dir / CONFIG if tokenizer_dir is not None else None
    if source is None or not source.is_file():
        return {}
    hf = _read_json(source)
    return {k: hf[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id") if k in hf}


def save_pretrained(
    model: Decoder,
    path: str | os.PathLike,
    *,
    tokenizer_dir: str | os.PathLike | None = None,
    dtype: str | None = None,
    config_overrides: Mapping[str, Any] | None = None,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
) -> Path:
    """Write `model` as a Hugging Face checkpoint folder that transformers loads.

    Writes config.json (model_type and architectures of model.cfg.family),
    model.safetensors (or shards of at most max_shard_bytes plus an index) in `dtype`
    (default: the parameters' dtype), and, from tokenizer_dir, the tokenizer files and
    generation config and the bos/eos/pad ids of its config.json. LoRA adapters are
    merged into the written kernels; the model itself is unchanged. config_overrides
    are set in config.json last. Host memory holds one shard at a time. Earlier
    weights files in the folder are replaced. Returns the folder.
    """
    cfg = model.cfg
    hf = hf_config(cfg)
    store = np.dtype(jnp.dtype(dtype or cfg.param_dtype))
    hf["dtype"] = store.name
    src = Path(tokenizer_dir) if tokenizer_dir is not None else None
    hf |= _token_ids(src) | dict(config_overrides or {})
    extras = _tokenizer_files(src) if src is not None else []

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    _clear_weights(out)
    specs = tensor_specs(cfg)
    variables, read = _variables(model), _param_reader(model)
    sizes = [
        sum(int(np.prod(variables[p].get_value().shape)) for p in s.paths) * store.itemsize
        for s in specs
    ]
    groups = _shards(sizes, max_shard_bytes)
    names = (
        [WEIGHTS]
        if len(groups) == 1
        else [f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors" for i in range(len(groups))]
    )
    weight_map = {}
    for file, group in zip(names, groups, strict=True):
        tensors = {}
        for i in group:
            spec = specs[i]
            tensors[spec.name] = to_hf(spec, [read(p) for p in spec.paths]).astype(store)
            weight_map[spec.name] = file
        save_file(tensors, str(out / file), metadata={"format": "pt"})
    if len(groups) > 1:
        index = {"metadata": {"total_size": sum(sizes)}, "weight_map": weight_map}
        (out / INDEX).write_text(json.dumps(index, indent=2) + "\n")
    (out / CONFIG).write_text(json.dumps(hf, indent=2, sort_keys=True) + "\n")
    for extra in extras:
        if extra.is_dir():
            shutil.copytree(extra, out / extra.name, dirs_exist_ok=True)
        else:
            shutil.copyfile(extra, out / extra.name)
    log.info("wrote %s checkpoint to %s (%d file(s))", cfg.family, out, len(names))
    return out
