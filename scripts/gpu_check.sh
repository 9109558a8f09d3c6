#!/usr/bin/env bash
# GPU check of tunixrt on a machine with an NVIDIA GPU and JAX for CUDA already
# installed (with flax, optax, orbax, tensorboard, transformers and torch): installs
# what is missing, runs the GPU-marked tests, benchmarks a Qwen2.5-0.5B-shaped random
# init (model=qwen2_0_5b) at seq 2048 and 8192 (then at 2048 against a bare jitted step
# and transformers + PyTorch), and writes one JSON report.
#
#   WHEELS=/path/to/wheels OUT=./gpu_report scripts/gpu_check.sh    (or: make gpu-check)
#
# WHEELS: a folder of wheels for hydra-core, omegaconf, sqlalchemy, alembic (and pytest,
#   and their dependencies), installed with pip --no-index; unset: pip's index.
# OUT: where the report goes (default ./gpu_report): gpu_report.json, and one log per
#   stage. Every stage runs under a time limit inside GPU_CHECK_BUDGET_S (default 540 s,
#   so the whole check stays under 10 minutes); a stage that fails or runs out of time
#   is recorded and the next one still runs; the report is written whatever happens.
set -euo pipefail

cd "$(dirname "$0")/.."
OUT="${OUT:-./gpu_report}"
PYTHON="${PYTHON:-python3}"
BUDGET_S="${GPU_CHECK_BUDGET_S:-540}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
STAGES="$OUT/stages.jsonl"
: >"$STAGES"
DEADLINE=$((SECONDS + BUDGET_S))

log() { echo "[gpu_check $(date -u +%H:%M:%S)] $*" | tee -a "$OUT/gpu_check.log" >&2; }

# stage NAME LIMIT_S CMD...: CMD's stdout to $OUT/NAME.out, stderr to $OUT/NAME.log, its
# exit status and seconds to stages.jsonl (124: out of time); never stops the script.
stage() {
  local name=$1 limit=$2
  shift 2
  local left=$((DEADLINE - SECONDS)) start=$SECONDS rc=0
  if ((limit > left)); then limit=$left; fi
  if ((limit < 10)); then
    log "stage $name: skipped, the time budget is spent"
    printf '{"stage": "%s", "rc": null, "seconds": 0, "skipped": true}\n' "$name" >>"$STAGES"
    return 0
  fi
  log "stage $name (at most ${limit} s): $*"
  # through bash, so CMD may be one of the functions below (exported)
  timeout --kill-after=15 "$limit" bash -c 'set -euo pipefail; "$@"' _ "$@" \
    >"$OUT/$name.out" 2>"$OUT/$name.log" || rc=$?
  log "stage $name: exit $rc after $((SECONDS - start)) s"
  printf '{"stage": "%s", "rc": %d, "seconds": %d}\n' "$name" "$rc" "$((SECONDS - start))" >>"$STAGES"
}

install() {
  local missing=()
  "$PYTHON" -c "import hydra, omegaconf" 2>/dev/null || missing+=(hydra-core omegaconf)
  "$PYTHON" -c "import sqlalchemy, alembic" 2>/dev/null || missing+=(sqlalchemy alembic)
  "$PYTHON" -c "import pytest" 2>/dev/null || missing+=(pytest)
  if ((${#missing[@]})); then
    if [[ -n "${WHEELS:-}" ]]; then
      "$PYTHON" -m pip install --no-index --find-links "$WHEELS" "${missing[@]}"
    else
      "$PYTHON" -m pip install "${missing[@]}"
    fi
  fi
  "$PYTHON" -m pip install --no-deps -e .
}

environment() {
  nvidia-smi || true
  "$PYTHON" - <<'PY'
import jax, flax, optax, torch, transformers
print(f"jax {jax.__version__}, flax {flax.__version__}, optax {optax.__version__}, "
      f"torch {torch.__version__}, transformers {transformers.__version__}")
print("devices:", jax.devices(), "torch cuda:", torch.cuda.is_available())
PY
}

# tunixrt bench on the 0.5B model: prints one JSON object. Arguments: overrides and
# --flags (--flag=value), in any order; the overrides go first, as argparse wants them.
# Generation is left out (the train step is what is measured here).
bench() {
  local overrides=() flags=()
  for arg in "$@"; do
    if [[ $arg == --* ]]; then flags+=("$arg"); else overrides+=("$arg"); fi
  done
  "$PYTHON" -m tunixrt.cli.main bench model=qwen2_0_5b device=gpu registry.url=null \
    eval.max_examples=0 "${overrides[@]}" --steps 5 --warmup 1 --rounds 3 --no-generation \
    --json "${flags[@]}"
}

write_report() {
  "$PYTHON" - "$OUT" <<'PY' || log "could not write the report"
import json, pathlib, sys, time

out = pathlib.Path(sys.argv[1])
stages = [json.loads(line) for line in (out / "stages.jsonl").read_text().splitlines() if line]
report = {"written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "stages": {}}
for s in stages:
    name = s.pop("stage")
    text = (out / f"{name}.out").read_text() if (out / f"{name}.out").exists() else ""
    err = (out / f"{name}.log").read_text() if (out / f"{name}.log").exists() else ""
    s["ok"] = s.get("rc") == 0
    if name.startswith("bench"):
        try:
            s["result"] = json.loads(text)
        except ValueError:
            s["result"] = None
    else:
        s["output_tail"] = text[-4000:]
    if not s["ok"]:
        s["error_tail"] = err[-4000:]
    report["stages"][name] = s
report["ok"] = all(s["ok"] for s in report["stages"].values())
(out / "gpu_report.json").write_text(json.dumps(report, indent=2) + "\n")
print(f"report: {out / 'gpu_report.json'} (all stages ok: {report['ok']})")
PY
}
trap write_report EXIT
export -f install environment bench
export PYTHON
# JAX takes GPU memory as it needs it, leaving the rest to PyTorch's reference
export XLA_PYTHON_CLIENT_PREALLOCATE=false

stage environment 60 environment
stage install 120 install
stage gpu_tests 120 env TUNIXRT_REQUIRE_GPU=1 "$PYTHON" -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu.py
# 8 x 2048 tokens a step
stage bench_seq2048 180 bench trainer.seq_len=2048 trainer.batch_size=8
# 2 x 8192: attention's [rows, heads, seq, seq] scores per layer need remat to fit
stage bench_seq8192 180 bench trainer.seq_len=8192 trainer.batch_size=2 model.remat=true
# seq 2048 again (its step from the compilation cache) beside the bare jitted step and
# transformers + PyTorch in bf16 autocast, in alternating rounds: with what time is left
stage bench_seq2048_reference 240 bench trainer.seq_len=2048 trainer.batch_size=8 --bare \
  --reference=torch
log "done in $SECONDS s"
