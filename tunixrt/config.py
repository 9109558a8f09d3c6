"""Typed config schemas: the single source of truth for every key a user can set.

`tunixrt.composition` registers them in Hydra's ConfigStore, so a value of the wrong
type or an unknown choice fails while Hydra composes the config. Range checks live in
`__post_init__` and run when `validate` turns a composed DictConfig (or a `TrainConfig`
built in Python) into these objects, before anything is compiled. Nothing here needs
Hydra: `train(TrainConfig(...), ...)` works from plain Python.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from tunixrt.errors import InputError


class ConfigError(InputError, ValueError):
    """A config value is outside its allowed range; the message names the key."""


def _require(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"invalid config value {key}={value!r}: expected {allowed}")


class OptimizerName(enum.StrEnum):
    adamw = "adamw"
    adafactor = "adafactor"
    lion = "lion"
    sgd = "sgd"


class Schedule(enum.StrEnum):
    constant = "constant"
    linear = "linear"
    cosine = "cosine"


class Platform(enum.StrEnum):
    auto = "auto"
    cpu = "cpu"
    gpu = "gpu"
    tpu = "tpu"


class Precision(enum.StrEnum):
    auto = "auto"  # bf16 on a GPU or TPU, fp32 on a CPU
    fp32 = "fp32"
    bf16 = "bf16"


class Resume(enum.StrEnum):
    auto = "auto"
    never = "never"
    must = "must"


class BestMode(enum.StrEnum):
    min = "min"
    max = "max"


# Decoder layout choices, shared with `tunixrt.models.decoder.DecoderConfig`.
class NormKind(enum.StrEnum):
    rms = "rms"
    layer = "layer"  # LayerNorm with a bias (GPT-2)


class PositionKind(enum.StrEnum):
    rope = "rope"
    learned = "learned"  # absolute positions added to the input (GPT-2)


class RopeScaling(enum.StrEnum):
    none = "none"
    linear = "linear"
    llama3 = "llama3"  # Llama 3.1+


class Activation(enum.StrEnum):
    silu = "silu"
    gelu = "gelu"  # erf form
    gelu_tanh = "gelu_tanh"  # Hugging Face gelu_new / gelu_pytorch_tanh


class AttentionImpl(enum.StrEnum):
    auto = "auto"  # fused where it can express the model, else reference
    fused = "fused"  # jax.nn.dot_product_attention (XLA; cuDNN when JAX picks it)
    reference = "reference"  # explicit einsums: scores [b, h, q, k] in float32


class AlgorithmName(enum.StrEnum):
    sft = "sft"  # supervised: next-token loss on the dataset's traces
    grpo = "grpo"  # group-relative policy optimisation on sampled, scored completions
    dpo = "dpo"  # direct preference optimisation on (prompt, chosen, rejected) pairs


class AdvantageScale(enum.StrEnum):
    group = "group"  # (reward - group mean) / (group std + eps)
    none = "none"  # reward - group mean (Dr. GRPO)


class Progress(enum.StrEnum):
    auto = "auto"  # a bar on a terminal, log lines otherwise
    bar = "bar"
    log = "log"


@dataclass
class DatasetConfig:
    name: str = MISSING
    # Training JSONL (traces, prompt/completion pairs or chats): a file, a glob
    # ('/data/train-*.jsonl', matches in name order) or a list of files and globs
    path: Any = MISSING
    # One weight per file of `path`: each epoch draws examples from the files in these
    # proportions (a small file repeats, a large one is sampled); null: every example
    # once per epoch, shuffled together
    mixture: list[float] | None = None
    # Where tokenized files are kept (tunixrt.data.cache), read memory-mapped by every
    # later start: auto is outputs/cache; null tokenizes in memory at every start
    cache_dir: str | None = "auto"
    # Processes that tokenize a large file into the cache; null: one per CPU core
    workers: int | None = None
    valid_path: str | None = None  # held-out JSONL for eval loss; None splits `path`
    valid_fraction: float = 0.05  # used only when valid_path is None
    # tokenizer.json with tunixrt's template tokens; a pretrained model (model.path)
    # always uses its own tokenizer and chat template instead
    tokenizer: str | None = None
    loss_on_prompt: bool = False  # True: prompt tokens count in the loss too
    pack: bool = True  # pack several examples per row (attention stays per example)
    # Train and hold out only traces of these task families (meta.family); null: all
    families: list[str] | None = None
    # > 0: train on this many traces per family drawn from the bundled generator
    # (tunixrt.data.synthetic; dataset.families, else every family, seeded by `seed`)
    # instead of `path`'s; prompts of valid_path and eval_path are never drawn
    generate: int = 0
    # The eval set (JSONL with expected answers) that goes with this dataset: eval.path's
    # default; null: no answer evaluation unless eval.path is given
    eval_path: str | None = None

    def __post_init__(self) -> None:
        _require(
            0.0 <= self.valid_fraction < 1.0,
            "dataset.valid_fraction",
            self.valid_fraction,
            "a number in [0, 1)",
        )
        _require(self.generate >= 0, "dataset.generate", self.generate, "an integer >= 0")
        paths = [self.path] if isinstance(self.path, str) else self.path
        _require(
            isinstance(paths, list) and bool(paths) and all(isinstance(p, str) for p in paths),
            "dataset.path",
            self.path,
            "a file, a glob, or a non-empty list of them",
        )
        _require(
            self.mixture is None
            or (bool(self.mixture) and min(self.mixture) >= 0 and sum(self.mixture) > 0),
            "dataset.mixture",
            self.mixture,
            "null or weights >= 0, one per file of dataset.path, not all 0",
        )
        _require(
            self.workers is None or self.workers > 0,
            "dataset.workers",
            self.workers,
            "a positive integer or null",
        )


@dataclass
class LoRAConfig:
    rank: int = 0  # 0: no adapters, every parameter trains
    alpha: float = 16.0  # adapters add (alpha / rank) * A @ B to a projection
    targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])

    def __post_init__(self) -> None:
        _require(self.rank >= 0, "model.lora.rank", self.rank, "an integer >= 0")
        allowed = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
        bad = [t for t in self.targets if t not in allowed]
        _require(not bad, "model.lora.targets", bad, f"names from {sorted(allowed)}")


@dataclass
class ModelConfig:
    """A decoder trained from scratch (every key below), or a pretrained Hugging Face
    checkpoint (`path`; its config.json decides the architecture, and of the keys below
    only `family`, `remat`, `attention` and `lora` apply). The layout keys are those of
    `tunixrt.models.decoder.DecoderConfig`, which is derived from this; the defaults give
    the Llama layout."""

    name: str = MISSING
    # A local Hugging Face checkpoint folder: the model (architecture, weights) and the
    # tokenizer come from it.
    path: str | None = None
    # With `path`: the model_type it must hold (e.g. qwen2; null: any). From scratch: the
    # Hugging Face model_type `tunixrt export` writes (null: llama).
    family: str | None = None
    remat: bool = False  # recompute activations in the backward pass: less memory, more time
    # How attention computes; fused cannot express attn_softcap, which auto then leaves
    # to the reference einsums
    attention: AttentionImpl = AttentionImpl.auto
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    vocab_size: int | None = None  # None: the tokenizer's vocabulary size
    dim: int = 256
    n_layers: int = 6
    n_heads: int = 8
    n_kv_heads: int = 4
    ffn_dim: int = 768
    max_seq_len: int = 2048
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = True
    init_std: float = 0.02
    # Family switches; each names the family that needs it.
    head_dim: int | None = None  # head width when it is not dim / n_heads (Gemma, Qwen3)
    norm: NormKind = NormKind.rms
    norm_offset: float = 0.0  # applied scale = offset + weight (Gemma: 1)
    sandwich_norm: bool = False  # also normalise attention and MLP outputs (Gemma 2)
    qk_norm: bool = False  # RMSNorm over each head of q and k before RoPE (Qwen3)
    activation: Activation = Activation.silu
    gated_mlp: bool = True  # down(act(gate(x)) * up(x)); false: down(act(up(x))) (GPT-2)
    qkv_bias: bool = False  # biases on q, k, v (Qwen2, GPT-2)
    out_bias: bool = False  # bias on the attention output projection (GPT-2)
    mlp_bias: bool = False  # biases on the MLP projections (GPT-2)
    position: PositionKind = PositionKind.rope
    rope_scaling: RopeScaling = RopeScaling.none
    rope_factor: float = 1.0
    rope_low_freq_factor: float = 1.0  # llama3 scaling
    rope_high_freq_factor: float = 4.0  # llama3 scaling
    rope_original_max_len: int = 8192  # llama3 scaling: the pretraining context
    embed_scale: bool = False  # input embeddings times sqrt(dim) (Gemma)
    query_scale: float | None = None  # scores / sqrt(this), not sqrt(head_dim) (Gemma 2)
    attn_softcap: float | None = None  # scores -> cap * tanh(scores / cap) (Gemma 2)
    final_softcap: float | None = None  # the same on the output logits (Gemma 2)
    sliding_window: int | None = None  # a query sees keys less than this many tokens back
    sliding_layers: list[int] | None = None  # layers using the window; null: all

    def __post_init__(self) -> None:
        for key in ("dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim", "max_seq_len"):
            value = getattr(self, key)
            _require(value > 0, f"model.{key}", value, "a positive integer")
        _require(
            self.vocab_size is None or self.vocab_size > 0,
            "model.vocab_size",
            self.vocab_size,
            "a positive integer or null",
        )
        _require(
            self.head_dim is not None or self.dim % self.n_heads == 0,
            "model.dim",
            self.dim,
            f"a multiple of model.n_heads={self.n_heads} (or set model.head_dim)",
        )
        _require(
            self.n_heads % self.n_kv_heads == 0,
            "model.n_kv_heads",
            self.n_kv_heads,
            f"a divisor of model.n_heads={self.n_heads}",
        )
        _require(self.init_std > 0, "model.init_std", self.init_std, "a positive number")
        for key in ("head_dim", "query_scale", "attn_softcap", "final_softcap", "sliding_window"):
            value = getattr(self, key)
            _require(value is None or value > 0, f"model.{key}", value, "a positive number or null")
        _require(
            self.attention != AttentionImpl.fused or self.attn_softcap is None,
            "model.attention",
            str(self.attention),
            f"auto or reference with model.attn_softcap={self.attn_softcap} (the fused "
            "attention has no soft-cap)",
        )


@dataclass
class OptimizerConfig:
    name: OptimizerName = MISSING
    lr: float = 1e-3  # peak learning rate
    schedule: Schedule = Schedule.cosine
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1  # final lr / peak lr for linear and cosine decay
    # Steps over which the schedule runs; null: trainer.max_steps of the run's first start,
    # so extending max_steps on resume continues the schedule instead of reshaping it.
    decay_steps: int | None = None
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    b1: float = 0.9
    b2: float = 0.95
    eps: float = 1e-8
    momentum: float = 0.9  # sgd only
    nesterov: bool = False  # sgd only

    def __post_init__(self) -> None:
        _require(self.lr > 0, "optimizer.lr", self.lr, "a positive number")
        _require(
            self.warmup_steps >= 0, "optimizer.warmup_steps", self.warmup_steps, "an integer >= 0"
        )
        _require(
            0.0 <= self.min_lr_ratio <= 1.0,
            "optimizer.min_lr_ratio",
            self.min_lr_ratio,
            "a number in [0, 1]",
        )
        _require(
            self.decay_steps is None or self.decay_steps > 0,
            "optimizer.decay_steps",
            self.decay_steps,
            "a positive integer or null",
        )
        _require(
            self.weight_decay >= 0, "optimizer.weight_decay", self.weight_decay, "a number >= 0"
        )
        _require(
            self.grad_clip >= 0,
            "optimizer.grad_clip",
            self.grad_clip,
            "a number >= 0 (0 disables clipping)",
        )
        for key in ("b1", "b2", "momentum"):
            value = getattr(self, key)
            _require(0.0 <= value < 1.0, f"optimizer.{key}", value, "a number in [0, 1)")


@dataclass
class MeshConfig:
    """How the devices split into the mesh axes (`tunixrt.sharding`): batches split over
    data x fsdp, parameters and optimizer state over fsdp (the model width) and tensor
    (heads, MLP and vocabulary). The product is the device count; one axis may be -1,
    the devices the others leave."""

    data: int = -1
    fsdp: int = 1
    tensor: int = 1

    def __post_init__(self) -> None:
        sizes = dataclasses.asdict(self)
        for axis, size in sizes.items():
            _require(
                size == -1 or size >= 1,
                f"device.mesh.{axis}",
                size,
                "a positive integer, or -1 for the devices the other axes leave",
            )
        rest = [axis for axis, size in sizes.items() if size == -1]
        _require(
            len(rest) <= 1,
            f"device.mesh.{rest[-1]}" if rest else "device.mesh",
            -1,
            f"at most one axis at -1 (the rest), but {' and '.join(rest)} are",
        )


@dataclass
class DeviceConfig:
    platform: Platform = Platform.auto
    # compute dtype (parameters and optimizer state stay float32); auto: bf16 on a GPU or
    # TPU, fp32 on a CPU (where XLA's bf16 matmuls are slower than fp32)
    precision: Precision = Precision.auto
    preallocate: bool = False  # GPU: reserve memory up front (XLA_PYTHON_CLIENT_PREALLOCATE)
    mem_fraction: float | None = None  # GPU: share of device memory JAX may use
    # GPU: XLA_FLAGS --xla_gpu_deterministic_ops=true, so the same batches give the same
    # bits (no atomics in reductions, deterministic cuDNN/cuBLAS picks) and a resumed run
    # repeats the uninterrupted one exactly; slower. Set before JAX starts its backend.
    deterministic: bool = False
    # JAX's persistent compilation cache, so a restart skips most compilation; null: off
    compile_cache_dir: str | None = "outputs/.jax_cache"
    mesh: MeshConfig = field(default_factory=MeshConfig)

    def __post_init__(self) -> None:
        _require(
            self.mem_fraction is None or 0.0 < self.mem_fraction <= 1.0,
            "device.mem_fraction",
            self.mem_fraction,
            "a number in (0, 1] or null",
        )


@dataclass
class TrainerConfig:
    max_steps: int = 300
    batch_size: int = 16  # sequences per optimizer step, summed over grad_accum micro-batches
    seq_len: int = 256  # tokens per row after padding or packing
    grad_accum: int = 1
    eval_every: int = 100  # steps; 0 evaluates only at the end
    eval_batches: int = 4
    log_every: int = 10
    progress: Progress = Progress.auto
    # The loss applies the output head to about this many tokens at a time (a slice of
    # the sequence in every row), so one chunk's float32 logits [tokens, vocab] exist at
    # once instead of a micro-batch's; 0: all at once
    loss_chunk_tokens: int = 1024

    def __post_init__(self) -> None:
        for key in (
            "max_steps",
            "batch_size",
            "seq_len",
            "grad_accum",
            "log_every",
            "eval_batches",
        ):
            value = getattr(self, key)
            _require(value > 0, f"trainer.{key}", value, "a positive integer")
        _require(self.eval_every >= 0, "trainer.eval_every", self.eval_every, "an integer >= 0")
        _require(
            self.loss_chunk_tokens >= 0,
            "trainer.loss_chunk_tokens",
            self.loss_chunk_tokens,
            "an integer >= 0 (0: no chunking)",
        )
        _require(
            self.batch_size % self.grad_accum == 0,
            "trainer.batch_size",
            self.batch_size,
            f"a multiple of trainer.grad_accum={self.grad_accum}",
        )


@dataclass
class EvalConfig:
    """Answer evaluation: generate for the items of an eval set and score the answers
    (tunixrt.evaluation), during training and in `tunixrt eval`."""

    path: str | None = None  # eval JSONL (or traces); null: dataset.eval_path
    every: int | None = None  # steps between evaluations; null: trainer.eval_every
    max_examples: int = 64  # the first N items (after `categories`); 0: no evaluation
    categories: list[str] | None = None  # only these categories; null: dataset.families
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0: greedy
    top_k: int | None = None
    top_p: float | None = None
    seed: int = 0  # sampling seed (temperature > 0)
    batch_size: int = 32  # prompts generated together
    stop: list[str] = field(default_factory=list)  # cut the text at the first of these
    samples: int = 4  # items shown in TensorBoard's sample table

    def __post_init__(self) -> None:
        _require(self.every is None or self.every >= 0, "eval.every", self.every, "an integer >= 0")
        _require(self.max_examples >= 0, "eval.max_examples", self.max_examples, "an integer >= 0")
        for key in ("max_new_tokens", "batch_size"):
            value = getattr(self, key)
            _require(value > 0, f"eval.{key}", value, "a positive integer")
        _require(self.temperature >= 0, "eval.temperature", self.temperature, "a number >= 0")
        _require(
            self.top_k is None or self.top_k > 0, "eval.top_k", self.top_k, "a positive integer"
        )
        _require(
            self.top_p is None or 0.0 < self.top_p <= 1.0,
            "eval.top_p",
            self.top_p,
            "a number in (0, 1] or null",
        )
        _require(self.samples >= 0, "eval.samples", self.samples, "an integer >= 0")


def _default_rewards() -> dict[str, float]:
    return {"correct": 1.0, "format": 0.1, "length": 0.0}


REWARD_NAMES = ("correct", "format", "length")


@dataclass
class AlgorithmConfig:
    """What training optimises: `sft` (the dataset's traces, next-token loss) or `grpo`
    (tunixrt.algorithms: completions sampled from the model for prompts with known
    answers, rewarded, and reinforced group-relatively). The grpo keys are read only
    when name=grpo."""

    name: AlgorithmName = AlgorithmName.sft
    # dpo: a JSONL of {"prompt", "chosen", "rejected"}; valid_fraction of it is held out
    # for the preference accuracy reported at each evaluation
    pairs: str | None = None
    valid_fraction: float = 0.1
    # grpo: prompts with expected answers: an eval JSONL or a trace JSONL; null: the training
    # traces of the dataset (dataset.path, or dataset.generate's), within dataset.families
    prompts: str | None = None
    prompts_per_step: int = 8  # dpo: pairs per step
    group_size: int = 8  # completions sampled per prompt
    iterations: int = (
        1  # optimizer steps on each sampled batch (the ratio leaves 1 after the first)
    )
    max_new_tokens: int = 128
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    eps_low: float = 0.2  # the ratio is clipped to [1 - eps_low, 1 + eps_high]
    eps_high: float = 0.28  # above eps_low: DAPO's clip-higher
    # grpo: weight of the KL penalty against the starting weights (0: none); dpo: the
    # scale of the implicit reward beta * (log pi - log ref)
    beta: float = 0.04
    advantage_scale: AdvantageScale = AdvantageScale.group
    # reward name -> weight; correct: the eval scorer's verdict, format: the completion
    # ended and marked its answer, length: soft penalty over the last length_buffer tokens
    rewards: dict[str, float] = field(default_factory=_default_rewards)
    length_buffer: int = 32

    def __post_init__(self) -> None:
        for key in ("prompts_per_step", "group_size", "iterations", "max_new_tokens"):
            value = getattr(self, key)
            _require(value > 0, f"algorithm.{key}", value, "a positive integer")
        _require(self.temperature > 0, "algorithm.temperature", self.temperature, "a number > 0")
        _require(
            self.top_k is None or self.top_k > 0,
            "algorithm.top_k",
            self.top_k,
            "a positive integer",
        )
        _require(
            self.top_p is None or 0.0 < self.top_p <= 1.0,
            "algorithm.top_p",
            self.top_p,
            "a number in (0, 1] or null",
        )
        for key in ("eps_low", "eps_high", "beta"):
            value = getattr(self, key)
            _require(value >= 0, f"algorithm.{key}", value, "a number >= 0")
        _require(self.eps_low < 1, "algorithm.eps_low", self.eps_low, "a number below 1")
        unknown = sorted(set(self.rewards) - set(REWARD_NAMES))
        _require(not unknown, "algorithm.rewards", unknown, f"rewards among {list(REWARD_NAMES)}")
        _require(
            any(w != 0 for w in self.rewards.values()),
            "algorithm.rewards",
            dict(self.rewards),
            "at least one nonzero weight",
        )
        _require(
            self.length_buffer >= 0,
            "algorithm.length_buffer",
            self.length_buffer,
            "an integer >= 0",
        )
        _require(
            0.0 <= self.valid_fraction < 1.0,
            "algorithm.valid_fraction",
            self.valid_fraction,
            "a number in [0, 1)",
        )
        if self.name is AlgorithmName.dpo:
            _require(self.pairs is not None, "algorithm.pairs", self.pairs, "a JSONL file of pairs")
            _require(self.beta > 0, "algorithm.beta", self.beta, "a number > 0 for dpo")


# Metrics known at save time, with the direction that is better: evaluation runs before
# the save of the same step.
METRIC_MODES = {"eval/loss": "min", "eval/accuracy": "max", "train/loss": "min"}
BEST_METRICS = (None, "eval/loss", "eval/accuracy")


@dataclass
class CheckpointConfig:
    every_steps: int = 100  # 0 saves only at the end
    keep: int = 3  # the newest checkpoints kept
    # eval/loss or eval/accuracy: also keep the best checkpoint by it
    keep_best_metric: str | None = None
    best_mode: BestMode | None = None  # null: the metric's own (loss min, accuracy max)

    def __post_init__(self) -> None:
        _require(
            self.every_steps >= 0, "checkpoint.every_steps", self.every_steps, "an integer >= 0"
        )
        _require(self.keep > 0, "checkpoint.keep", self.keep, "a positive integer")
        _require(
            self.keep_best_metric in BEST_METRICS,
            "checkpoint.keep_best_metric",
            self.keep_best_metric,
            f"one of {list(BEST_METRICS)}",
        )

    @property
    def mode(self) -> str:
        """min or max: which value of keep_best_metric is best."""
        if self.best_mode is not None:
            return self.best_mode.value
        return METRIC_MODES.get(self.keep_best_metric or "eval/loss", "min")


@dataclass
class RegistryConfig:
    # auto: $TUNIXRT_REGISTRY_URL, else SQLite in outputs/registry.db; any SQLAlchemy URL
    # (postgresql+psycopg://user@host/db for a shared registry); null: not registered
    url: str | None = "auto"


@dataclass
class RunConfig:
    name: str | None = None  # a stable run folder name; null uses a timestamp
    resume: Resume = Resume.auto


INIT_KEYS = ("from",)


def _no_init() -> dict[str, str | None]:
    return {"from": None}


# Metrics a run reports at its end, e.g. to a sweeper (`optimized_metric`).
FINAL_METRICS = ("eval/loss", "train/loss", "eval/accuracy")


@dataclass
class TrainConfig:
    seed: int = 0
    optimized_metric: str = "eval/loss"  # what the task returns to Hydra's sweepers
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    device: DeviceConfig = field(default_factory=DeviceConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    run: RunConfig = field(default_factory=RunConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    # Weights to start from (a dict because `from` cannot name a dataclass field):
    # init.from = a registered run id, a run folder, a checkpoint step folder
    # (RUN/checkpoints/STEP) or a Hugging Face folder; null starts from model.* as usual.
    # Only a fresh start reads it: a resume continues from the run's own checkpoints.
    init: dict[str, str | None] = field(default_factory=_no_init)

    @property
    def init_from(self) -> str | None:
        return self.init.get("from")

    def __post_init__(self) -> None:
        unknown = sorted(set(self.init) - set(INIT_KEYS))
        _require(not unknown, "init", unknown, f"only the keys {list(INIT_KEYS)}")
        if self.model.path is None:  # a pretrained model's limit is checked when it loads
            _require(
                self.trainer.seq_len <= self.model.max_seq_len,
                "trainer.seq_len",
                self.trainer.seq_len,
                f"at most model.max_seq_len={self.model.max_seq_len}, the longest input "
                "the model accepts",
            )
        _require(
            self.optimized_metric in FINAL_METRICS,
            "optimized_metric",
            self.optimized_metric,
            f"one of {list(FINAL_METRICS)}",
        )


def validate(cfg: DictConfig | TrainConfig | Mapping[str, Any]) -> TrainConfig:
    """Typed objects with every range check run. A `TrainConfig` built in Python, or a
    plain dict (a config stored as JSON), goes through OmegaConf too, so a wrong type or
    a missing value (`???`) names its key as it does on the command line; keys a dict
    lacks take their defaults."""
    try:
        node: Any = cfg
        if not isinstance(cfg, DictConfig):
            # merged as plain values onto the schema, so an error names the dotted key
            plain = dataclasses.asdict(cfg) if isinstance(cfg, TrainConfig) else dict(cfg)
            node = OmegaConf.merge(OmegaConf.structured(TrainConfig), plain)
        obj = OmegaConf.to_object(node)
    except OmegaConfBaseException as err:
        # the first line says what is wrong; the rest repeats the key and object types
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        key = getattr(err, "full_key", None)
        raise ConfigError(f"invalid config value {key}: {reason}" if key else reason) from None
    if not isinstance(obj, TrainConfig):
        raise ConfigError(f"expected a TrainConfig, got {type(obj).__name__}")
    return obj
