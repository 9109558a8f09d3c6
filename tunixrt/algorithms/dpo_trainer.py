"""DPO steps of the training loop (algorithm=dpo). `DpoSteps` is what every DPO step
does: score a batch of pairs' chosen and rejected completions under the policy and the
reference (the starting weights, tunixrt.algorithms.reference), and step on DPO's loss
(tunixrt.algorithms.dpo). `DpoTrainer` takes its pairs from algorithm.pairs,
`prompts_per_step` a step; a held-out share of them gives the preference accuracy and
margin at every evaluation, and the pair order is saved with each checkpoint. Pairs
sampled on policy instead (algorithm.pairs=null) are tunixrt.algorithms.dpo_online's."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from flax import nnx

from tunixrt.algorithms.dpo import PreferenceLoss, dpo_loss
from tunixrt.algorithms.logprobs import sequence_logprobs, token_logprobs
from tunixrt.algorithms.preferences import (
    EncodedPair,
    PairBatch,
    encode_pairs,
    pair_batch,
    read_pairs,
)
from tunixrt.algorithms.prompts import PromptOrder
from tunixrt.algorithms.reference import Reference
from tunixrt.algorithms.trainer import Context, OrderedStep, StepResult
from tunixrt.algorithms.update import descend
from tunixrt.config import ConfigError
from tunixrt.models import Decoder

# inputs, targets [2 * pairs, width] int32; mask, ref_logp [2 * pairs, width] float32;
# weights [pairs] float32 (0: a padding pair)
DpoBatch = dict[str, jax.Array]
DpoStep = Callable[[nnx.Module, nnx.Optimizer, DpoBatch], dict[str, jax.Array]]


def _split(logp: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Summed completion log-probs of the chosen rows (first half) and rejected ones."""
    total = sequence_logprobs(logp, mask)
    half = total.shape[0] // 2
    return total[:half], total[half:]


def _loss(logp: jax.Array, batch: DpoBatch, beta: float) -> PreferenceLoss:
    chosen, rejected = _split(logp, batch["mask"])
    ref_chosen, ref_rejected = _split(batch["ref_logp"], batch["mask"])
    return dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta=beta, weights=batch["weights"])


@functools.cache
def make_dpo_step(wrt: type[nnx.Variable], *, beta: float) -> DpoStep:
    """A compiled step on DPO's loss that updates the `wrt` variables."""

    @nnx.jit(donate_argnums=(0, 1))
    def step(model: nnx.Module, optimizer: nnx.Optimizer, batch: DpoBatch) -> dict[str, jax.Array]:
        def objective(m: nnx.Module) -> tuple[jax.Array, PreferenceLoss]:
            out = _loss(token_logprobs(m(batch["inputs"]), batch["targets"]), batch, beta)
            return out.loss, out

        out, update = descend(model, optimizer, wrt, objective)
        return {**update, "margin": out.margin, "accuracy": out.accuracy}

    return step


@nnx.jit(static_argnames="beta")
def _held_out(model: Decoder, batch: DpoBatch, beta: float) -> PreferenceLoss:
    return _loss(token_logprobs(model(batch["inputs"]), batch["targets"]), batch, beta)


class DpoSteps(OrderedStep):
    """DPO's state beside the model and optimizer, whatever the pairs' source: the
    reference and the compiled step. Subclasses give the pairs and their order."""

    def __init__(self, ctx: Context) -> None:
        a = ctx.cfg.algorithm
        self.model, self.optimizer, self.beta = ctx.model, ctx.optimizer, a.beta
        self.per_step, self.pad_id = a.prompts_per_step, ctx.tokenizer.eos_id
        self.put = ctx.devices.put_batch
        # DPO always has a reference: its implicit reward is measured against it
        self.start = self.reference = Reference(ctx.model, lora=ctx.cfg.model.lora.rank > 0)
        self._step = make_dpo_step(ctx.wrt, beta=a.beta)

    def _device_batch(self, host: PairBatch) -> DpoBatch:
        # every process built the same pairs: each device takes its share of the rows
        inputs, targets = self.put(host.inputs), self.put(host.targets)
        return {
            "inputs": inputs,
            "targets": targets,
            "mask": self.put(host.mask),
            # [pairs]: replicated unless the pairs split as evenly as the rows
            "weights": self.put(host.weights),
            "ref_logp": self.start.logprobs(inputs, targets),
        }

    def _train(self, host: PairBatch) -> dict[str, Any]:
        """One optimizer step on the batch's pairs: the loop's metrics and DPO's own."""
        out = jax.device_get(self._step(self.model, self.optimizer, self._device_batch(host)))
        return {
            "loss": float(out["loss"]),
            "grad_norm": float(out["grad_norm"]),
            "finite": bool(out["finite"]),
            "dpo/accuracy": float(out["accuracy"]),
            "dpo/margin": float(out["margin"]),
        }


class DpoTrainer(DpoSteps):
    """DPO on the pairs of algorithm.pairs, less a held-out share for evaluation."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        cfg, tokenizer = ctx.cfg, ctx.tokenizer
        a = cfg.algorithm
        assert a.pairs is not None  # the on-policy source is OnPolicyDpoTrainer's
        encoded = encode_pairs(read_pairs(a.pairs), tokenizer)
        held = np.random.default_rng([cfg.seed, 1]).permutation(len(encoded))
        n_valid = int(round(a.valid_fraction * len(encoded)))
        self.valid = [encoded[i] for i in sorted(held[:n_valid])]
        self.train = [encoded[i] for i in sorted(held[n_valid:])]
        if not self.train:
            raise ConfigError(f"algorithm.pairs={a.pairs}: no pair is left to train on")
        self.width = cfg.trainer.seq_len
        longest = max(max(len(p.chosen), len(p.rejected)) for p in encoded)
        if longest - 1 > self.width:
            raise ConfigError(
                f"invalid config value trainer.seq_len={self.width}: the longest pair of "
                f"{a.pairs} renders to {longest} tokens"
            )
        self.order = PromptOrder(len(self.train), cfg.seed)

    def _pairs(self, pairs: list[EncodedPair]) -> PairBatch:
        """A batch of `prompts_per_step` pairs (fewer padded): one shape a run."""
        return pair_batch(pairs, width=self.width, pad_id=self.pad_id, count=self.per_step)

    def step(self, n: int) -> StepResult:
        host = self._pairs([self.train[i] for i in self.order.take(self.per_step)])
        return StepResult(self._train(host), host.tokens)

    def evaluate(self) -> dict[str, float]:
        """Loss, preference accuracy and margin over the held-out pairs (pair-weighted)."""
        if not self.valid:
            return {}
        sums = np.zeros(3)
        for start in range(0, len(self.valid), self.per_step):
            chunk = self.valid[start : start + self.per_step]
            batch = self._device_batch(self._pairs(chunk))
            out = jax.device_get(_held_out(self.model, batch, self.beta))
            sums += len(chunk) * np.array([out.loss, out.accuracy, out.margin], np.float64)
        loss, accuracy, margin = sums / len(self.valid)
        return {"dpo/valid_loss": loss, "dpo/valid_accuracy": accuracy, "dpo/valid_margin": margin}
