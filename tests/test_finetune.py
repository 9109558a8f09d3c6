"""Fine-tuning a pretrained Hugging Face checkpoint: its tokenizer and chat template,
full and LoRA training through the real config (a LoRA checkpoint holds the adapters and
a hashed reference to the base), exact LoRA resume, and `tunixrt export` read back by
transformers."""

from __future__ import annotations

import json
import logging
import re
import shutil
import sys
from contextlib import closing
from datetime import date
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
import torch
import transformers
from safetensors.numpy import load_file, save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from tests.helpers import chat_templates
from tests.helpers.config import compose_train
from tests.helpers.data import addition_traces, write_jsonl
from tests.helpers.tensorboard import read_scalars
from tunixrt.checkpoint import Checkpointer
from tunixrt.cli.main import main as tunixrt_cli
from tunixrt.config import ConfigError
from tunixrt.data import DataError
from tunixrt.data.chat import ChatTokenizer
from tunixrt.data.render import Rendered
from tunixrt.export import export, load_model
from tunixrt.lora_base import base_sha256
from tunixrt.models.hf import CheckpointError, load_pretrained
from tunixrt.train.loop import TrainResult, train

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


# LoRA on q and v; the lr schedule spans 8 steps, so 4 steps then 4 more equal 8 at once
LORA = (
    "model.lora.rank=4",
    "model.lora.alpha=8",
    "model.lora.targets=[q_proj,v_proj]",
    "optimizer.decay_steps=8",
)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, pretrained, traces) -> tuple[Path, TrainResult]:
    run_dir = tmp_path_factory.mktemp("full") / "run"
    return run_dir, train(compose_train(overrides(pretrained, traces)), run_dir)


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, pretrained, traces) -> Path:
    """A LoRA run of 4 steps, checkpointed at step 4."""
    run_dir = tmp_path_factory.mktemp("lora") / "run"
    train(compose_train(overrides(pretrained, traces, *LORA)), run_dir)
    return run_dir


def checkpoint(run_dir: Path, step: int) -> tuple[dict, dict]:
    """The state (arrays as saved) and meta of a step, read with plain orbax."""
    args = ocp.args.Composite(state=ocp.args.PyTreeRestore(), meta=ocp.args.JsonRestore())
    with ocp.CheckpointManager(run_dir / "checkpoints", item_names=("state", "meta")) as m:
        restored = m.restore(step, args=args)
    return restored.state, dict(restored.meta)


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def saved_arrays(run_dir: Path, step: int) -> dict[str, int]:
    """Bytes of each array a step's state item holds, by dotted name, from orbax's
    metadata (nothing is read)."""
    tree = ocp.StandardCheckpointer().metadata(run_dir / "checkpoints" / str(step) / "state")
    leaves = jax.tree.leaves(tree.item_metadata)
    return {a.name: int(np.prod(a.shape)) * np.dtype(a.dtype).itemsize for a in leaves}


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


ONE_TURN = (("user", "Is 3 < 5 & 5 > 2? Answer \"yes\" or 'no'."),)
ALTERNATING = (
    ("user", "What is 2 + 3? <b>Show</b> & tell."),
    ("assistant", '  2 + 3 = 5 & "five" > 4  '),
    ("user", "And 'why' <not> 6?"),
)
WITH_SYSTEM = (("system", '  Be brief: <tags> & "quotes".  '), *ALTERNATING)
SANDBOX_HINT = " (rendered without transformers, which this template may need)"


@pytest.fixture(scope="module")
def chat_folders(tmp_path_factory) -> dict[str, Path]:
    """Tokenizer folders carrying the published Llama 3, Qwen2.5 and Gemma 2 templates."""
    root = tmp_path_factory.mktemp("chat")
    return {f: chat_templates.save_family(root / f, f) for f in chat_templates.FAMILIES}


def chat(turns: tuple[tuple[str, str], ...]) -> Rendered:
    return Rendered(turns[-1][1], "2 + 3 = 5.", "5", turns)


def hf_prompt(folder: Path, turns: tuple[tuple[str, str], ...]) -> str:
    """The prompt transformers renders from the folder, as at inference."""
    tok = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    messages = [{"role": role, "content": content} for role, content in turns]
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def without_transformers(monkeypatch: pytest.MonkeyPatch) -> None:
    """`import transformers` fails from here on, as where it is not installed."""
    monkeypatch.setitem(sys.modules, "transformers", None)


@pytest.mark.parametrize(
    "family, turns",
    [
        (family, turns)
        for family in chat_templates.FAMILIES
        for turns in (ONE_TURN, ALTERNATING, WITH_SYSTEM)
        if not (family == "gemma2" and turns is WITH_SYSTEM)  # Gemma 2 has no system role
    ],
)
def test_published_templates_render_as_transformers_does(chat_folders, family, turns):
    folder = chat_folders[family]
    tok = ChatTokenizer.from_folder(folder)
    want = hf_prompt(folder, turns)
    assert tok.prompt_text(chat(turns)) == want
    # The ids are those of the checkpoint's own tokenizer.json, and the mask starts
    # exactly after the rendered prompt.
    own = Tokenizer.from_file(str(folder / "tokenizer.json"))
    prompt = own.encode(want, add_special_tokens=False).ids
    completion = own.encode("2 + 3 = 5.\n5", add_special_tokens=False).ids
    enc = tok.encode(chat(turns))
    assert enc.ids.tolist() == [*prompt, *completion, tok.eos_id]
    cut = len(prompt)
    assert not enc.mask[:cut].any() and enc.mask[cut:].all()


def test_llama3_dates_the_prompt_with_strftime_now(chat_folders):
    before = date.today()
    text = ChatTokenizer.from_folder(chat_folders["llama3"]).prompt_text(chat(ONE_TURN))
    days = {f"Today Date: {d:%d %b %Y}" for d in (before, date.today())}
    assert any(day in text for day in days) and "26 Jul 2024" not in text


def test_tojson_and_loop_controls_render_as_transformers_does(tmp_path):
    template = (
        "{% for m in messages %}{% if m.role == 'system' %}{% continue %}{% endif %}"
        "{{ m | tojson }}\n{% if loop.index > 2 %}{% break %}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    folder = chat_templates.save_chat_tokenizer(
        tmp_path, template, {"eos_token": "<|im_end|>"}, ["<|im_start|>", "<|im_end|>"]
    )
    text = ChatTokenizer.from_folder(folder).prompt_text(chat(WITH_SYSTEM))
    assert text == hf_prompt(folder, WITH_SYSTEM)
    assert '"content": "What is 2 + 3? <b>Show</b> & tell."' in text  # not HTML-escaped
    assert "Be brief" not in text and "'why'" not in text  # skipped, and cut off


def test_chat_template_jinja_overrides_the_config_entry_as_in_transformers(tmp_path):
    folder = chat_templates.save_family(tmp_path, "qwen2.5")
    (folder / "chat_template.jinja").write_text(TEMPLATE)
    text = ChatTokenizer.from_folder(folder).prompt_text(chat(ONE_TURN))
    assert text == hf_prompt(folder, ONE_TURN) and "You are Qwen" not in text


@pytest.mark.parametrize("family", ["qwen2.5", "gemma2"])
def test_sandboxed_fallback_renders_plain_templates_identically(
    chat_folders, family, monkeypatch, caplog
):
    want = hf_prompt(chat_folders[family], ALTERNATING)
    without_transformers(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="tunixrt.data.chat"):
        tok = ChatTokenizer.from_folder(chat_folders[family])
    assert "transformers is not installed" in caplog.text
    assert tok.prompt_text(chat(ALTERNATING)) == want


@pytest.mark.parametrize(
    "template, reason",
    [
        (  # Llama 3's date line without its `strftime_now is defined` guard
            "{{ bos_token }}Today Date: {{ strftime_now('%d %b %Y') }}\n"
            "{% for m in messages %}{{ m.content }}{% endfor %}",
            "'strftime_now' is undefined",
        ),
        (
            "{% for m in messages %}{% if m.role == 'system' %}{% continue %}{% endif %}"
            "{{ m.content }}{% endfor %}",
            "line 1: Encountered unknown tag 'continue'.",
        ),
    ],
    ids=["strftime_now", "loop-controls"],
)
def test_sandboxed_fallback_refuses_what_only_transformers_renders(
    tmp_path, monkeypatch, template, reason
):
    folder = chat_templates.save_chat_tokenizer(
        tmp_path, template, {"bos_token": "<s>", "eos_token": "</s>"}, ["<s>", "</s>"]
    )
    assert hf_prompt(folder, ONE_TURN).endswith(ONE_TURN[0][1])
    without_transformers(monkeypatch)
    with pytest.raises(DataError) as err:
        ChatTokenizer.from_folder(folder).prompt_text(chat(ONE_TURN))
    message = str(err.value)
    prefix = f"{folder / 'tokenizer_config.json'}: the chat template failed: {reason}"
    assert message.startswith(prefix) and message.endswith(SANDBOX_HINT)
    assert "\n" not in message


@pytest.mark.parametrize("sandboxed", [False, True], ids=["transformers", "sandboxed"])
def test_raise_exception_is_a_one_line_data_error(chat_folders, monkeypatch, sandboxed):
    if sandboxed:
        without_transformers(monkeypatch)
    tok = ChatTokenizer.from_folder(chat_folders["gemma2"])
    with pytest.raises(DataError) as err:
        tok.prompt_text(chat(WITH_SYSTEM))
    where = chat_folders["gemma2"] / "tokenizer_config.json"
    hint = SANDBOX_HINT if sandboxed else ""
    assert str(err.value) == f"{where}: the chat template failed: System role not supported{hint}"


@pytest.mark.parametrize("sandboxed", [False, True], ids=["transformers", "sandboxed"])
def test_template_syntax_error_names_the_file_and_line(tmp_path, monkeypatch, sandboxed):
    folder = chat_templates.save_family(tmp_path, "qwen2.5")
    (folder / "chat_template.jinja").write_text("{% for m in messages %}\n{{ m.content }\n")
    if sandboxed:
        without_transformers(monkeypatch)
    with pytest.raises(DataError) as err:
        ChatTokenizer.from_folder(folder).prompt_text(chat(ONE_TURN))
    hint = SANDBOX_HINT if sandboxed else ""
    want = f"{folder / 'chat_template.jinja'}: the chat template failed: line 2: unexpected '}}'"
    assert str(err.value) == want + hint


def test_full_finetune_trains_and_lowers_the_loss(full_run):
    _, result = full_run
    losses = list(result.train_losses.values())
    assert len(losses) == 4 and all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_lora_run_exports_base_plus_adapter_product(pretrained, lora_run, tmp_path):
    run_dir = lora_run
    assert tunixrt_cli(["export", str(run_dir), str(tmp_path / "hf")]) == 0

    state, _ = checkpoint(run_dir, 4)
    layers = state["model"]["layers"]
    exported = load_file(str(tmp_path / "hf" / "model.safetensors"))
    original = load_file(str(pretrained / "model.safetensors"))
    for i in (0, 1):
        q = layers[str(i)]["attn"]["q_proj"]
        assert "kernel" not in q  # the base lives in model.path, not in the checkpoint
        kernel = original[f"model.layers.{i}.self_attn.q_proj.weight"].T  # [in, out]
        merged = kernel + (8 / 4) * np.asarray(q["lora_a"]) @ np.asarray(q["lora_b"])
        np.testing.assert_allclose(
            exported[f"model.layers.{i}.self_attn.q_proj.weight"], merged.T, atol=1e-6
        )
        assert np.abs(np.asarray(q["lora_b"])).max() > 0  # the adapters trained
        for name in ("k_proj.weight", "o_proj.weight"):  # untargeted: the base, unchanged
            key = f"model.layers.{i}.self_attn.{name}"
            np.testing.assert_array_equal(exported[key], original[key])

    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    with closing(
        Checkpointer(run_dir / "checkpoints", every_steps=0, keep=1, read_only=True)
    ) as ck:
        _, _, adapted = load_model(ck, 4)  # base plus unmerged adapters, as trained
    tokens = np.random.default_rng(0).integers(0, 320, (2, 16), dtype=np.int32)
    with torch.no_grad():
        want = hf(input_ids=torch.from_numpy(tokens.astype(np.int64))).logits.numpy()
    np.testing.assert_allclose(np.asarray(adapted(tokens)), want, atol=1e-4)


def test_lora_checkpoint_holds_adapters_and_a_hashed_base_reference(pretrained, lora_run, full_run):
    lora, full = saved_arrays(lora_run, 4), saved_arrays(full_run[0], 4)
    model = {k: v for k, v in lora.items() if k.startswith("model.")}
    assert len(model) == 2 * 2 * 2  # lora_a and lora_b of q and v in 2 layers
    assert all(k.endswith((".lora_a", ".lora_b")) for k in model)
    assert sum(lora.values()) * 30 < sum(full.values())  # adapters + adam vs all weights + adam
    _, meta = checkpoint(lora_run, 4)
    base = load_pretrained(pretrained, param_dtype="float32")
    assert meta["base"] == {"path": str(pretrained), "sha256": base_sha256(base)}
    # on disk too, the whole step (adapters, their moments, orbax's metadata files, whose
    # size varies with orbax's and JAX's versions) weighs less than the base weights alone
    base_bytes = sum(v for k, v in full.items() if k.startswith("model."))
    assert folder_bytes(lora_run / "checkpoints" / "4") < base_bytes
    assert not (lora_run / "checkpoints" / "base").exists()  # model.path is the base


def test_lora_resume_is_bit_identical(pretrained, traces, lora_run, tmp_path):
    shutil.copytree(lora_run, tmp_path / "run")
    cfg = compose_train(overrides(pretrained, traces, *LORA, "trainer.max_steps=8"))
    assert train(cfg, tmp_path / "run").resumed_from == 4
    train(cfg, tmp_path / "ref")
    loss = [read_scalars(tmp_path / d / "tb")["train/loss"] for d in ("run", "ref")]
    assert [s for s, _ in loss[0]] == list(range(1, 9)) and loss[0] == loss[1]
    (got, _), (want, _) = checkpoint(tmp_path / "run", 8), checkpoint(tmp_path / "ref", 8)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    jax.tree.map(np.testing.assert_array_equal, got, want)  # adapters and optimizer state


def test_changed_base_fails_resume_and_export_naming_both_hashes(pretrained, traces, tmp_path):
    base = shutil.copytree(pretrained, tmp_path / "base")
    train(compose_train(overrides(base, traces, *LORA, "trainer.max_steps=1")), tmp_path / "run")
    weights = load_file(str(base / "model.safetensors"))
    weights["model.layers.0.mlp.up_proj.weight"][0, 0] += 1.0  # a frozen weight
    save_file(weights, str(base / "model.safetensors"), metadata={"format": "pt"})
    _, meta = checkpoint(tmp_path / "run", 1)
    changed = base_sha256(load_pretrained(base, param_dtype="float32"))
    recorded = meta["base"]["sha256"]
    message = rf"^{re.escape(str(base))}: the LoRA base weights have sha256 {changed}, .*"
    message += rf" {recorded}$"
    with pytest.raises(ConfigError, match=message):
        train(
            compose_train(overrides(base, traces, *LORA, "trainer.max_steps=2")), tmp_path / "run"
        )
    with pytest.raises(ConfigError, match=message):
        export(str(tmp_path / "run"), tmp_path / "hf")


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


def test_seq_len_past_the_checkpoints_positions_is_a_config_error(pretrained, traces, tmp_path):
    """The tiny checkpoint has max_position_embeddings=256: one line naming it, before
    anything compiles (no checkpoint, no TensorBoard events)."""
    cfg = compose_train(overrides(pretrained, traces, "trainer.seq_len=300"))
    with pytest.raises(ConfigError, match=r"trainer\.seq_len=300.*at most 256.*max_position"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists() or not any(
        (tmp_path / "run" / "checkpoints").iterdir()
    )


def test_export_refuses_its_source_and_a_failed_export_leaves_out_as_it_was(
    pretrained, traces, tmp_path, monkeypatch, capsys
):
    run_dir = tmp_path / "run"
    train(compose_train(overrides(pretrained, traces, "trainer.max_steps=1")), run_dir)
    before = {p.name: p.read_bytes() for p in pretrained.iterdir() if p.is_file()}
    assert tunixrt_cli(["export", str(run_dir), str(pretrained)]) == 2
    assert "refusing to export into" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in pretrained.iterdir() if p.is_file()} == before

    out = tmp_path / "hf"
    out.mkdir()
    (out / "keep.txt").write_text("an earlier export")
    from tunixrt import export as export_module

    def dies(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # killed while writing the shards

    monkeypatch.setattr(export_module, "save_pretrained", dies)
    with pytest.raises(KeyboardInterrupt):
        tunixrt_cli(["export", str(run_dir), str(out)])
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
