"""GRPO and DPO on a mesh: the same runs on 4 CPU devices (in a process of their own,
tests.helpers.mesh_jobs) and on one (here) sample the same completions and log the
same per-step losses. Each mesh splits the policy's weights (fsdp, tensor) or its
batch rows (data, fsdp); one run's pair weights do not divide over its batch axes and
go replicated."""

from __future__ import annotations

from typing import Any

import jax
import pytest

from tests.helpers.config import compose_train
from tests.helpers.data import addition_traces, write_jsonl
from tests.helpers.mesh_jobs import run, run_jobs
from tests.helpers.tensorboard import read_scalars
from tests.test_train_dpo import dpo, sums
from tests.test_train_dpo_online import online
from tests.test_train_grpo import SFT_STEPS, common, grpo
from tunixrt.train.loop import train

pytestmark = pytest.mark.slow

STEPS = 3

# run name -> (the mesh of the 4-device run, the run's overrides but the mesh)
RUNS = {
    "grpo": ("fsdp=2,tensor=2", ["algorithm.prompts_per_step=4", "algorithm.group_size=4"]),
    "grpo_lora": ("data=4", ["model.lora.rank=4", "algorithm.iterations=2"]),
    # 3 pairs a step: 6 rows split over data=2, the [3] pair weights replicated
    "dpo_on_policy": ("data=2,tensor=2", ["algorithm.prompts_per_step=3"]),
    "dpo_pairs": ("fsdp=4", []),
}


def mesh_overrides(mesh: str) -> list[str]:
    return [f"device.mesh.{part}" for part in mesh.split(",")]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every run's losses and TensorBoard scalars, on 4 devices and on 1."""
    assert len(jax.devices()) == 1
    root = tmp_path_factory.mktemp("algorithms_mesh")
    data = write_jsonl(root / "add.jsonl", addition_traces(200))
    pairs = write_jsonl(root / "pairs.jsonl", sums(64, seed=0))
    cache = root / "jax_cache"
    sft = root / "sft"
    train(
        compose_train(
            [*common(data, cache), f"trainer.max_steps={SFT_STEPS}", "optimizer.lr=1e-2"]
        ),
        sft,
    )
    steps = f"trainer.max_steps={STEPS}"
    base = {
        "grpo": grpo(data, cache, sft, steps, *RUNS["grpo"][1]),
        "grpo_lora": grpo(data, cache, sft, steps, *RUNS["grpo_lora"][1]),
        "dpo_on_policy": online(data, cache, sft, steps, *RUNS["dpo_on_policy"][1]),
        "dpo_pairs": dpo(pairs, cache, steps, "trainer.log_every=1", "trainer.eval_every=0"),
    }
    jobs = [
        {"run_dir": str(root / f"{name}-4"), "overrides": [*o, *mesh_overrides(RUNS[name][0])]}
        for name, o in base.items()
    ]
    four = run_jobs(4, jobs, root)
    one = [run({"run_dir": str(root / f"{name}-1"), "overrides": o}) for name, o in base.items()]
    return {
        name: {
            devices: {**out, "tb": read_scalars(root / f"{name}-{devices}" / "tb")}
            for devices, out in ((4, four[i]), (1, one[i]))
        }
        for i, name in enumerate(base)
    }


# what must agree: sampled runs draw the same completions (equal rewards and lengths)
SAMPLED = {
    "grpo": ["grpo/reward", "grpo/completion_tokens", "grpo/kl"],
    "grpo_lora": ["grpo/reward", "grpo/completion_tokens", "grpo/clip_fraction"],
    "dpo_on_policy": ["dpo/pairs", "dpo/pair_reward_gap", "dpo/margin"],
    # not dpo/accuracy: at step 1 the policy is the reference, and the sign of each
    # margin (about 1e-7) is rounding
    "dpo_pairs": ["dpo/margin"],
}


@pytest.mark.parametrize("name", list(RUNS))
def test_a_run_on_four_devices_trains_as_on_one(results: dict[str, Any], name: str) -> None:
    four, one = results[name][4], results[name][1]
    steps = [str(s) for s in range(1, STEPS + 1)]
    assert sorted(four["losses"]) == sorted(one["losses"]) == steps
    for step in steps:
        assert four["losses"][step] == pytest.approx(one["losses"][step], abs=1e-5), step
    for tag in ["train/grad_norm", *SAMPLED[name]]:
        got, want = four["tb"][tag], one["tb"][tag]
        assert [s for s, _ in got] == [s for s, _ in want] == list(range(1, STEPS + 1)), tag
        for (_, a), (_, b) in zip(got, want, strict=True):
            assert a == pytest.approx(b, rel=1e-4, abs=1e-5), tag


def test_the_runs_learn_something(results: dict[str, Any]) -> None:
    """The comparisons above compare runs whose steps move the policy: the sampled
    rewards differ within groups, and the pairs' margins leave zero."""
    tb = {name: results[name][1]["tb"] for name in RUNS}
    assert any(v > 0 for _, v in tb["grpo"]["grpo/reward_std"])
    assert any(v > 0 for _, v in tb["dpo_on_policy"]["dpo/pairs"])
    assert abs(tb["dpo_pairs"]["dpo/margin"][-1][1]) > 1e-4
