"""`tunixrt eval`, `tunixrt eval compare` and `tunixrt generate` through main(argv), on a
run trained for two steps and on a tiny Hugging Face folder: the files written read back
and agree with the scorer, bad overrides fail in one line, flips are found by id."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.config import compose_train
from tests.helpers.data import write_jsonl
from tests.helpers.hf import save_hf_case
from tunixrt.cli.main import main
from tunixrt.data.chat import ChatTokenizer
from tunixrt.evaluation import extract_answer, generate_text, is_correct
from tunixrt.export import load_model
from tunixrt.models.hf import load_pretrained
from tunixrt.registry import Registry, get_evaluation, run_id_of_folder
from tunixrt.targets import open_checkpoints
from tunixrt.train.loop import train

pytestmark = pytest.mark.slow
FAST = ["eval.max_examples=4", "eval.max_new_tokens=8", "eval.batch_size=4"]
STEP = 2


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def read_report(folder: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    report = json.loads((folder / "report.json").read_text())
    lines = (folder / "predictions.jsonl").read_text().splitlines()
    return report, [json.loads(line) for line in lines]


def check_consistent(report: dict[str, Any], predictions: list[dict[str, Any]]) -> None:
    """The report's figures are those of its predictions, and each verdict is the scorer's."""
    overall = report["aggregates"]["overall"]
    correct = sum(p["correct"] for p in predictions)
    assert report["items"] == overall["total"] == len(predictions)
    assert overall["correct"] == correct
    assert overall["accuracy"] == pytest.approx(correct / len(predictions))
    assert [is_correct(p["generated"], p["expected"]) for p in predictions] == [
        p["correct"] for p in predictions
    ]
    by_category = report["aggregates"]["by_category"]
    assert sum(t["total"] for t in by_category.values()) == len(predictions)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A debug-sized run of two steps on the bundled traces, registered and checkpointed."""
    folder = tmp_path_factory.mktemp("eval_run") / "run"
    train(compose_train(["debug=fast", f"trainer.max_steps={STEP}"]), folder)
    return folder


@pytest.fixture(scope="module")
def run_report(run_dir: Path) -> tuple[Path, dict[str, Any]]:
    """`tunixrt eval RUN --json`: the report folder and the printed object."""
    out = io.StringIO()  # capsys is per test; a module fixture captures by itself
    with contextlib.redirect_stdout(out):
        assert main(["eval", str(run_dir), *FAST, "--json"]) == 0
    return run_dir / "eval" / f"step-{STEP}-eval", json.loads(out.getvalue())


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hf") / "qwen2"
    folder.mkdir()
    save_hf_case("qwen2", folder)
    return folder


def test_eval_of_a_run_folder_writes_a_report_that_agrees_with_its_predictions(run_report):
    folder, printed = run_report
    report, predictions = read_report(folder)
    assert printed["report_dir"] == str(folder)
    assert {k: v for k, v in printed.items() if k != "report_dir"} == report
    assert report["step"] == STEP and report["items"] == 4
    assert report["eval_path"].endswith("datasets/dev-reasoning/eval.jsonl")
    assert report["generation"]["max_new_tokens"] == 8
    assert [p["id"] for p in predictions] == [f"eval-{i:04d}" for i in range(4)]
    assert all(0 < p["new_tokens"] <= 8 for p in predictions)
    check_consistent(report, predictions)


def test_eval_is_recorded_in_the_registry_under_its_run(run_dir, run_report, session_registry):
    folder, printed = run_report
    _, predictions = read_report(folder)
    with Registry.open(session_registry) as registry:
        run_id = run_id_of_folder(registry, run_dir)
        stored = get_evaluation(registry, printed["evaluation_id"][:10])
    assert run_id is not None and stored.run_id == run_id and stored.step == STEP
    assert stored.target == str(run_dir / "checkpoints" / str(STEP)) == printed["target"]
    assert list(stored.predictions) == predictions
    assert stored.accuracy == printed["aggregates"]["overall"]["accuracy"]


def test_eval_of_a_checkpoint_folder_matches_the_run_folder(run_dir, run_report, tmp_path, capsys):
    out_dir = tmp_path / "out"
    checkpoint = run_dir / "checkpoints" / str(STEP)
    code, out, err = run_cli(capsys, "eval", checkpoint, *FAST, "--out", out_dir)
    assert code == 0, err
    for row in ("overall", "category", "section", "difficulty"):
        assert f"\n{row} " in out, row
    assert f"{out_dir} (report.json, predictions.jsonl)" in out
    report, predictions = read_report(out_dir)
    _, from_run = read_report(run_report[0])
    assert predictions == from_run  # the same checkpoint, greedy
    assert report["step"] == STEP


def test_eval_by_run_id_and_compare_by_evaluation_and_run_id(
    run_dir, run_report, session_registry, tmp_path, capsys
):
    with Registry.open(session_registry) as registry:
        run_id = run_id_of_folder(registry, run_dir)
    assert run_id is not None
    code, out, err = run_cli(
        capsys, "eval", run_id[:8], *FAST, "--out", tmp_path / "by_id", "--json"
    )
    assert code == 0, err
    again = json.loads(out)
    assert again["evaluation_id"] != run_report[1]["evaluation_id"]
    assert read_report(tmp_path / "by_id")[1] == read_report(run_report[0])[1]

    # the first evaluation by id prefix against the run's latest: the same answers
    first = run_report[1]["evaluation_id"][:8]
    code, out, err = run_cli(capsys, "eval", "compare", first, run_id[:8], "--json")
    assert code == 0 and err == ""
    result = json.loads(out)
    assert result["a"]["source"].startswith(f"evaluation {first}")
    assert result["b"]["source"].startswith(f"evaluation {again['evaluation_id'][:8]}")
    assert result["matched"] == 4 and result["overall"]["diff"] == 0
    assert result["right_to_wrong"] == result["wrong_to_right"] == []

    code, _, err = run_cli(capsys, "eval", "compare", first, "feedface0")
    assert code == 2 and "neither a report folder, an evaluation id nor a run id" in err


def test_eval_of_a_hugging_face_folder_scores_a_hand_made_eval_set(hf_dir, tmp_path, capsys):
    """Two of four items expect exactly what the model says: accuracy 0.5."""
    prompts = ["t5 t6 t7", "t9 t3", "t11 t12 t13 t14", "t20"]
    model, tokenizer = load_pretrained(hf_dir), ChatTokenizer.from_folder(hf_dir)
    texts = generate_text(model, tokenizer, prompts, max_new_tokens=6)
    items = [
        {
            "id": f"q{i}",
            "prompt": p,
            "expected_answer": extract_answer(t) if i % 2 == 0 else "nothing said",
            "category": "even" if i % 2 == 0 else "odd",
        }
        for i, (p, t) in enumerate(zip(prompts, texts, strict=True))
    ]
    eval_file = write_jsonl(tmp_path / "mine.jsonl", items)
    code, out, err = run_cli(
        capsys, "eval", hf_dir, f"eval.path={eval_file}", "eval.max_new_tokens=6"
    )
    assert code == 0, err
    report, predictions = read_report(hf_dir / "eval" / "mine")
    assert report["step"] is None and report["items"] == 4
    assert report["target"] == str(hf_dir) and f"evaluation {report['evaluation_id']}" in out
    assert [p["generated"] for p in predictions] == texts
    assert report["aggregates"]["overall"]["accuracy"] == 0.5
    assert report["aggregates"]["by_category"]["even"]["accuracy"] == 1.0
    check_consistent(report, predictions)


def test_eval_defaults_to_the_bundled_set_for_a_hugging_face_folder(hf_dir, tmp_path, capsys):
    code, out, err = run_cli(
        capsys, "eval", hf_dir, "eval.max_examples=2", "eval.max_new_tokens=4", "--json"
    )
    assert code == 0, err
    printed = json.loads(out)
    assert printed["eval_path"].endswith("datasets/dev-reasoning/eval.jsonl")
    assert printed["report_dir"] == str(hf_dir / "eval" / "eval")


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("eval.bogus=1", "eval.bogus"),
        ("eval.max_examples=many", "eval.max_examples"),
        ("eval.top_p=2", "eval.top_p"),
        ("max_examples=3", "max_examples=3"),
        ("eval.max_new_tokens=4000", "eval.max_new_tokens=4000"),
    ],
)
def test_a_bad_override_fails_in_one_line_naming_the_key(run_dir, capsys, override, named):
    code, out, err = run_cli(capsys, "eval", run_dir, override)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("tunixrt eval: ") and named in err


def test_missing_targets_are_one_line_errors(run_dir, tmp_path, capsys):
    code, _, err = run_cli(capsys, "eval", tmp_path / "nowhere", *FAST)
    assert code == 2 and "no such folder" in err and err.count("\n") == 1
    code, _, err = run_cli(capsys, "eval", run_dir, "--step", "99", *FAST)
    assert code == 2 and "no checkpoint of step 99" in err
    code, _, err = run_cli(capsys, "eval", run_dir, "eval.path=/no/such.jsonl")
    assert code == 2 and "/no/such.jsonl" in err


def flipped_copy(folder: Path, dest: Path) -> str:
    """A copy of a report folder whose first item has the opposite verdict; its id."""
    shutil.copytree(folder, dest)
    lines = [json.loads(line) for line in (dest / "predictions.jsonl").read_text().splitlines()]
    first = lines[0]
    first["correct"] = not first["correct"]
    first["extracted"] = first["expected"] if first["correct"] else "something else"
    (dest / "predictions.jsonl").write_text("".join(json.dumps(p) + "\n" for p in lines))
    return str(first["id"])


def test_compare_finds_the_flipped_item_by_id(run_report, tmp_path, capsys):
    folder, _ = run_report
    flipped = flipped_copy(folder, tmp_path / "b")
    _, predictions = read_report(folder)
    was_right = predictions[0]["correct"]
    code, out, err = run_cli(
        capsys, "eval", "compare", folder, tmp_path / "b" / "report.json", "--json"
    )
    assert code == 0 and err == ""
    result = json.loads(out)
    assert result["warnings"] == [] and result["matched"] == 4
    moved = result["right_to_wrong" if was_right else "wrong_to_right"]
    assert [f["id"] for f in moved] == [flipped]
    assert moved[0]["expected"] == predictions[0]["expected"]
    assert result["right_to_wrong" if not was_right else "wrong_to_right"] == []
    overall = result["overall"]
    assert overall["diff"] == pytest.approx(-0.25 if was_right else 0.25)
    assert overall["b"] - overall["a"] == pytest.approx(overall["diff"])
    category = predictions[0]["category"]
    assert result["by_category"][category]["diff"] != 0

    code, out, _ = run_cli(capsys, "eval", "compare", folder, tmp_path / "b")
    assert code == 0 and flipped in out and "ACCURACY" in out


def test_compare_warns_when_the_eval_files_or_scorers_differ(run_report, tmp_path, capsys):
    folder, _ = run_report
    shutil.copytree(folder, tmp_path / "b")
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    report["eval_sha256"] = "0" * 64
    report["scorer_version"] = "99"
    (tmp_path / "b" / "report.json").write_text(json.dumps(report))
    code, out, err = run_cli(capsys, "eval", "compare", folder, tmp_path / "b", "--json")
    assert code == 0 and "eval files differ" in err and "scorers differ" in err
    assert len(json.loads(out)["warnings"]) == 2
    code, _, err = run_cli(capsys, "eval", "compare", folder)
    assert code == 2 and err.startswith("tunixrt eval compare: ")


def test_generate_prints_what_generate_text_returns(run_dir, capsys):
    prompt = "What is 12 + 30?"
    with closing(open_checkpoints(run_dir / "checkpoints")) as ck:
        _, tokenizer, model = load_model(ck, STEP)
    want = generate_text(model, tokenizer, [prompt], max_new_tokens=12)[0]
    code, out, err = run_cli(
        capsys, "generate", run_dir, "--prompt", prompt, "--max-new-tokens", "12"
    )
    assert code == 0, err
    assert out == want + "\n"
    code, _, err = run_cli(
        capsys, "generate", run_dir, "--prompt", prompt, "--max-new-tokens", "999"
    )
    assert code == 2 and "--max-new-tokens=999" in err


def test_an_unreachable_registry_warns_and_keeps_the_report(hf_dir, tmp_path, capsys):
    hidden = "hunter2-pw"
    url = f"postgresql+psycopg://postgres:{hidden}@127.0.0.1:1/x"
    argv = ["eval", hf_dir, "eval.max_examples=1", "eval.max_new_tokens=2", "--out", tmp_path]
    code, out, err = run_cli(capsys, *argv, "--registry", url)
    assert code == 0 and "not recorded in the registry" in err and err.count("\n") == 1
    assert hidden not in out + err and "***" in err
    report, predictions = read_report(tmp_path)
    assert report["evaluation_id"] is None and len(predictions) == 1
