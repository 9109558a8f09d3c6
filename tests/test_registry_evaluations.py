"""Evaluations in the registry, on SQLite and PostgreSQL: a report and its predictions
written in one transaction and read back, prefix lookups, the latest per run, cascades,
the recorder's path (never waiting for the database), and migrating a registry at 0001
that already holds runs."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, MetaData, delete, func, inspect, select

from tests.helpers.registry import database_hung
from tunixrt.evaluation.runner import EvalReport, GenerationSettings, Prediction
from tunixrt.evaluation.scoring import EvalItem, score
from tunixrt.registry import (
    Registry,
    RegistryError,
    RunInfo,
    RunRecorder,
    get_evaluation,
    get_run,
    head_revision,
    latest_evaluation,
    list_evaluations,
    migrate,
)
from tunixrt.registry.engine import make_engine
from tunixrt.registry.models import EvalPrediction, Evaluation, Run

SETTINGS = GenerationSettings(max_new_tokens=32, top_k=5, seed=3, stop=("\n\n",))
OLD_TABLES = ("sweeps", "runs", "metric_history", "metric_latest", "checkpoints", "tags")


def item(n: int, **labels: Any) -> EvalItem:
    return EvalItem(id=f"q{n}", prompt=f"What is {n} + {n}?", expected_answer=str(2 * n), **labels)


def make_report(generated: list[str], step: int | None = None, **labels: Any) -> EvalReport:
    """A report on items q0, q1, ... whose answers are `generated`, in that order."""
    predictions = [
        Prediction(score(item(n, **labels), text), new_tokens=len(text), prompt_tokens=9)
        for n, text in enumerate(generated)
    ]
    return EvalReport(
        eval_path="/data/eval.jsonl",
        eval_sha256="ab" * 32,
        settings=SETTINGS,
        predictions=predictions,
        seconds=1.25,
        step=step,
    )


def start(reg: Registry, tmp_path: Path, name: str = "r", **options: Any) -> RunRecorder:
    return reg.start_run(RunInfo(name=name, run_dir=tmp_path / name), **options)


def stored(reg: Registry, evaluation_id: str) -> tuple[Evaluation, list[EvalPrediction]]:
    """The rows as the database holds them."""
    with reg.session(read_only=True) as s:
        row = s.get_one(Evaluation, evaluation_id)
        query = select(EvalPrediction).where(EvalPrediction.evaluation_id == evaluation_id)
        return row, list(s.scalars(query.order_by(EvalPrediction.position)))


def count(reg: Registry, model: type[Evaluation] | type[EvalPrediction]) -> int:
    with reg.session(read_only=True) as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def test_record_and_read_back(
    registry_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    labelled = {"category": "arithmetic", "section": "easy", "difficulty": "1"}
    # q1 is wrong, q2 holds a NUL (PostgreSQL text cannot), q0's answer comes after prose
    report = make_report(["Adding: the answer is 0.", "3", "4\x00"], step=10, **labelled)
    with Registry.open(registry_url) as reg:
        rec = start(reg, tmp_path)
        evaluation_id = reg.record_evaluation(report, run_id=rec.id, target="r/checkpoints/10")
        row, predictions = stored(reg, evaluation_id)
        details = get_evaluation(reg, evaluation_id)
        rec.finish("completed")

    assert (row.run_id, row.step, row.target) == (rec.id, 10, str(tmp_path / "r/checkpoints/10"))
    assert (row.eval_path, row.eval_sha256) == ("/data/eval.jsonl", "ab" * 32)
    assert (row.scorer, row.scorer_version) == (report.scorer, report.scorer_version)
    assert row.generation == SETTINGS.to_dict() and row.generation["stop"] == ["\n\n"]
    assert (row.items, row.correct, row.accuracy) == (3, 1, pytest.approx(1 / 3))
    assert row.aggregates == report.aggregates
    assert row.aggregates["by_category"]["arithmetic"]["correct"] == 1
    assert (row.seconds, row.new_tokens) == (1.25, report.new_tokens)
    assert row.created_at.tzinfo is not None

    expected = [p.to_dict() for p in report.predictions]
    expected[2]["generated"] = expected[2]["extracted"] = "4\ufffd"
    assert [p.position for p in predictions] == [0, 1, 2]
    assert [(p.item_id, p.category, p.section, p.difficulty) for p in predictions] == [
        (f"q{n}", "arithmetic", "easy", "1") for n in range(3)
    ]
    assert [(p.generated, p.extracted, p.expected, p.correct) for p in predictions] == [
        ("Adding: the answer is 0.", "0", "0", True),
        ("3", "3", "2", False),
        ("4\ufffd", "4\ufffd", "4", False),
    ]
    assert predictions[0].prompt == "What is 0 + 0?" and predictions[1].new_tokens == 1

    assert details.id == evaluation_id and details.accuracy == row.accuracy
    assert list(details.predictions) == expected
    shown = json.loads(json.dumps(details.to_json()))
    assert shown["created_at"] == row.created_at.isoformat() and len(shown["predictions"]) == 3


def test_folders_of_no_run_and_refused_reports(registry_url: str, tmp_path: Path) -> None:
    with Registry.open(registry_url) as reg:
        hf = reg.record_evaluation(make_report(["2"]), run_id=None, target=tmp_path / "hf")
        assert stored(reg, hf)[0].run_id is None and get_evaluation(reg, hf).step is None
        with pytest.raises(RegistryError, match="no run with id 'nope'"):
            reg.record_evaluation(make_report(["0"]), run_id="nope", target=tmp_path)
        twice = make_report(["0", "2"])
        twice.predictions.append(twice.predictions[0])
        with pytest.raises(RegistryError, match="unique.*'q0'"):
            reg.record_evaluation(twice, run_id=None, target=tmp_path)
        with pytest.raises(RegistryError, match="at most 255"):
            long = make_report(["0"], category="c" * 256)
            reg.record_evaluation(long, run_id=None, target=tmp_path)
        empty = reg.record_evaluation(make_report([]), run_id=None, target=tmp_path)
        assert (get_evaluation(reg, empty).items, get_evaluation(reg, empty).predictions) == (0, ())
        assert (count(reg, Evaluation), count(reg, EvalPrediction)) == (2, 1)


def test_prefix_lookup(registry_url: str, tmp_path: Path) -> None:
    with Registry.open(registry_url) as reg:
        ids = [
            reg.record_evaluation(make_report(["0"]), run_id=None, target=tmp_path)
            for _ in range(40)
        ]
        assert get_evaluation(reg, ids[7][:12].upper()).id == ids[7]
        firsts = [i[0] for i in ids]
        shared = max(set(firsts), key=firsts.count)  # 40 ids, 16 hex digits
        with pytest.raises(RegistryError, match="evaluation id prefix .* is ambiguous"):
            get_evaluation(reg, shared)
        with pytest.raises(RegistryError, match="no evaluation with id 'zzzz'"):
            get_evaluation(reg, "zzzz")
        with pytest.raises(RegistryError, match="empty evaluation id"):
            get_evaluation(reg, " ")


def test_latest_and_listing_per_run(registry_url: str, tmp_path: Path) -> None:
    with Registry.open(registry_url) as reg:
        a, b, idle = (start(reg, tmp_path, name).id for name in ("a", "b", "idle"))
        made = []
        for run_id, step in ((a, 10), (b, 10), (a, 20), (a, 5)):  # a's last is step 5
            report = make_report(["0", "3"], step=step)
            made.append(reg.record_evaluation(report, run_id=run_id, target=tmp_path / str(step)))
        hf = reg.record_evaluation(make_report(["0"]), run_id=None, target=tmp_path / "hf")

        latest = latest_evaluation(reg, a[:8])
        assert latest is not None and (latest.id, latest.step) == (made[3], 5)
        assert [p["id"] for p in latest.predictions] == ["q0", "q1"]
        assert latest_evaluation(reg, idle) is None
        with pytest.raises(RegistryError, match="no run with id"):
            latest_evaluation(reg, "zzzz")

        assert [e.id for e in list_evaluations(reg)] == [hf, *reversed(made)]
        assert [e.id for e in list_evaluations(reg, a)] == [made[3], made[2], made[0]]
        assert [e.id for e in list_evaluations(reg, b[:6], limit=5)] == [made[1]]
        assert [e.id for e in list_evaluations(reg, limit=2)] == [hf, made[3]]
        assert list_evaluations(reg, idle) == []
        summary = list_evaluations(reg, b)[0]
        assert (summary.run_id, summary.items, summary.correct, summary.accuracy) == (b, 2, 1, 0.5)
        assert not hasattr(summary, "predictions")


def test_deleting_a_run_deletes_its_evaluations(registry_url: str, tmp_path: Path) -> None:
    with Registry.open(registry_url) as reg:
        gone, kept = start(reg, tmp_path, "gone").id, start(reg, tmp_path, "kept").id
        for run_id in (gone, gone, kept, None):
            reg.record_evaluation(make_report(["0", "1"]), run_id=run_id, target=tmp_path)
        with reg.session() as s:
            s.execute(delete(Run).where(Run.id == gone))
        assert (count(reg, Evaluation), count(reg, EvalPrediction)) == (2, 4)
        assert {e.run_id for e in list_evaluations(reg)} == {kept, None}


def test_resume_forgets_evaluations_of_later_steps(registry_url: str, tmp_path: Path) -> None:
    with Registry.open(registry_url) as reg:
        first = start(reg, tmp_path)
        for step in (10, 20, 30):
            first.evaluation(make_report(["0"], step=step), tmp_path / "r" / str(step))
        assert first.finish("preempted", last_step=30)
        again = reg.start_run(RunInfo(name="r", run_dir=tmp_path / "r", resume_step=20))
        assert [e.step for e in list_evaluations(reg, again.id)] == [20, 10]
        reg.resume_run_at(again.id, 10)  # step 20's checkpoint turned out damaged
        assert [e.step for e in list_evaluations(reg, again.id)] == [10]
        assert count(reg, EvalPrediction) == 1


def test_recorder_writes_evaluations_from_its_writer_thread(
    registry_url: str, tmp_path: Path
) -> None:
    with Registry.open(registry_url) as reg:
        rec = start(reg, tmp_path, write_every_s=3600.0)  # metric points wait for a flush
        rec.log_metrics(20, {"eval/accuracy": 0.5})
        report = make_report(["0", "3"], step=20, category="arithmetic")
        evaluation_id = rec.evaluation(report, tmp_path / "r" / "checkpoints" / "20")
        assert evaluation_id is not None
        assert rec.flush()
        row, predictions = stored(reg, evaluation_id)
        assert (row.run_id, row.step, row.items, row.correct) == (rec.id, 20, 2, 1)
        assert row.target == str(tmp_path / "r" / "checkpoints" / "20")
        assert [p.item_id for p in predictions] == ["q0", "q1"]
        assert list(get_evaluation(reg, evaluation_id).predictions) == [
            p.to_dict() for p in report.predictions
        ]
        assert get_run(reg, rec.id).metrics == {"eval/accuracy": 0.5}
        assert rec.finish("completed", last_step=20)


def test_recorder_refuses_a_report_it_cannot_store(
    registry_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with Registry.open(registry_url) as reg:
        rec = start(reg, tmp_path)
        twice = make_report(["0"])
        twice.predictions.append(twice.predictions[0])
        with caplog.at_level(logging.WARNING, logger="tunixrt.registry"):
            assert rec.evaluation(twice, tmp_path) is None
            rec.log_metrics(1, {"loss": 1.0})
            assert not rec.finish("completed", last_step=1)  # the record is incomplete
        assert "not recorded" in caplog.text and "'q0'" in caplog.text
        assert get_run(reg, rec.id).metrics == {"loss": 1.0}
        assert count(reg, Evaluation) == 0


def test_recorder_never_waits_for_a_hung_database(
    registry_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An evaluation queued while the database hangs is kept and written afterwards."""
    wait_s = 0.5
    with Registry.open(registry_url, busy_timeout_s=wait_s, statement_timeout_s=wait_s) as reg:
        rec = start(reg, tmp_path, write_every_s=0.0)
        report = make_report(["0", "2", "5"], step=7)
        with caplog.at_level(logging.WARNING, logger="tunixrt.registry"):
            with database_hung(registry_url):
                began = time.perf_counter()
                evaluation_id = rec.evaluation(report, tmp_path / "ckpt")
                assert time.perf_counter() - began < 0.05
                assert not rec.flush(timeout_s=10.0)  # the writer's attempt times out
                assert rec.pending > 0
            assert rec.finish("completed", last_step=7, timeout_s=10.0)
        assert "unreachable" in caplog.text
        assert evaluation_id is not None
        assert latest_evaluation(reg, rec.id) == get_evaluation(reg, evaluation_id)
        assert count(reg, EvalPrediction) == 3


# -- migrating a registry that already holds runs ---------------------------------------


def rows_of(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    """Every row of the tables of revision 0001, in key order, read by reflection so
    that this stays the 0001 schema whatever the models become."""
    meta = MetaData()
    meta.reflect(engine, only=OLD_TABLES)
    with engine.connect() as conn:
        return {
            name: [
                dict(r._mapping) for r in conn.execute(select(table).order_by(*table.primary_key))
            ]
            for name, table in meta.tables.items()
        }


def kept(before: dict[str, list[dict[str, Any]]], after: dict[str, list[dict[str, Any]]]) -> bool:
    """Whether `after` holds every row of `before` unchanged, with any column a later
    revision added left empty."""
    if before.keys() != after.keys():
        return False
    for name, rows in before.items():
        if len(rows) != len(after[name]):
            return False
        for old, new in zip(rows, after[name], strict=True):
            if {k: new[k] for k in old} != old or any(
                new[k] is not None for k in new.keys() - old.keys()
            ):
                return False
    return True


def fill_at_0001(engine: Engine) -> None:
    meta = MetaData()
    meta.reflect(engine, only=OLD_TABLES)
    t = meta.tables
    now = datetime(2026, 12, 1, 12, 30, tzinfo=UTC)
    run = {
        "name": "old",
        "status": "completed",
        "created_at": now,
        "started_at": now,
        "ended_at": now,
        "heartbeat_at": now,
        "config": {"optimizer": {"lr": 3e-4}},
        "overrides": ["optimizer.lr=3e-4"],
        "config_hash": "c" * 64,
        "host": "h",
        "versions": {"jax": "0.10.2"},
        "last_step": 20,
        "resume_count": 0,
    }
    with engine.begin() as conn:
        sweep = {"id": "s1", "folder": "/s", "sweeper": "basic", "search_space": ["lr=1,2"]}
        conn.execute(t["sweeps"].insert(), [sweep | {"status": "completed", "created_at": now}])
        conn.execute(
            t["runs"].insert(),
            [run | {"id": f"run{i}", "run_dir": f"/runs/{i}", "sweep_id": "s1"} for i in (1, 2)],
        )
        points = [
            {"run_id": f"run{i}", "name": "loss", "step": s, "value": 1 / s, "time": now}
            for i in (1, 2)
            for s in (10, 20)
        ]
        conn.execute(t["metric_history"].insert(), points)
        conn.execute(t["metric_latest"].insert(), [p for p in points if p["step"] == 20])
        checkpoint = {"run_id": "run1", "step": 20, "path": "/ckpt/20", "metrics": {"loss": 0.05}}
        conn.execute(t["checkpoints"].insert(), [checkpoint | {"time": now}])
        conn.execute(t["tags"].insert(), [{"run_id": "run2", "key": "note", "value": "base"}])


def test_upgrade_from_0001_keeps_every_row(registry_url: str, tmp_path: Path) -> None:
    engine = make_engine(registry_url)
    try:
        assert migrate.upgrade(engine, "0001") == "0001"
        fill_at_0001(engine)
        before = rows_of(engine)
        assert len(before["metric_history"]) == 4 and len(before["tags"]) == 1

        assert migrate.upgrade(engine) == head_revision()
        assert kept(before, rows_of(engine))
        with Registry.open(registry_url, create=False) as reg:
            report = make_report(["0", "7"], step=20)
            evaluation_id = reg.record_evaluation(report, run_id="run1", target="/ckpt/20")
            latest = latest_evaluation(reg, "run1")
            assert latest is not None and latest.id == evaluation_id and latest.correct == 1
            assert get_run(reg, "run1").checkpoints[0].path == "/ckpt/20"

        assert migrate.downgrade(engine, "0001") == "0001"
        assert rows_of(engine) == before
        assert not {"evaluations", "predictions"} & set(inspect(engine).get_table_names())
        assert migrate.upgrade(engine) == head_revision()  # and up again
    finally:
        engine.dispose()
