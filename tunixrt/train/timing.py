"""Timing of the real train step of a setup, of generation with its model, and of a
checkpoint save and restore; what `tunixrt bench` prints.

Prints tokens/s, step time, compile time, model FLOPs utilization (when the device's
peak is known), peak memory and XLA's buffer plan of the compiled step; prefill and
decode tokens/s of generation; with `--checkpoint`, also the time a save blocks the
loop, the time until it is on disk, and the restore time (in a temporary folder).
"""

from __future__ import annotations

import logging
import resource
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tunixrt.checkpoint import Checkpointer, train_state
from tunixrt.data.batching import HostBatch
from tunixrt.data.prefetch import token_counts
from tunixrt.evaluation import generate_tokens
from tunixrt.models import flops_per_token, num_params
from tunixrt.train.bare import bare_step
from tunixrt.train.peaks import Peak, measure_matmul, mfu_peak
from tunixrt.train.setup import Setup, next_batch, to_device
from tunixrt.train.step import DeviceBatch
from tunixrt.train.torch_reference import torch_device, torch_step

log = logging.getLogger(__name__)


@dataclass
class Timed:
    """One implementation's train step, timed in rounds of `steps` steps each (a
    round's wall time over its steps, so asynchronous dispatch overlaps as in
    training)."""

    name: str  # tunixrt, bare (a plain jitted step), torch (transformers + PyTorch)
    compile_seconds: float  # the first step: tracing, compilation (or CUDA set-up), one run
    round_step_seconds: list[float]  # per round
    step_seconds: float  # median over rounds
    tokens_per_second: float  # all positions, padding included (what the chip computes)
    nonpad_tokens_per_second: float  # positions holding a token of an example
    loss_tokens_per_second: float  # positions whose target counts in the loss
    model_tflops_per_second: float
    mfu: float | None  # against BenchResult.peak_tflops; None when that is unknown


@dataclass
class BenchResult:
    platform: str
    device_kind: str
    devices: int
    precision: str  # the compute dtype: float32 or bfloat16
    params_millions: float
    batch_tokens: int  # rows * seq_len per optimizer step
    step_flops: float  # model FLOPs of one optimizer step (flops_per_token * batch_tokens)
    rounds: int
    steps_per_round: int
    # tunixrt's real step through the loop's input path (also under `tunixrt`)
    compile_seconds: float
    step_seconds: float
    tokens_per_second: float
    nonpad_tokens_per_second: float
    loss_tokens_per_second: float
    model_tflops_per_second: float
    mfu: float | None
    # FLOP/s per device that MFU divides by, and where it comes from; the jnp matmul
    # measured in this run, GFLOP/s by dtype (on every platform; the peak on a CPU)
    peak_tflops: float | None
    peak_source: str
    matmul_gflops: dict[str, float]
    peak_memory_mib: float
    memory_source: str
    # XLA's buffer plan of the compiled step (every backend, CPU included): parameters,
    # optimizer state and batch in; activations, logits and gradients as temporaries.
    # None where the backend gives no plan.
    step_argument_mib: float | None
    step_temp_mib: float | None
    tunixrt: Timed | None = None
    bare: Timed | None = None  # with --bare
    reference: Timed | None = None  # with --reference torch
    reference_device: str | None = None  # torch's device: cpu or cuda
    # median over rounds of tunixrt tokens/s / torch tokens/s (above 1: tunixrt faster)
    speed_vs_reference: float | None = None
    # median over rounds of tunixrt step / bare step - 1: what the loop adds
    overhead_vs_bare: float | None = None


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


def _fixed_batches(s: Setup, count: int) -> list[HostBatch]:
    """A few train batches of the run's data, for the implementations timed on fixed
    batches (bare, torch) and for XLA's buffer plan."""
    return [next(s.data.train) for _ in range(count)]


@dataclass
class _Contender:
    name: str
    step: Callable[[], tuple[int, int]]  # dispatch one step: its (non-padding, loss) tokens
    sync: Callable[[], None]  # wait until every dispatched step is done


def _tunixrt(s: Setup) -> _Contender:
    """The real step through the loop's input path: the next prefetched, already placed
    batch, then the compiled step, as `fit` runs them."""
    last: list[Any] = [None]

    def step() -> tuple[int, int]:
        ready = next_batch(s)
        last[0] = s.train_step(s.model, s.optimizer, ready.placed)
        return ready.tokens, ready.loss_tokens

    return _Contender("tunixrt", step, lambda: jax.block_until_ready(last[0]))


def _cycling(
    name: str, run: Callable[[], Any], batches: list[HostBatch], sync: Callable[[], None]
) -> _Contender:
    """A contender whose `run` cycles over `batches` itself."""
    counts, calls = [token_counts(b) for b in batches], [0]

    def step() -> tuple[int, int]:
        run()
        calls[0] += 1
        return counts[(calls[0] - 1) % len(counts)]

    return _Contender(name, step, sync)


def _bare(s: Setup, batches: list[HostBatch]) -> _Contender:
    placed = [
        {k: jax.device_put(v, s.devices.data_sharding) for k, v in b.items()} for b in batches
    ]
    run = bare_step(s, placed)
    last: list[Any] = [None]

    def step() -> None:
        last[0] = run()

    return _cycling("bare", step, batches, lambda: jax.block_until_ready(last[0]))


def _torch(s: Setup, batches: list[HostBatch]) -> _Contender:
    run, sync = torch_step(s, batches)
    return _cycling("torch", run, batches, sync)


Round = tuple[float, int, int]  # seconds, non-padding tokens, loss tokens


def _round(c: _Contender, steps: int) -> Round:
    """`steps` steps dispatched back to back, then waited for."""
    start = time.perf_counter()
    tokens = loss_tokens = 0
    for _ in range(steps):
        n, m = c.step()
        tokens, loss_tokens = tokens + n, loss_tokens + m
    c.sync()
    return time.perf_counter() - start, tokens, loss_tokens


def _figures(
    name: str, compile_s: float, rounds: list[Round], steps: int, s: Setup, peak: Peak
) -> Timed:
    t = s.cfg.trainer
    per_step = [r[0] / steps for r in rounds]
    step_seconds = float(np.median(per_step))
    positions = t.batch_size * t.seq_len
    seen = positions * steps * len(rounds)  # positions of every timed step
    nonpad = sum(r[1] for r in rounds) / seen
    loss = sum(r[2] for r in rounds) / seen
    flops = flops_per_token(s.model.cfg, t.seq_len) * positions / step_seconds
    devices = len(s.devices.devices)
    return Timed(
        name=name,
        compile_seconds=compile_s,
        round_step_seconds=per_step,
        step_seconds=step_seconds,
        tokens_per_second=positions / step_seconds,
        nonpad_tokens_per_second=nonpad * positions / step_seconds,
        loss_tokens_per_second=loss * positions / step_seconds,
        model_tflops_per_second=flops / 1e12,
        mfu=None if peak.flops is None else flops / (peak.flops * devices),
    )


def _first(c: _Contender, warmup: int) -> float:
    """Seconds of the first step (compilation included); then `warmup` untimed steps."""
    compile_seconds = _round(c, 1)[0]
    if warmup:
        _round(c, warmup)
    return compile_seconds


def _alternate(
    contenders: list[_Contender], *, steps: int, warmup: int, rounds: int
) -> dict[str, tuple[float, list[Round]]]:
    """Compile each, then time them in alternating rounds (a, b, a, b, ...), so a
    machine whose speed drifts (other load, clocks) affects each alike. With more than
    one, every round starts with an untimed step: the steps right after the other
    implementation's ran slower (XLA after PyTorch: 4.3-4.7 against 4.0 s a step at
    llama_small on a 2-core Xeon, the allocator's and caches' state it left behind)."""
    first = {c.name: _first(c, warmup) for c in contenders}
    timed: dict[str, list[Round]] = {c.name: [] for c in contenders}
    for r in range(rounds):
        for c in contenders:
            if len(contenders) > 1:
                _round(c, 1)
            timed[c.name].append(_round(c, steps))
            log.info(
                "round %d %s: %.1f ms a step", r + 1, c.name, 1000 * timed[c.name][-1][0] / steps
            )
    return {name: (first[name], timed[name]) for name in first}


def _median_ratio(a: Timed, b: Timed) -> float:
    """Median over rounds of a's step time / b's."""
    return float(np.median(np.divide(a.round_step_seconds, b.round_step_seconds)))


def _measure_peak(s: Setup) -> tuple[Peak, dict[str, float]]:
    platform, kind = s.devices.platform, s.devices.devices[0].device_kind
    measured = {
        jnp.dtype(d).name: measure_matmul(jnp.dtype(d), platform)
        for d in (jnp.float32, jnp.bfloat16)
    }
    peak = mfu_peak(platform, kind, measured[s.devices.compute_dtype.name])
    return peak, {k: v / 1e9 for k, v in measured.items()}


def bench_step(
    s: Setup,
    *,
    steps: int,
    warmup: int,
    rounds: int = 3,
    bare: bool = False,
    reference: str | None = None,
) -> BenchResult:
    """Time the real step (through the loop's input path) in `rounds` rounds of
    `steps` steps, alternating with a bare jitted step (`bare`) and transformers +
    PyTorch (`reference="torch"`) on fixed batches of the same data."""
    batches = _fixed_batches(s, min(steps, 4))
    contenders = [_tunixrt(s)]
    if bare:
        contenders.append(_bare(s, batches))
    if reference == "torch":
        contenders.append(_torch(s, batches))
    results = _alternate(contenders, steps=steps, warmup=warmup, rounds=rounds)
    peak, matmul = _measure_peak(s)
    timed = {n: _figures(n, c, r, steps, s, peak) for n, (c, r) in results.items()}
    return _result(s, timed, peak, matmul, to_device(batches[0], s), rounds, steps)


def _result(
    s: Setup,
    timed: dict[str, Timed],
    peak: Peak,
    matmul: dict[str, float],
    batch: DeviceBatch,
    rounds: int,
    steps: int,
) -> BenchResult:
    t, dcfg, main = s.cfg.trainer, s.model.cfg, timed["tunixrt"]
    memory, source = _peak_memory(s)
    arguments, temporaries = _compiled_memory(s, batch)
    ref, bare = timed.get("torch"), timed.get("bare")
    return BenchResult(
        platform=s.devices.platform,
        device_kind=s.devices.devices[0].device_kind,
        devices=len(s.devices.devices),
        precision=s.devices.compute_dtype.name,
        params_millions=num_params(dcfg) / 1e6,
        batch_tokens=t.batch_size * t.seq_len,
        step_flops=float(flops_per_token(dcfg, t.seq_len) * t.batch_size * t.seq_len),
        rounds=rounds,
        steps_per_round=steps,
        compile_seconds=main.compile_seconds,
        step_seconds=main.step_seconds,
        tokens_per_second=main.tokens_per_second,
        nonpad_tokens_per_second=main.nonpad_tokens_per_second,
        loss_tokens_per_second=main.loss_tokens_per_second,
        model_tflops_per_second=main.model_tflops_per_second,
        mfu=main.mfu,
        peak_tflops=None if peak.flops is None else peak.flops / 1e12,
        peak_source=peak.source,
        matmul_gflops=matmul,
        peak_memory_mib=memory,
        memory_source=source,
        step_argument_mib=arguments,
        step_temp_mib=temporaries,
        tunixrt=main,
        bare=bare,
        reference=ref,
        reference_device=None if ref is None else torch_device(s),
        speed_vs_reference=None if ref is None else _median_ratio(ref, main),
        overhead_vs_bare=None if bare is None else _median_ratio(main, bare) - 1,
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


def _mfu(r: BenchResult) -> str:
    if r.mfu is None:
        return f"n/a ({r.peak_source})"
    assert r.peak_tflops is not None
    return f"{100 * r.mfu:.1f}% of {r.peak_tflops:,.3f} TFLOP/s ({r.peak_source})"


def _rounds(t: Timed) -> str:
    """tokens/s (all positions) of every round, then the median."""
    positions = t.tokens_per_second * t.step_seconds
    each = " / ".join(f"{positions / x:,.0f}" for x in t.round_step_seconds)
    return f"{each} tokens/s (median {t.tokens_per_second:,.0f}, compile {t.compile_seconds:.2f} s)"


def _comparisons(r: BenchResult) -> list[tuple[str, str]]:
    rows = []
    for t in (r.tunixrt, r.bare, r.reference):
        if t is not None and (r.bare or r.reference):
            name = f"{t.name} ({r.reference_device})" if t.name == "torch" else t.name
            rows.append((name, _rounds(t)))
    if r.speed_vs_reference is not None:
        rows.append(("vs torch", f"{r.speed_vs_reference:.2f}x (tunixrt / torch tokens/s, median)"))
    if r.overhead_vs_bare is not None:
        rows.append(("vs bare", f"{100 * r.overhead_vs_bare:+.1f}% step time (the loop's cost)"))
    return rows


def format_result(r: BenchResult) -> str:
    matmul = ", ".join(f"{k} {v:,.0f}" for k, v in r.matmul_gflops.items())
    tokens = (
        f"{r.tokens_per_second:,.0f} (all positions), {r.nonpad_tokens_per_second:,.0f} "
        f"non-padding, {r.loss_tokens_per_second:,.0f} in the loss"
    )
    rows = [
        ("device", f"{r.devices} x {r.platform} ({r.device_kind}), {r.precision}"),
        ("model", f"{r.params_millions:.2f}M parameters"),
        ("tokens/step", f"{r.batch_tokens} ({r.step_flops / 1e9:,.1f} GFLOP)"),
        ("compile", f"{r.compile_seconds:.2f} s"),
        ("step time", f"{1000 * r.step_seconds:.1f} ms (median of {r.rounds} rounds)"),
        ("tokens/s", tokens),
        ("model TFLOP/s", f"{r.model_tflops_per_second:.3f}"),
        ("MFU", _mfu(r)),
        ("matmul", f"{matmul} GFLOP/s (jnp, measured in this run)"),
        ("peak memory", f"{r.peak_memory_mib:,.0f} MiB ({r.memory_source})"),
    ]
    if r.step_argument_mib is not None and r.step_temp_mib is not None:
        plan = f"{r.step_argument_mib:,.0f} MiB in, {r.step_temp_mib:,.0f} MiB temporaries"
        rows.append(("step buffers", f"{plan} (XLA's plan of the compiled step)"))
    rows += _comparisons(r)
    return "\n".join(f"{k:<14} {v}" for k, v in rows)
