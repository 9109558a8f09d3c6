"""Answer evaluation during training: accuracy scalars and the sample table read back
with TensorBoard's reader, checked against generations made apart from the run;
eval/accuracy as the best-checkpoint metric and as the sweep metric."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.config import compose_train
from tests.helpers.tensorboard import read_scalars
from tunixrt.checkpoint import Checkpointer
from tunixrt.config import BestMode, CheckpointConfig, validate
from tunixrt.errors import InputError
from tunixrt.evaluation import extract_answer, file_sha256, generate_text, read_eval_set
from tunixrt.export import load_model
from tunixrt.registry import Registry, latest_evaluation, list_evaluations, list_runs
from tunixrt.train import train
from tunixrt.train.answers import answer_eval
from tunixrt.train.state import LoopState

FAST = ["debug=fast", "registry.url=null", "checkpoint.every_steps=3"]
EVAL = ["eval.max_examples=6", "eval.max_new_tokens=8", "eval.batch_size=8", "eval.samples=3"]
BUNDLED_EVAL = Path(__file__).parents[1] / "datasets" / "dev-reasoning" / "eval.jsonl"


def read_texts(logdir: Path) -> dict[str, list[tuple[int, str]]]:
    """Text summaries of an event folder, read with TensorBoard's EventAccumulator."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util.tensor_util import make_ndarray

    acc = EventAccumulator(str(logdir), size_guidance={"tensors": 0})
    acc.Reload()
    out = {}
    for tag in acc.Tags()["tensors"]:
        if acc.SummaryMetadata(tag).plugin_data.plugin_name == "text":
            out[tag] = [
                (e.step, make_ndarray(e.tensor_proto).item().decode()) for e in acc.Tensors(tag)
            ]
    return out


@pytest.fixture(scope="module")
def known_answers(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, float]]:
    """An eval file whose right answers are known for the model a debug=fast run ends
    with: a first run (no answer evaluation) gives that model, its greedy answers to six
    bundled prompts become the expected answers of four items (two wrong ones are made
    up), and training is deterministic, so a second run ends with the same model."""
    folder = tmp_path_factory.mktemp("reference")
    train(compose_train([*FAST, "eval.max_examples=0"]), folder / "run")
    _, tokenizer, model = load_model(
        Checkpointer(folder / "run" / "checkpoints", every_steps=0, keep=10, read_only=True), 6
    )
    items = read_eval_set(BUNDLED_EVAL)[:6]
    texts = generate_text(model, tokenizer, [i.prompt for i in items], max_new_tokens=8)
    answers = [extract_answer(t) for t in texts]
    assert all(answers), f"every greedy answer must be non-empty to be matched: {texts}"
    lines = []
    for n, (item, answer) in enumerate(zip(items, answers, strict=True)):
        right = n not in (1, 4)
        lines.append(
            {
                "id": f"k{n}",
                "prompt": item.prompt,
                "expected_answer": answer if right else "surely not this 12345",
                "category": "first" if n < 3 else "second",
                "section": "known",
            }
        )
    path = folder / "known.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    # first: k0, k2 right of 3; second: k3, k5 right of 3
    return path, {"eval/accuracy": 4 / 6, "eval/accuracy/first": 2 / 3}


def test_accuracy_scalars_and_samples_match_independent_generation(
    tmp_path: Path, known_answers: tuple[Path, dict[str, float]]
) -> None:
    path, expected = known_answers
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    cfg = compose_train([*FAST, *EVAL, f"eval.path={path}", f"registry.url={url}", "eval.every=4"])
    result = train(cfg, tmp_path / "run")

    scalars = read_scalars(tmp_path / "run" / "tb")
    # every 4 steps, and at the end
    assert [s for s, _ in scalars["eval/accuracy"]] == [4, 6]
    final = {tag: values[-1][1] for tag, values in scalars.items()}
    assert final["eval/accuracy"] == pytest.approx(expected["eval/accuracy"])
    assert final["eval/accuracy/first"] == pytest.approx(expected["eval/accuracy/first"])
    assert final["eval/accuracy/second"] == pytest.approx(2 / 3)
    assert final["eval/accuracy/known"] == pytest.approx(4 / 6)  # the section
    assert result.metric("eval/accuracy") == pytest.approx(4 / 6)

    texts = read_texts(tmp_path / "run" / "tb")
    step, table = texts["eval/samples"][-1]
    assert step == 6
    rows = [line for line in table.splitlines() if line.startswith("| k")]
    assert [r.split(" | ")[0] for r in rows] == ["| k0", "| k1", "| k2"]  # eval.samples=3
    assert rows[1].rstrip(" |").endswith("False") and rows[0].rstrip(" |").endswith("True")

    # the registry holds both evaluations, each with its six predictions
    with Registry.open_existing(url) as reg:
        run = list_runs(reg)[0]
        evaluations = list_evaluations(reg, run.id)
        latest = latest_evaluation(reg, run.id)
    assert sorted(e.step for e in evaluations) == [4, 6]
    assert latest is not None and latest.step == 6
    assert latest.accuracy == pytest.approx(4 / 6) and latest.eval_sha256 == file_sha256(path)
    assert latest.target == str(tmp_path / "run" / "checkpoints" / "6")
    first = min(evaluations, key=lambda e: e.step or 0)
    assert first.target == str(tmp_path / "run")  # step 4 saves no checkpoint
    assert [(p["id"], p["correct"]) for p in latest.predictions] == [
        (f"k{n}", n not in (1, 4)) for n in range(6)
    ]


def test_checkpoint_meta_keeps_accuracy_for_a_finished_run(
    tmp_path: Path, known_answers: tuple[Path, dict[str, float]]
) -> None:
    """Starting a finished run again reports its final accuracy from the checkpoint,
    and eval/accuracy as keep_best_metric keeps the best step (max) besides the newest."""
    path, expected = known_answers
    overrides = [
        *FAST,
        *EVAL,
        f"eval.path={path}",
        "checkpoint.keep=1",
        "checkpoint.keep_best_metric=eval/accuracy",
        "optimized_metric=eval/accuracy",
    ]
    train(compose_train(overrides), tmp_path / "run")
    again = train(compose_train(overrides), tmp_path / "run")
    assert again.final_step == 6
    assert again.metric("eval/accuracy") == pytest.approx(expected["eval/accuracy"])
    accuracy = dict(read_scalars(tmp_path / "run" / "tb")["eval/accuracy"])
    kept = Checkpointer(
        tmp_path / "run" / "checkpoints", every_steps=0, keep=10, read_only=True
    ).steps()
    # keep=1 keeps the newest (6); the best by accuracy is 3 only if it beat 6
    assert kept == ([3, 6] if accuracy[3] > accuracy[6] else [6])


def test_no_eval_set_means_no_answer_evaluation() -> None:
    # dataset=jsonl has no eval set of its own
    cfg = validate(compose_train(["dataset=jsonl", f"dataset.path={BUNDLED_EVAL}"]))
    assert cfg.dataset.eval_path is None and answer_eval(cfg) is None
    on = validate(compose_train(["eval.max_examples=5"]))
    answers = answer_eval(on)
    assert answers is not None and len(answers.items) == 5
    assert answers.path.endswith("eval.jsonl") and answers.every == on.trainer.eval_every


def test_families_choose_the_eval_categories() -> None:
    cfg = validate(
        compose_train(["eval.max_examples=40", "dataset.families=[sorting,unit_conversion]"])
    )
    answers = answer_eval(cfg)
    assert answers is not None and len(answers.items) == 40
    assert {i.category for i in answers.items} == {"sorting", "unit_conversion"}


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (["eval.max_examples=0", "checkpoint.keep_best_metric=eval/accuracy"], "keep_best"),
        (["eval.max_examples=0", "optimized_metric=eval/accuracy"], "optimized_metric"),
        (["eval.max_examples=3", "eval.categories=[nope]"], "eval.categories"),
        (["eval.max_examples=3", "eval.max_new_tokens=250"], "eval.max_new_tokens=250"),
    ],
)
def test_bad_eval_settings_fail_before_compiling(
    tmp_path: Path, overrides: list[str], named: str
) -> None:
    with pytest.raises(InputError, match=named):
        train(compose_train([*FAST, *overrides]), tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists() or not any(
        (tmp_path / "run" / "checkpoints").iterdir()
    )


def test_best_mode_follows_the_metric() -> None:
    assert CheckpointConfig(keep_best_metric="eval/accuracy").mode == "max"
    assert CheckpointConfig(keep_best_metric="eval/loss").mode == "min"
    chosen = CheckpointConfig(keep_best_metric="eval/accuracy", best_mode=BestMode.min)
    assert chosen.mode == "min"


def test_loop_state_from_a_checkpoint_without_accuracy() -> None:
    old = {"step": 4, "tokens_seen": 9, "schedule_steps": 6, "last_eval_loss": 1.5}
    state = LoopState.from_dict({**old, "best_eval_loss": 1.5})
    assert state.step == 4 and state.last_eval_accuracy is None
