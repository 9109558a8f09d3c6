"""The sharding tests' training jobs. `run` trains (or inspects) in this process; the
command runs a list of them in a process of its own, which sees as many CPU devices as
its parent asked for through XLA_FLAGS (JAX reads it once, at import):

    python -m tests.helpers.mesh_jobs JOBS.json OUT.json

JOBS.json is a list of {"run_dir": FOLDER, "overrides": [...]} (trained with
`train`, resuming when the folder holds checkpoints) or {"inspect": [...]} (the
placement of a few weights after setup and after one step). OUT.json gets one result
per job, in order. `run_jobs` starts that command from a test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.helpers.paths import ROOT

# The weight every inspection reports: q_proj [dim, heads * head_dim] ("embed", "heads").
KERNEL = ("layers", 0, "attn", "q_proj", "kernel")


def _placement(array: Any) -> dict[str, Any]:
    # one entry per dimension (a spec may leave out trailing unsplit ones): the mesh
    # axes that split it, or None
    spec = [*array.sharding.spec, *[None] * (array.ndim - len(array.sharding.spec))]
    return {
        "spec": [None if p is None else list(p) if isinstance(p, tuple) else [p] for p in spec],
        "shape": list(array.shape),
        "shard_shape": list(array.addressable_shards[0].data.shape),
        "devices": len(array.sharding.device_set),
    }


def _at(state: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        state = state[part]
    return state.get_value()


def inspect(overrides: list[str]) -> dict[str, Any]:
    """Where q_proj's kernel and its AdamW first moment live, before and after a step."""
    from flax import nnx

    from tests.helpers.config import compose_train
    from tunixrt.config import validate
    from tunixrt.train.setup import enable_compile_cache, setup, to_device

    cfg = validate(compose_train(overrides))
    enable_compile_cache(cfg.device.compile_cache_dir)  # the runs of this mesh reuse the step
    s = setup(cfg)

    def now() -> dict[str, Any]:
        (mu,) = [
            v.get_value()
            for path, v in nnx.to_flat_state(nnx.state(s.optimizer))
            if tuple(path[-len(KERNEL) :]) == KERNEL and "mu" in path
        ]
        return {"param": _placement(_at(nnx.state(s.model), KERNEL)), "mu": _placement(mu)}

    before = now()
    s.train_step(s.model, s.optimizer, to_device(next(s.data.train), s))
    return {"before": before, "after": now()}


def run(job: dict[str, Any]) -> dict[str, Any]:
    from tests.helpers.config import compose_train
    from tunixrt.train.loop import train

    if "inspect" in job:
        return inspect(job["inspect"])
    result = train(compose_train(job["overrides"]), Path(job["run_dir"]))
    return {
        "losses": {str(k): v for k, v in result.train_losses.items()},
        "eval_loss": result.final_eval_loss,
        "resumed_from": result.resumed_from,
    }


def run_jobs(devices: int, jobs: list[dict[str, Any]], folder: Path) -> list[dict[str, Any]]:
    """Run `jobs` through this module's command in a process that sees `devices` CPUs;
    their results, in order."""
    jobs_file, out_file = folder / f"jobs-{devices}.json", folder / f"out-{devices}.json"
    jobs_file.write_text(json.dumps(jobs))
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    done = subprocess.run(
        [sys.executable, "-m", "tests.helpers.mesh_jobs", str(jobs_file), str(out_file)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(out_file.read_text())


def main() -> None:
    jobs_file, out_file = sys.argv[1:]
    jobs = json.loads(Path(jobs_file).read_text())
    Path(out_file).write_text(json.dumps([run(job) for job in jobs]))


if __name__ == "__main__":
    main()
