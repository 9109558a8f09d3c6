"""Timing of the real train step of a setup, of generation with its model, and of a
checkpoint save and restore; what `tunixrt bench` prints.

Prints tokens/s, step time, compile time, model FLOPs utilization (when the device's
peak is known), peak memory and XLA's buffer plan of the compiled step; prefill and
decode tokens/s of generation; with `--checkpoint`, also the time a save blocks the
loop, the time until it is on disk, and the restore time (in a temporary folder).
"""

from __future__ import annotations

import resource
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np

from tunixrt.checkpoint import Checkpointer, train_state
from tunixrt.evaluation import generate_tokens
from tunixrt.models import flops_per_token, num_params
from tunixrt.train.setup import Setup, to_device
from tunixrt.train.step import DeviceBatch

# Dense bf16 peak FLOP/s per chip, from the vendors' data sheets.
PEAK_BF16_FLOPS = {
    "H200": 989e12,
    "H100": 989e12,
    "A100": 312e12,
    "L4": 121e12,
    "A10": 125e12,
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,
    "TPU v5e": 197e12,
    "TPU v5p": 459e12,
    "TPU v6": 918e12,
}


@dataclass
class BenchResult:
    platform: str
    device_kind: str
    devices: int
    params_millions: float
    batch_tokens: int  # rows * seq_len per optimizer step
    compile_seconds: float
    step_seconds: float
    tokens_per_second: float  # all positions, padding included (what the chip computes)
    model_tflops_per_second: float
    mfu: float | None  # None when the device's peak is unknown (CPU)
    peak_memory_mib: float
    memory_source: str
    # XLA's buffer plan of the compiled step (every backend, CPU included): parameters,
    # optimizer state and batch in; activations, logits and gradients as temporaries.
    # None where the backend gives no plan.
    step_argument_mib: float | None
    step_temp_mib: float | None


def _peak_flops(kind: str, precision_bf16: bool) -> float | None:
    if not precision_bf16:
        return None
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k.lower() in kind.lower()), None)


def _peak_memory(s: Setup) -> tuple[float, str]:
    stats = s.devices.devices[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        return stats["peak_bytes_in_use"] / 2**20, "device peak_bytes_in_use"
    # CPU: the process's peak resident set (kilobytes on Linux)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process max RSS"


def _compiled_memory(s: Setup, batch: DeviceBatch) -> tuple[float | None, float | None]:
    """Argument and temporary MiB of the compiled train step, from XLA's memory
    analysis; compiles the step once more (a cache hit with the compile cache on).
    None for a step that is not a jitted function (a test's wrapper) or a backend
    without the analysis."""
    lower = getattr(s.train_step, "lower", None)
    if lower is None:
        return None, None
    analysis = lower(s.model, s.optimizer, batch).compile().memory_analysis()
    if analysis is None:
        return None, None
    return analysis.argument_size_in_bytes / 2**20, analysis.temp_size_in_bytes / 2**20


def bench_step(s: Setup, *, steps: int, warmup: int) -> BenchResult:
    """Compile, warm up, then time `steps` train steps on a few fixed batches."""
    t = s.cfg.trainer
    batches = [to_device(next(s.data.train), s) for _ in range(min(steps, 4))]
    start = time.perf_counter()
    step = s.train_step
    jax.block_until_ready(step(s.model, s.optimizer, batches[0]))
    compile_seconds = time.perf_counter() - start
    for i in range(warmup):
        jax.block_until_ready(step(s.model, s.optimizer, batches[i % len(batches)]))
    times = []
    for i in range(steps):
        t0 = time.perf_counter()
        jax.block_until_ready(step(s.model, s.optimizer, batches[i % len(batches)]))
        times.append(time.perf_counter() - t0)
    step_seconds = float(np.median(times))
    batch_tokens = t.batch_size * t.seq_len
    dcfg = s.model.cfg
    model_flops = flops_per_token(dcfg, t.seq_len) * batch_tokens / step_seconds
    kind = s.devices.devices[0].device_kind
    peak = _peak_flops(kind, s.devices.compute_dtype == jax.numpy.bfloat16)
    memory, source = _peak_memory(s)
    arguments, temporaries = _compiled_memory(s, batches[0])
    return BenchResult(
        platform=s.devices.platform,
        device_kind=kind,
        devices=len(s.devices.devices),
        params_millions=num_params(dcfg) / 1e6,
        batch_tokens=batch_tokens,
        compile_seconds=compile_seconds,
        step_seconds=step_seconds,
        tokens_per_second=batch_tokens / step_seconds,
        model_tflops_per_second=model_flops / 1e12,
        mfu=None if peak is None else model_flops / (peak * len(s.devices.devices)),
        peak_memory_mib=memory,
        memory_source=source,
        step_argument_mib=arguments,
        step_temp_mib=temporaries,
    )


@dataclass
class GenerationBench:
    rows: int  # prompts generated together: the trainer's rows per micro-batch
    prompt_tokens: int  # per prompt
    new_tokens: int  # per prompt, in the longer timed run
    compile_seconds: float  # the first call: compile, then one run
    prefill_seconds: float  # the whole batch's prompts
    decode_step_seconds: float  # one new token for every row
    prefill_tokens_per_second: float
    decode_tokens_per_second: float


def _power_of_two_at_most(n: int) -> int:
    return 1 << (max(n, 1).bit_length() - 1)


def _median_seconds(run: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def bench_generation(s: Setup, *, repeats: int = 3, max_new_tokens: int = 128) -> GenerationBench:
    """Time greedy generation with the setup's model on the trainer's rows, prompts of
    half a training row (a power of two, so no padding is computed).

    One generation of n tokens runs the prefill and n decode steps, so generating 1 and
    n tokens separates them: decode step = (t(n) - t(1)) / (n - 1), prefill = t(1) -
    one decode step. Both calls share one compiled program (the same cache length);
    no EOS is set, so every row decodes all n tokens."""
    t = s.cfg.trainer
    rows = t.batch_size // t.grad_accum
    prompt = max(8, _power_of_two_at_most(t.seq_len // 2))
    new = max(2, min(prompt, max_new_tokens))
    vocab = s.model.cfg.vocab_size
    prompts = np.random.default_rng(0).integers(0, vocab, (rows, prompt)).tolist()

    def generate(n: int) -> Callable[[], object]:
        return lambda: generate_tokens(s.model, prompts, max_new_tokens=n, eos_id=None)

    compile_seconds = _median_seconds(generate(new), 1)
    one = _median_seconds(generate(1), repeats)
    full = _median_seconds(generate(new), repeats)
    step = max(full - one, 1e-9) / (new - 1)
    prefill = max(one - step, 1e-9)
    return GenerationBench(
        rows=rows,
        prompt_tokens=prompt,
        new_tokens=new,
        compile_seconds=compile_seconds,
        prefill_seconds=prefill,
        decode_step_seconds=step,
        prefill_tokens_per_second=rows * prompt / prefill,
        decode_tokens_per_second=rows / step,
    )


def format_generation(r: GenerationBench) -> str:
    rows = [
        ("generation", f"{r.rows} prompts x {r.prompt_tokens} tokens, {r.new_tokens} new each"),
        ("gen compile", f"{r.compile_seconds:.2f} s"),
        (
            "prefill",
            f"{r.prefill_tokens_per_second:,.0f} tokens/s ({1000 * r.prefill_seconds:.1f} ms)",
        ),
        (
            "decode",
            f"{r.decode_tokens_per_second:,.0f} tokens/s "
            f"({1000 * r.decode_step_seconds:.2f} ms per step)",
        ),
    ]
    return "\n".join(f"{k:<14} {v}" for k, v in rows)


@dataclass
class CheckpointBench:
    size_mib: float
    save_blocked_seconds: float  # what the step loop waits for (arrays copied to host)
    save_total_seconds: float  # until the checkpoint is complete on disk
    restore_seconds: float


def _folder_mib(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20


def bench_checkpoint(s: Setup, folder: Path | None = None) -> CheckpointBench:
    """Save the model and optimizer state once (asynchronously), as a run saves it
    (under LoRA without the frozen base), and restore it."""
    tmp = Path(folder or tempfile.mkdtemp(prefix="tunixrt-bench-"))
    try:
        ck = Checkpointer(tmp, every_steps=1, keep=1)
        state = train_state(s.model, s.optimizer, adapters_only=s.cfg.model.lora.rank > 0)
        start = time.perf_counter()
        blocked = ck.save(1, state, {"step": 1})
        ck.wait()
        total = time.perf_counter() - start
        start = time.perf_counter()
        restored = ck.restore(1, state)
        jax.block_until_ready(restored.arrays)
        restore = time.perf_counter() - start
        ck.close()
        return CheckpointBench(_folder_mib(tmp), blocked, total, restore)
    finally:
        if folder is None:
            shutil.rmtree(tmp, ignore_errors=True)


def format_checkpoint(r: CheckpointBench) -> str:
    rows = [
        ("checkpoint", f"{r.size_mib:,.1f} MiB"),
        ("save (loop)", f"{1000 * r.save_blocked_seconds:.0f} ms blocked"),
        ("save (disk)", f"{1000 * r.save_total_seconds:.0f} ms until complete"),
        ("restore", f"{1000 * r.restore_seconds:.0f} ms"),
    ]
    return "\n".join(f"{k:<14} {v}" for k, v in rows)


def format_result(r: BenchResult) -> str:
    mfu = "n/a (peak unknown)" if r.mfu is None else f"{100 * r.mfu:.1f}%"
    rows = [
        ("device", f"{r.devices} x {r.platform} ({r.device_kind})"),
        ("model", f"{r.params_millions:.2f}M parameters"),
        ("tokens/step", f"{r.batch_tokens}"),
        ("compile", f"{r.compile_seconds:.2f} s"),
        ("step time", f"{1000 * r.step_seconds:.1f} ms (median)"),
        ("tokens/s", f"{r.tokens_per_second:,.0f}"),
        ("model TFLOP/s", f"{r.model_tflops_per_second:.3f}"),
        ("MFU", mfu),
        ("peak memory", f"{r.peak_memory_mib:,.0f} MiB ({r.memory_source})"),
    ]
    if r.step_argument_mib is not None and r.step_temp_mib is not None:
        plan = f"{r.step_argument_mib:,.0f} MiB in, {r.step_temp_mib:,.0f} MiB temporaries"
        rows.append(("step buffers", f"{plan} (XLA's plan of the compiled step)"))
    return "\n".join(f"{k:<14} {v}" for k, v in rows)
