"""Shared fixtures: the repo root, the bundled tokenizer, and Hydra composition."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from tunixrt.config import register_configs, repo_path

ROOT = Path(__file__).resolve().parents[1]
DEV_DATA = ROOT / "datasets" / "dev-reasoning"

register_configs()
logging.getLogger("absl").setLevel(logging.WARNING)


@pytest.fixture(scope="session", autouse=True)
def session_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Training runs of the suite (in-process and subprocesses) register in a SQLite file
    of their own instead of the checkout's outputs/registry.db."""
    url = f"sqlite:///{tmp_path_factory.mktemp('registry') / 'registry.db'}"
    old = os.environ.get("TUNIXRT_REGISTRY_URL")
    os.environ["TUNIXRT_REGISTRY_URL"] = url
    yield url
    if old is None:
        os.environ.pop("TUNIXRT_REGISTRY_URL", None)
    else:
        os.environ["TUNIXRT_REGISTRY_URL"] = old


@pytest.fixture(scope="session")
def tokenizer_path() -> Path:
    return DEV_DATA / "tokenizer.json"


def compose_train(overrides: Sequence[str] = ()) -> DictConfig:
    with initialize_config_dir(version_base="1.3", config_dir=str(repo_path("conf"))):
        return compose("train", overrides=list(overrides))


@pytest.fixture
def compose_cfg() -> Callable[..., DictConfig]:
    return compose_train


def trace(prompt: str, steps: Sequence[str], answer: str) -> dict:
    return {
        "trace_version": "1.0",
        "prompt": prompt,
        "steps": [{"i": i, "type": "compute", "content": c} for i, c in enumerate(steps)],
        "final_answer": answer,
        "meta": {},
    }


def write_jsonl(path: Path, records: Sequence[dict | str]) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def small_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A byte-level BPE tokenizer with tunixrt's special tokens, trained on a few lines."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from tunixrt.data import SPECIAL_TOKENS

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    corpus = [f"What is {a} + {b}? {a} + {b} = {a + b}." for a in range(30) for b in range(30)]
    tok.train_from_iterator(corpus, trainer)
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    tok.save(str(path))
    return path


def addition_traces(n: int, seed: int = 0) -> list[dict]:
    import random

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rng.randint(0, 29), rng.randint(0, 29)
        out.append(trace(f"What is {a} + {b}?", [f"{a} + {b} = {a + b}."], str(a + b)))
    return out


def read_scalars(logdir: Path | str) -> dict[str, list[tuple[int, float]]]:
    """Scalar tags of an event folder, read with TensorBoard's own EventAccumulator."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util.tensor_util import make_ndarray

    acc = EventAccumulator(str(logdir), size_guidance={"tensors": 0})
    acc.Reload()
    out = {}
    for tag in acc.Tags()["tensors"]:
        if acc.SummaryMetadata(tag).plugin_data.plugin_name == "scalars":
            out[tag] = [(e.step, float(make_ndarray(e.tensor_proto))) for e in acc.Tensors(tag)]
    return out


TRAIN_SCRIPT = ROOT / "scripts" / "train.py"


def run_train(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`python scripts/train.py ARGS` as a user runs it, from the repo root; waits."""
    return subprocess.run(
        [sys.executable, str(TRAIN_SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def start_train(*args: str, quiet: bool = False) -> subprocess.Popen[str]:
    """The same in the background; its output (unbuffered, stderr merged) on a pipe, or
    discarded when `quiet`."""
    out = subprocess.DEVNULL if quiet else subprocess.PIPE
    return subprocess.Popen(
        [sys.executable, str(TRAIN_SCRIPT), *args],
        stdout=out,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def kill_when(proc: subprocess.Popen[str], path: Path, timeout: float = 120) -> None:
    """SIGKILL `proc` as soon as `path` exists (e.g. a checkpoint landed); fails if the
    process ends first or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"the run ended before {path} appeared"
        assert time.monotonic() < deadline, f"{path} did not appear in {timeout} s"
        time.sleep(0.02)
    proc.kill()
    proc.wait(timeout=30)
