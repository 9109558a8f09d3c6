"""Tiny random Hugging Face checkpoints of every supported family, built locally.

Each family gets a 2-layer, width-64, vocab-128 float32 model with randomised weights
(larger than HF's init, so attention is sharp and softcaps bite), saved with
`save_pretrained` into a temporary folder next to a word-level tokenizer, as a real
checkpoint folder would be. Nothing is downloaded.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers

transformers.utils.logging.disable_progress_bar()

VOCAB, SEQ, WINDOW = 128, 24, 8  # sequences run past the sliding window

_COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
)

# family name -> (transformers config class name, its arguments)
FAMILIES: dict[str, tuple[str, dict[str, Any]]] = {
    "llama3": (
        "LlamaConfig",
        _COMMON
        | dict(
            tie_word_embeddings=True,
            rope_parameters=dict(
                rope_type="llama3",
                rope_theta=10000.0,
                factor=8.0,
                low_freq_factor=1.0,
                high_freq_factor=4.0,
                # Head width 16: wavelengths of 6 to 20k tokens fall in all three bands.
                original_max_position_embeddings=32,
            ),
        ),
    ),
    "llama2_bias_linear": (
        "LlamaConfig",
        _COMMON
        | dict(
            attention_bias=True,
            mlp_bias=True,
            rope_parameters=dict(rope_type="linear", rope_theta=500.0, factor=2.0),
        ),
    ),
    "mistral": ("MistralConfig", _COMMON | dict(sliding_window=WINDOW)),
    "qwen2": ("Qwen2Config", _COMMON | dict(tie_word_embeddings=True)),
    "qwen3": ("Qwen3Config", _COMMON | dict(head_dim=32)),
    "gemma": ("GemmaConfig", _COMMON | dict(head_dim=32, num_key_value_heads=1)),
    "gemma2": (
        "Gemma2Config",
        _COMMON
        | dict(
            head_dim=16,
            query_pre_attn_scalar=24,
            sliding_window=WINDOW,
            attn_logit_softcapping=5.0,
            final_logit_softcapping=8.0,
        ),
    ),
    "gpt2": (
        "GPT2Config",
        dict(
            vocab_size=VOCAB,
            n_embd=64,
            n_layer=2,
            n_head=4,
            n_positions=32,
            bos_token_id=1,
            eos_token_id=2,
        ),
    ),
}


@dataclasses.dataclass
class HFCase:
    family: str
    path: Path  # the saved checkpoint folder
    model: Any  # the transformers model (eval mode, float32)
    tokens: np.ndarray  # int32 [2, SEQ]
    logits: np.ndarray  # the transformers model's float32 logits [2, SEQ, VOCAB] on tokens


def build_hf_model(family: str, seed: int = 0) -> Any:
    """A random transformers model of `family` with weights scaled up from HF's init."""
    class_name, kwargs = FAMILIES[family]
    config = getattr(transformers, class_name)(**kwargs)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    gemma = family.startswith("gemma")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1 and ("norm" in name or ".ln_" in name):
                # Gemma stores norm weights as w - 1; others store w.
                p.copy_((0.0 if gemma else 1.0) + 0.2 * torch.randn_like(p))
            elif p.ndim == 1:
                p.copy_(0.1 * torch.randn_like(p))  # biases
            else:
                p.copy_(0.15 * torch.randn_like(p))
    return model.eval()


def random_tokens(batch: int = 2, seq: int = SEQ, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, VOCAB, (batch, seq), dtype=np.int32)


def hf_logits(model: Any, tokens: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(input_ids=torch.from_numpy(tokens.astype(np.int64))).logits.numpy()


def save_tokenizer(folder: Path) -> None:
    """A word-level tokenizer over "t0" .. "t127" with a chat template."""
    vocab = {f"t{i}": i for i in range(VOCAB)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="t0"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.save(str(folder / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "t1",
        "eos_token": "t2",
        "pad_token": "t0",
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    (folder / "chat_template.jinja").write_text(
        "{% for m in messages %}{{ m.content }} {% endfor %}"
    )


def save_hf_case(family: str, folder: Path, **save_kwargs: Any) -> HFCase:
    model = build_hf_model(family)
    model.save_pretrained(folder, **save_kwargs)
    save_tokenizer(folder)
    tokens = random_tokens(seed=1)
    return HFCase(family, folder, model, tokens, hf_logits(model, tokens))


def build_hf_cases(root: Path) -> dict[str, HFCase]:
    """family -> its checkpoint folder under root and transformers model (about 2 s)."""
    return {family: save_hf_case(family, root / family) for family in FAMILIES}
