"""The training loop: `train(cfg, run_dir)` starts or resumes a run, steps, logs,
evaluates and saves, and stops cleanly on SIGTERM or Ctrl-C. Works from plain Python:
no Hydra needed (the `tunixrt-train` entry passes in what Hydra knows)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import jax
from omegaconf import DictConfig

from tunixrt.checkpoint import train_state
from tunixrt.config import Progress, TrainConfig, validate
from tunixrt.train.answers import log_report, sample_table
from tunixrt.train.context import RunContext
from tunixrt.train.metrics import Throughput
from tunixrt.train.progress import ProgressDisplay
from tunixrt.train.run import Run, open_run
from tunixrt.train.setup import enable_compile_cache, evaluate, next_batch
from tunixrt.train.signals import Preempted, StopRequest, agreed_stop
from tunixrt.train.state import checkpoint_meta

log = logging.getLogger(__name__)


class NonFiniteError(FloatingPointError):
    """A step produced a NaN or an infinite loss or gradient; nothing after it is saved."""


@dataclass
class TrainResult:
    run_dir: Path
    final_step: int
    final_eval_loss: float | None
    resumed_from: int | None = None
    train_losses: dict[int, float] = field(default_factory=dict)  # logged steps of this start
    final_eval_accuracy: float | None = None  # answer evaluation (eval.*)

    def metric(self, name: str) -> float | None:
        """A final metric by its TensorBoard tag: eval/loss, eval/accuracy or train/loss."""
        if name == "eval/loss":
            return self.final_eval_loss
        if name == "eval/accuracy":
            return self.final_eval_accuracy
        if name == "train/loss" and self.train_losses:
            return self.train_losses[max(self.train_losses)]
        return None


def train(cfg: TrainConfig | DictConfig, run: RunContext | str | Path | None = None) -> TrainResult:
    """Train from a config (typed, or composed by Hydra), resuming from the run folder's
    newest checkpoint when `run.resume` allows. `run` is the run folder, or the
    `RunContext` the CLI gathers from Hydra; None: outputs/RUN_NAME (or a timestamp).

    The run is registered before anything compiles; whatever happens after that ends
    in the registry as completed, preempted (a signal) or failed (with the error).
    """
    started = time.perf_counter()
    typed = validate(cfg)
    context = RunContext.of(run, typed.run.name)
    enable_compile_cache(_compile_cache_dir(typed))
    with open_run(typed, context) as r:
        result = TrainResult(context.run_dir, r.loop.step, r.loop.last_eval_loss, r.resumed_from)
        result.final_eval_accuracy = r.loop.last_eval_accuracy
        if r.loop.step < typed.trainer.max_steps:
            fit(r, result)
        else:
            log.info(
                "nothing to do: the run is at step %d of %d", r.loop.step, typed.trainer.max_steps
            )
    _report(result, r, time.perf_counter() - started)
    return result


def _compile_cache_dir(cfg: TrainConfig) -> str | None:
    """device.compile_cache_dir, except in a multi-process run: there a resume whose
    processes loaded their steps from JAX's persistent cache hung in the first step's
    collectives (two CPU processes, Python 3.12), so every process compiles afresh."""
    folder = cfg.device.compile_cache_dir
    if folder is not None and cfg.device.distributed.enabled:
        log.info("device.distributed: JAX's persistent compilation cache is off")
        return None
    return folder


def fit(run: Run, result: TrainResult) -> None:
    """Step until trainer.max_steps, logging, evaluating and saving at their cadence;
    returns once the last checkpoint is complete on disk."""
    t = run.setup.cfg.trainer
    throughput = Throughput()
    first = run.loop.step + 1
    progress = t.progress if run.tb is not None else Progress.log  # others log warnings only
    with StopRequest() as stop, ProgressDisplay(progress, t.max_steps, run.loop.step) as bar:
        stop_signal = agreed_stop(stop, run.setup.devices.mesh)
        while run.loop.step < t.max_steps:
            metrics = _one_step(run, throughput)
            step = run.loop.step
            if step == first:
                throughput.first_step_done(metrics)
            scalars = None
            if step == first or step % t.log_every == 0 or step == t.max_steps:
                scalars = _train_scalars(run, step, throughput)
                result.train_losses[step] = scalars["train/loss"]
                run.writer.write_scalars(step, scalars)
            bar.update(step, _shown(scalars))
            evaluated = _evaluations(run, step, throughput)
            if run.checkpointer.due(step) or step == t.max_steps:
                _save(run, step, evaluated)
            if signal_name := stop_signal():
                _stop(run, signal_name)
    run.checkpointer.wait()
    if run.tb is not None:
        run.tb.write_session_end(completed=True)
    result.final_step = run.loop.step
    result.final_eval_loss = run.loop.last_eval_loss
    result.final_eval_accuracy = run.loop.last_eval_accuracy


def _one_step(run: Run, throughput: Throughput) -> dict[str, jax.Array]:
    s = run.setup
    if s.algorithm is not None:
        done = s.algorithm.step(run.loop.step + 1)
        metrics, tokens = done.metrics, done.tokens
    else:
        ready = next_batch(s)
        tokens = ready.tokens
        metrics = s.train_step(s.model, s.optimizer, ready.placed)
    run.loop.step += 1
    run.loop.tokens_seen += tokens
    throughput.add_tokens(tokens)
    run.pending.append((run.loop.step, metrics))
    return metrics


def _check_finite(run: Run) -> None:
    """Raise at the first step since the last check whose loss or gradients were not
    finite. The optimizer skipped that step's update, so the state is still good, but
    nothing after it is saved."""
    flags = jax.device_get([m for _, m in run.pending])
    for (step, _), m in zip(run.pending, flags, strict=True):
        if not bool(m["finite"]):
            raise NonFiniteError(
                f"step {step}: non-finite training loss {float(m['loss'])} or gradient norm "
                f"{float(m['grad_norm'])}; the run stops here and the last checkpoint "
                f"(step {max(run.checkpointer.steps(), default=0)}) stays as it was"
            )
    run.pending.clear()


def _train_scalars(run: Run, step: int, throughput: Throughput) -> dict[str, float]:
    _, metrics = run.pending[-1]
    _check_finite(run)
    host = {k: float(v) for k, v in jax.device_get(metrics).items()}
    return {
        "train/loss": host["loss"],
        "train/grad_norm": host["grad_norm"],
        "train/lr": float(run.setup.schedule(step - 1)),
        **throughput.interval(step),
        **{k: v for k, v in host.items() if "/" in k},  # the algorithm's own (grpo/*, dpo/*)
    }


# The algorithm's scalars the progress line shows; TensorBoard and the registry get all.
_SHOWN = (
    "grpo/reward",
    "grpo/accuracy",
    "grpo/kl",
    "grpo/sampled_tokens_per_sec",
    "dpo/accuracy",
    "dpo/margin",
    "dpo/pairs",
    "dpo/sample_reward",
)


def _shown(scalars: dict[str, float] | None) -> dict[str, float] | None:
    if scalars is None:
        return None
    return {k: v for k, v in scalars.items() if not k.startswith(("grpo/", "dpo/")) or k in _SHOWN}


def _evaluations(run: Run, step: int, throughput: Throughput) -> dict[str, float]:
    """The eval loss and the answer accuracy, each when due at `step`; what was
    measured. Their time is left out of the training throughput."""
    t = run.setup.cfg.trainer
    last = step == t.max_steps
    loss_due = bool(t.eval_every and step % t.eval_every == 0) or last
    answers = run.setup.answers
    answers_due = answers is not None and answers.due(step, last)
    if not (loss_due or answers_due):
        return {}
    _check_finite(run)  # waits for the steps dispatched so far: their time is training
    started = time.perf_counter()
    out: dict[str, float] = {}
    if loss_due and (loss := _eval(run, step)) is not None:
        out["eval/loss"] = loss
    if loss_due and run.setup.algorithm is not None:
        held_out = run.setup.algorithm.evaluate()  # e.g. DPO's preference accuracy
        run.writer.write_scalars(step, held_out)
        out.update(held_out)
    if answers_due:
        out["eval/accuracy"] = _eval_answers(run, step)
    throughput.exclude(time.perf_counter() - started)
    return out


def _eval(run: Run, step: int) -> float | None:
    _check_finite(run)
    s = run.setup
    t = s.cfg.trainer
    loss = evaluate(s.model, s.data.eval_batches, s.devices, t.grad_accum, t.loss_chunk_tokens)
    if loss is not None:
        run.loop.record_eval(loss)
        run.writer.write_scalars(step, {"eval/loss": loss})
        log.info("step %d: eval loss %.4f", step, loss)
    return loss


def _eval_answers(run: Run, step: int) -> float:
    s = run.setup
    assert s.answers is not None
    report = s.answers.run(s.model, s.data.tokenizer, step)
    run.loop.last_eval_accuracy = report.accuracy
    run.writer.write_scalars(step, report.scalars())
    run.writer.write_text(step, "eval/samples", sample_table(report, s.answers.samples))
    if run.recorder is not None:
        # the checkpoint this step saves, or the run folder when it saves none
        saved = run.checkpointer.due(step) or step == s.cfg.trainer.max_steps
        target = run.checkpointer.directory / str(step) if saved else run.run_dir
        run.recorder.evaluation(report, str(target))
    log_report(report, step)
    return report.accuracy


def _save(run: Run, step: int, evaluated: dict[str, float]) -> None:
    _check_finite(run)
    s = run.setup
    meta = checkpoint_meta(
        run.loop, s.data.train.state.to_dict(), run.config, s.model, base=run.base
    )
    if s.algorithm is not None:
        meta["algorithm"] = s.algorithm.state()  # e.g. the prompt order's position
    metrics = evaluated or None
    state = train_state(s.model, s.optimizer, adapters_only=run.base is not None)
    blocked = run.checkpointer.save(step, state, meta, metrics)
    log.debug("checkpoint of step %d started; the loop waited %.3fs", step, blocked)
    if run.recorder is not None:
        run.recorder.checkpoint(step, str(run.checkpointer.directory / str(step)), metrics)


def _stop(run: Run, signal_name: str) -> None:
    """After a signal: save, flush, and leave with `Preempted`."""
    step = run.loop.step
    _save(run, step, {})
    run.checkpointer.wait()
    run.writer.flush()
    raise Preempted(signal_name, step, str(run.run_dir))


def _report(result: TrainResult, run: Run, seconds: float) -> None:
    loss = "n/a" if result.final_eval_loss is None else f"{result.final_eval_loss:.4f}"
    accuracy = result.final_eval_accuracy
    log.info(
        "finished at step %d in %.1fs; final eval loss %s%s",
        result.final_step,
        seconds,
        loss,
        "" if accuracy is None else f", eval accuracy {accuracy:.3f}",
    )
    log.info("run folder:  %s", run.run_dir.resolve())
    log.info("tensorboard: tensorboard --logdir %s", (run.run_dir / "tb").resolve())
    log.info("checkpoints: %s", run.checkpointer.directory)
