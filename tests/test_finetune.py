"""Fine-tuning a pretrained Hugging Face checkpoint: its tokenizer and chat template,
full and LoRA training through the real config, and `tunixrt export` read back by
transformers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import orbax.checkpoint as ocp
import pytest
import torch
import transformers
from safetensors.numpy import load_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from tests.helpers.config import compose_train
from tests.helpers.data import addition_traces, write_jsonl
from tunixrt.cli.main import main as tunixrt_cli
from tunixrt.data import DataError
from tunixrt.data.chat import ChatTokenizer
from tunixrt.data.render import Rendered
from tunixrt.models.hf import CheckpointError, load_pretrained
from tunixrt.train.loop import train

pytestmark = pytest.mark.slow
TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    """A tiny random Qwen2 checkpoint with a byte-level BPE tokenizer and a chat template."""
    folder = tmp_path_factory.mktemp("qwen2_tiny")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(
        [t["prompt"] + " " + t["steps"][0]["content"] for t in addition_traces(300)], trainer
    )
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "eos_token": "<|im_end|>",
                "pad_token": "<|endoftext|>",
                "chat_template": TEMPLATE,
            }
        )
    )
    config = transformers.Qwen2Config(
        vocab_size=320,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        eos_token_id=2,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def traces(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("data") / "train.jsonl", addition_traces(64))


def overrides(pretrained: Path, traces: Path, *extra: str) -> list[str]:
    return [
        "model=hf",
        f"model.path={pretrained}",
        "dataset=jsonl",
        f"dataset.path={traces}",
        "dataset.valid_fraction=0.1",
        "trainer.max_steps=4",
        "trainer.batch_size=4",
        "trainer.seq_len=64",
        "trainer.log_every=1",
        "trainer.eval_every=4",
        "checkpoint.every_steps=4",
        "optimizer.warmup_steps=0",
        "optimizer.lr=3e-3",
        "trainer.progress=log",
        *extra,
    ]


def test_chat_template_frames_the_prompt_and_the_loss_covers_the_answer(pretrained):
    tok = ChatTokenizer.from_folder(pretrained)
    assert tok.has_chat_template
    enc = tok.encode(Rendered("What is 2 + 3?", "2 + 3 = 5.", "5"))
    prompt = "<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n"
    cut = len(tok.encode_text(prompt))
    assert enc.ids[:cut].tolist() == tok.encode_text(prompt)
    assert not enc.mask[:cut].any() and enc.mask[cut:].all()
    assert tok.decode(enc.ids[cut:-1].tolist()) == "2 + 3 = 5.\n5"
    assert enc.ids[-1] == tok.eos_id


def test_full_finetune_trains_and_lowers_the_loss(pretrained, traces, tmp_path):
    result = train(compose_train(overrides(pretrained, traces)), tmp_path)
    losses = list(result.train_losses.values())
    assert len(losses) == 4 and all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_lora_run_exports_base_plus_adapter_product(pretrained, traces, tmp_path):
    run_dir = tmp_path / "run"
    extra = ["model.lora.rank=4", "model.lora.alpha=8", "model.lora.targets=[q_proj,v_proj]"]
    train(compose_train(overrides(pretrained, traces, *extra)), run_dir)
    assert tunixrt_cli(["export", str(run_dir), str(tmp_path / "hf")]) == 0

    with ocp.CheckpointManager(run_dir / "checkpoints", item_names=("state", "meta")) as m:
        restored = m.restore(4, args=ocp.args.Composite(state=ocp.args.PyTreeRestore()))
    layers = restored.state["model"]["layers"]
    exported = load_file(str(tmp_path / "hf" / "model.safetensors"))
    original = load_file(str(pretrained / "model.safetensors"))
    for i in (0, 1):
        q = layers[str(i)]["attn"]["q_proj"]
        merged = np.asarray(q["kernel"]) + (8 / 4) * np.asarray(q["lora_a"]) @ np.asarray(
            q["lora_b"]
        )
        np.testing.assert_allclose(
            exported[f"model.layers.{i}.self_attn.q_proj.weight"], merged.T, atol=1e-6
        )
        assert np.abs(np.asarray(q["lora_b"])).max() > 0  # the adapters trained
        for name in ("k_proj.weight", "o_proj.weight"):  # untargeted: the base, unchanged
            key = f"model.layers.{i}.self_attn.{name}"
            np.testing.assert_array_equal(exported[key], original[key])


def test_scratch_run_export_gives_transformers_the_same_logits(tmp_path):
    run_dir = tmp_path / "run"
    train(compose_train(["debug=fast", "trainer.max_steps=2", "registry.url=null"]), run_dir)
    assert tunixrt_cli(["export", str(run_dir / "checkpoints" / "2"), str(tmp_path / "hf")]) == 0
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    ours = load_pretrained(tmp_path / "hf")
    tokens = np.random.default_rng(0).integers(0, 2048, (2, 16), dtype=np.int32)
    with torch.no_grad():
        want = hf(input_ids=torch.from_numpy(tokens.astype(np.int64))).logits.numpy()
    np.testing.assert_allclose(np.asarray(ours(tokens)), want, atol=1e-4)
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert tok.eos_token == "<|eos|>" and tok.decode(tok("2 + 3 = 5")["input_ids"]) == "2 + 3 = 5"


def test_pickle_only_checkpoint_is_refused(tmp_path, traces, pretrained):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (folder / name).write_bytes((pretrained / name).read_bytes())
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04")  # a pickle: never loaded
    with pytest.raises(CheckpointError, match="safetensors"):
        train(compose_train(overrides(folder, traces)), tmp_path / "run")


def test_broken_tokenizer_names_the_file(tmp_path, traces):
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(DataError, match=r"tokenizer.json: not a tokenizer"):
        train(compose_train(overrides(tmp_path, traces)), tmp_path / "run")
