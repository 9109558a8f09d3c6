"""The same train step in transformers + PyTorch, for `tunixrt bench --reference torch`.

The model is the family's Hugging Face class (the class and config.json `tunixrt
export` writes, from `tunixrt.models.hf.hf_config`) with transformers' random init;
the optimizer is torch's AdamW with the config's lr, betas, eps and weight decay
(matrices only, as tunixrt's mask) and its gradient clipping. The precision policy
matches tunixrt's: float32 eager, or bf16 autocast (float32 weights and optimizer
state) when device.precision resolves to bf16. The loss is tunixrt's: float32
cross-entropy over the batch's weighted targets, summed over micro-batches and divided
once by their total weight.

Attention is transformers' default causal attention over the whole row: packed
examples see each other (tunixrt masks them apart), which costs the same FLOPs.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from tunixrt.config import OptimizerName
from tunixrt.data.batching import HostBatch
from tunixrt.errors import InputError
from tunixrt.models.hf import hf_config
from tunixrt.train.setup import Setup

log = logging.getLogger(__name__)

TorchStep = Callable[[], Any]  # one optimizer step on the next fixed batch; its loss tensor


class ReferenceError(InputError, RuntimeError):
    """The reference cannot run here (torch or transformers missing)."""


def _imports() -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError as err:
        raise ReferenceError(
            f"--reference torch needs torch and transformers ({err}); "
            "install them with: pip install 'tunixrt[bench]'"
        ) from err
    return torch, transformers


def _hf_model(s: Setup, torch: Any, transformers: Any, device: str) -> Any:
    hf = hf_config(s.model.cfg)
    fields = {k: v for k, v in hf.items() if k not in ("architectures", "model_type")}
    config = transformers.AutoConfig.for_model(hf["model_type"], **fields)
    torch.manual_seed(s.cfg.seed)
    model = getattr(transformers, hf["architectures"][0])(config)
    return model.to(device).train()


def _adamw(s: Setup, torch: Any, model: Any) -> Any:
    o = s.cfg.optimizer
    if o.name is not OptimizerName.adamw:
        log.warning("the torch reference uses AdamW; the config's optimizer is %s", o.name)
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": o.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=o.lr, betas=(o.b1, o.b2), eps=o.eps)


def torch_device(s: Setup) -> str:
    """cuda when tunixrt runs on a GPU and torch sees one; cpu otherwise."""
    torch, _ = _imports()
    return "cuda" if s.devices.platform == "gpu" and torch.cuda.is_available() else "cpu"


def _tensors(batch: HostBatch, torch: Any, device: str, accum: int) -> list[dict[str, Any]]:
    """[rows, seq] host arrays -> `accum` micro-batches of torch tensors on `device`."""
    keys = ("inputs", "positions", "targets", "weights")
    split = {k: np.split(batch[k], accum) for k in keys}
    return [{k: torch.from_numpy(split[k][i]).to(device) for k in keys} for i in range(accum)]


def torch_step(s: Setup, batches: list[HostBatch]) -> tuple[TorchStep, Callable[[], None]]:
    """A step function cycling over `batches`, and a function that waits for the
    device (every step on a CPU is synchronous; CUDA queues kernels)."""
    torch, transformers = _imports()
    device = torch_device(s)
    model = _hf_model(s, torch, transformers, device)
    optimizer = _adamw(s, torch, model)
    accum, clip = s.cfg.trainer.grad_accum, s.cfg.optimizer.grad_clip
    bf16 = s.devices.compute_dtype == np.dtype("bfloat16")
    placed = [_tensors(b, torch, device, accum) for b in batches]
    totals = [max(float(b["weights"].sum()), 1.0) for b in batches]  # on the host: no sync
    nf = torch.nn.functional

    def autocast() -> contextlib.AbstractContextManager[Any]:
        if bf16:
            return torch.autocast(device_type=device, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def micro_loss(mb: dict[str, Any]) -> Any:
        with autocast():
            logits = model(input_ids=mb["inputs"], position_ids=mb["positions"]).logits
        flat = logits.float().flatten(0, 1)  # [rows * seq, vocab], float32 as tunixrt's loss
        ce = nf.cross_entropy(flat, mb["targets"].flatten().long(), reduction="none")
        return (ce * mb["weights"].flatten()).sum()

    calls = [0]

    def step() -> Any:
        i = calls[0] % len(placed)
        calls[0] += 1
        optimizer.zero_grad(set_to_none=True)
        loss = 0.0
        for mb in placed[i]:
            part = micro_loss(mb) / totals[i]
            part.backward()
            loss = loss + part.detach()  # a tensor: reading it would wait for the device
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        return loss

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    return step, sync
