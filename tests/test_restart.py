"""What a restart reuses and keeps: the compiled step comes from JAX's persistent cache
(counted compilations, not files), and the learning-rate schedule keeps the length of
the run's first start when optimizer.decay_steps is not pinned."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from tests.helpers.config import compose_train
from tests.helpers.paths import ROOT
from tests.helpers.tensorboard import read_scalars
from tunixrt.config import validate
from tunixrt.optim import make_schedule
from tunixrt.train import setup as train_setup
from tunixrt.train import train
from tunixrt.train.signals import Preempted
from tunixrt.train.step import make_train_step

pytestmark = pytest.mark.slow

# Trains in a fresh process and prints JAX's compilation-cache counters as JSON.
COUNT_COMPILES = """
import collections, json, sys
import jax
counts = collections.Counter()
jax.monitoring.register_event_listener(lambda name, **kw: counts.update([name]))
from tunixrt.composition import compose
from tunixrt.train import train
train(compose(sys.argv[2:]), sys.argv[1])
print(json.dumps({k.rsplit("/", 1)[-1]: v for k, v in counts.items() if "compilation_cache" in k}))
"""


def compile_counts(run_dir, *overrides: str) -> dict[str, int]:
    proc = subprocess.run(
        [sys.executable, "-c", COUNT_COMPILES, str(run_dir), *overrides],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_restart_compiles_nothing_the_cache_holds(tmp_path):
    base = [
        "debug=fast",
        "registry.url=null",
        "trainer.eval_batches=1",
        f"device.compile_cache_dir={tmp_path / 'cache'}",
    ]
    first = compile_counts(tmp_path / "run", *base, "trainer.max_steps=2")
    assert first.get("cache_misses", 0) >= 1  # a cold cache: the step was compiled
    again = compile_counts(tmp_path / "run", *base, "trainer.max_steps=3")  # resumes
    assert again.get("cache_misses", 0) == 0, again
    assert again["cache_hits"] == again["compile_requests_use_cache"] >= 1


# Compiles a program after each of three settings of the cache and lists each folder.
SWITCH_CACHES = """
import json, os, sys
import jax, jax.numpy as jnp
from tunixrt.train.setup import enable_compile_cache
a, b = sys.argv[1:]
def files(folder): return sorted(os.listdir(folder)) if os.path.isdir(folder) else []
seen = {}
for name, folder, scale in (("a", a, 3.0), ("b", b, 5.0), ("off", None, 7.0)):
    enable_compile_cache(folder)
    jax.jit(lambda x: x * scale)(jnp.ones(3)).block_until_ready()
    seen[name] = {"a": files(a), "b": files(b)}
print(json.dumps(seen))
"""


def test_each_run_caches_in_its_own_folder_within_one_process(tmp_path):
    """A process that compiled with one cache folder (an earlier run, a sweep's previous
    job) writes the next run's programs to that run's folder, and to none when it has
    none: JAX alone would keep the first folder for the life of the process."""
    a, b = tmp_path / "a", tmp_path / "b"
    proc = subprocess.run(
        [sys.executable, "-c", SWITCH_CACHES, str(a), str(b)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["a"]["a"] and not seen["a"]["b"]
    assert seen["b"]["a"] == seen["a"]["a"] and seen["b"]["b"]  # the second folder's own
    assert seen["off"] == seen["b"]  # off: neither folder gets the third program


STEPS = 24
BASE = [
    "debug=fast",
    "registry.url=null",
    "trainer.log_every=1",
    "trainer.eval_every=0",
    "checkpoint.every_steps=4",
    "optimizer.warmup_steps=2",
]  # no optimizer.decay_steps: the schedule takes the first start's max_steps


def stop_at(step: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM this process during the given step, as a scheduler would."""
    calls = {"n": 0}

    def make(*key: object) -> object:
        real = make_train_step(*key)  # the step the config asks for (wrt, loss chunks)

        def signalled(*args: object) -> object:
            calls["n"] += 1
            if calls["n"] == step:
                os.kill(os.getpid(), signal.SIGTERM)
            return real(*args)

        return signalled

    monkeypatch.setattr(train_setup, "make_train_step", make)


def test_an_interrupted_run_keeps_its_schedule_without_decay_steps(tmp_path, monkeypatch):
    cfg = compose_train(
        [*BASE, f"trainer.max_steps={STEPS}", f"device.compile_cache_dir={tmp_path}/c"]
    )
    train(cfg, tmp_path / "reference")
    stop_at(9, monkeypatch)
    with pytest.raises(Preempted):
        train(cfg, tmp_path / "run")
    monkeypatch.undo()
    assert train(cfg, tmp_path / "run").resumed_from == 9
    got, want = read_scalars(tmp_path / "run" / "tb"), read_scalars(tmp_path / "reference" / "tb")
    assert got["train/lr"] == want["train/lr"] and got["train/loss"] == want["train/loss"]


def test_a_longer_resume_continues_the_first_starts_schedule(tmp_path):
    short = compose_train([*BASE, "trainer.max_steps=12", f"device.compile_cache_dir={tmp_path}/c"])
    train(short, tmp_path)
    longer = compose_train(
        [*BASE, f"trainer.max_steps={STEPS}", f"device.compile_cache_dir={tmp_path}/c"]
    )
    train(longer, tmp_path)
    schedule = make_schedule(validate(short).optimizer, 12)  # the first start's length
    logged = dict(read_scalars(tmp_path / "tb")["train/lr"])
    assert sorted(logged) == list(range(1, STEPS + 1))
    for step, lr in logged.items():
        assert lr == pytest.approx(float(schedule(step - 1)), rel=1e-6), step
    opt = validate(short).optimizer
    assert logged[STEPS] == pytest.approx(opt.lr * opt.min_lr_ratio)  # past its end: the floor
