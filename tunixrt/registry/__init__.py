"""The run registry: every run, sweep, metric, checkpoint and evaluation in a SQL
database.

SQLite in the outputs folder by default (`outputs/registry.db`); any SQLAlchemy URL
works (PostgreSQL through `postgresql+psycopg://` for a registry shared by a team).
Alembic revisions in `migrations/` create the tables; `Registry.open` migrates an
empty database and refuses one behind the code (`tunixrt db upgrade` fixes that).
This package knows nothing of JAX: it takes plain Python values.

Tables:
  runs            one row per run folder; a resume reopens the same row (resume_count
                  + 1). Status, created/started/ended/heartbeat times (UTC), the
                  resolved config (passwords masked) and overrides, config hash, git
                  commit and dirty flag, host, device kind and count, package versions,
                  run/TensorBoard/checkpoint folders, last step, error, sweep id.
  sweeps          id, folder, sweeper, search space, status, optimized metric, times.
  metric_history  (run, metric, step) -> value and time, at the logging cadence; a step
                  logged again after a resume replaces the earlier value.
  metric_latest   (run, metric) -> the last step, value and time written.
  checkpoints     (run, step) -> path, metrics at save time, time.
  tags            (run, key) -> value.
  evaluations     one row per evaluation of a folder (a checkpoint, or a Hugging Face
                  model with no run): the run and step when known, the folder, the eval
                  file's path and sha256, scorer and version, generation settings,
                  items, correct, accuracy, aggregates, seconds, new tokens, time.
  predictions     (evaluation, item id) -> position, labels, prompt, generated and
                  extracted answer, expected answer, correct, new tokens.

Statuses: running, completed, failed (with the error), preempted (stopped by a signal,
resumable) and lost. A run is lost when its status is running and its heartbeat is
older than `Registry.lost_after_s` (120 s by default): the process died without
closing it (SIGKILL, out of memory, a node failure). Heartbeats and that age are both
taken from the database server's clock, so hosts with skewed clocks agree. Listing or
showing runs stores that status; a stalled process that comes back sets it to running
again.

Training never waits for the database: a run's writes go through a bounded buffer to
one writer thread (recorder.py), and PostgreSQL statements time out (engine.py).

Use:
    registry = Registry.open(resolve_url(cfg.registry.url, "outputs"))
    recorder = registry.start_run(RunInfo(name=..., run_dir=..., config=...))
    recorder.start_keepalive()            # heartbeats during compiles and evaluations
    writer = RegistryWriter(recorder)     # a MetricWriter: write_scalars -> metrics
    recorder.checkpoint(step, path, metrics)
    recorder.evaluation(report, checkpoint_folder)  # an EvalReport, with its predictions
    recorder.finish("completed")          # or "failed", error=...; or "preempted";
                                          # False: not all recorded (see .dropped)
"""

from tunixrt.registry.errors import RegistryError
from tunixrt.registry.info import RunInfo, config_hash, git_state, json_safe, package_versions
from tunixrt.registry.leaderboard import Leaderboard, leaderboard, swept
from tunixrt.registry.migrate import head_revision
from tunixrt.registry.models import RunStatus, SweepStatus
from tunixrt.registry.queries import (
    CheckpointRecord,
    Comparison,
    EvaluationDetails,
    EvaluationSummary,
    RunDetails,
    RunSummary,
    compare_runs,
    create_sweep,
    finish_sweep,
    get_evaluation,
    get_run,
    latest_evaluation,
    list_evaluations,
    list_runs,
    mark_lost,
    run_id_of_folder,
    tag_run,
)
from tunixrt.registry.recorder import RegistryWriter, RunRecorder
from tunixrt.registry.store import LOST_AFTER_S, Registry
from tunixrt.registry.urls import (
    ENV_URL,
    default_url,
    mask_config,
    mask_text,
    mask_url,
    resolve_url,
)

__all__ = [
    "Leaderboard",
    "leaderboard",
    "swept",
    "ENV_URL",
    "LOST_AFTER_S",
    "CheckpointRecord",
    "Comparison",
    "EvaluationDetails",
    "EvaluationSummary",
    "Registry",
    "RegistryError",
    "RegistryWriter",
    "RunDetails",
    "RunInfo",
    "RunRecorder",
    "RunStatus",
    "RunSummary",
    "SweepStatus",
    "compare_runs",
    "config_hash",
    "create_sweep",
    "default_url",
    "finish_sweep",
    "get_evaluation",
    "get_run",
    "git_state",
    "head_revision",
    "json_safe",
    "latest_evaluation",
    "list_evaluations",
    "list_runs",
    "mark_lost",
    "mask_config",
    "mask_text",
    "mask_url",
    "package_versions",
    "resolve_url",
    "run_id_of_folder",
    "tag_run",
]
