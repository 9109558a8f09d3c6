"""`tunixrt eval TARGET [eval.KEY=VALUE ...]`: answer accuracy of a checkpoint or a Hugging
Face folder on an eval set, as a scorecard, report.json, predictions.jsonl and a registry
record. `tunixrt eval compare A B` (tunixrt/cli/compare.py) shares the command word.

The command evaluates every item unless `eval.max_examples=N` (N > 0) is given: the
config's default of 64 sizes evaluations during training, not this one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunixrt.cli.runs import table
from tunixrt.config import ConfigError, EvalConfig
from tunixrt.targets import Target

if TYPE_CHECKING:
    from tunixrt.evaluation import EvalItem, EvalReport

PREFIX = "eval."
BUNDLED_DATASET = "dev_reasoning"  # DatasetConfig.name of the bundled traces


# -- what to evaluate ---------------------------------------------------------------------


def eval_config(base: EvalConfig, overrides: Sequence[str]) -> EvalConfig:
    """`base` with eval.KEY=VALUE overrides, typed and range-checked by EvalConfig."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    pairs = []
    for text in overrides:
        key, sep, value = text.partition("=")
        if not sep or not key.startswith(PREFIX) or key == PREFIX:
            raise ConfigError(f"{text!r}: expected eval.KEY=VALUE, e.g. eval.max_examples=50")
        pairs.append(f"{key[len(PREFIX) :]}={value}")
    try:
        node = OmegaConf.merge(OmegaConf.structured(base), OmegaConf.from_dotlist(pairs))
        obj = OmegaConf.to_object(node)
    except OmegaConfBaseException as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        key = getattr(err, "full_key", None) or "?"
        raise ConfigError(f"invalid override eval.{key}: {reason}") from None
    assert isinstance(obj, EvalConfig)
    return obj


def given_keys(overrides: Sequence[str]) -> set[str]:
    return {text.partition("=")[0][len(PREFIX) :] for text in overrides}


def base_config(target: Target, overrides: Sequence[str]) -> EvalConfig:
    """The run's own eval settings (defaults for a Hugging Face folder), every item
    unless eval.max_examples is given."""
    import dataclasses

    base = EvalConfig() if target.cfg is None else target.cfg.eval
    if "max_examples" not in given_keys(overrides):
        base = dataclasses.replace(base, max_examples=0)
    return base


def eval_path(target: Target, cfg: EvalConfig) -> Path:
    """eval.path, else the run's dataset.eval_path, else the bundled eval set for a
    Hugging Face folder or a run trained on the bundled traces."""
    from tunixrt.paths import repo_path

    bundled = repo_path("datasets", "dev-reasoning", "eval.jsonl")
    run = target.cfg
    if cfg.path is not None:
        path = Path(cfg.path)
    elif run is None or (run.dataset.eval_path is None and run.dataset.name == BUNDLED_DATASET):
        path = bundled
    elif run.dataset.eval_path is not None:
        path = Path(run.dataset.eval_path)
    else:
        raise ConfigError(
            f"the run's config names no eval set (eval.path, dataset.eval_path) and "
            f"dataset={run.dataset.name} has none bundled; give eval.path=FILE"
        )
    if not path.is_file():
        raise ConfigError(f"{path}: no such eval file (eval.path)")
    return path


def categories(target: Target, cfg: EvalConfig) -> list[str] | None:
    """eval.categories, else the task families the run trained on (all for HF)."""
    if cfg.categories is not None or target.cfg is None:
        return cfg.categories
    return target.cfg.dataset.families


def report_folder(target: Target, path: Path, out: str | None) -> Path:
    if out is not None:
        return Path(out)
    if target.hf_dir is not None:
        return target.hf_dir / "eval" / path.stem
    assert target.run_dir is not None
    return target.run_dir / "eval" / f"step-{target.step}-{path.stem}"


# -- running ------------------------------------------------------------------------------


def _items(path: Path, cfg: EvalConfig, chosen: list[str] | None) -> list[EvalItem]:
    from tunixrt.evaluation import read_eval_set, select_items

    limit = cfg.max_examples or None  # 0: every item
    items = select_items(read_eval_set(path), max_examples=limit, categories=chosen)
    if not items:
        raise ConfigError(f"{path}: no items of categories {chosen} (eval.categories)")
    return items


def evaluate(target: Target, cfg: EvalConfig, path: Path, items: list[EvalItem]) -> EvalReport:
    """Load the model, check that every generation fits it, and run the evaluation with
    a progress bar on a terminal."""
    from tqdm import tqdm

    from tunixrt.evaluation import GenerationSettings, prompt_ids, run_eval
    from tunixrt.evaluation.runner import check_length
    from tunixrt.targets import load

    tokenizer, model = load(target)
    longest = max(len(prompt_ids(tokenizer, item.prompt)) for item in items)
    check_length(model, longest, cfg.max_new_tokens, "eval.max_new_tokens")
    bar = tqdm(
        total=len(items),
        unit="item",
        desc="eval",
        file=sys.stderr,
        dynamic_ncols=True,
        disable=not sys.stderr.isatty(),
    )
    with bar:
        return run_eval(
            model,
            tokenizer,
            path,
            GenerationSettings.of(cfg),
            items=items,
            step=target.step,
            on_batch=bar.update,
        )


def write_report(folder: Path, report: dict[str, Any], predictions: list[dict[str, Any]]) -> None:
    """predictions.jsonl, then report.json (each replaced whole): a report.json on disk
    always has its predictions beside it."""
    from tunixrt.files import atomic_write_text

    folder.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in predictions)
    atomic_write_text(folder / "predictions.jsonl", lines)
    atomic_write_text(folder / "report.json", json.dumps(report, indent=2) + "\n")


def record_evaluation(report: EvalReport, target: Target, registry_url: str | None) -> str:
    """Store the evaluation and its predictions in the registry, linked to the run that
    wrote the checkpoint when the registry knows its folder; the evaluation's id."""
    from tunixrt.registry import Registry, run_id_of_folder
    from tunixrt.registry.urls import cli_url

    with Registry.open(cli_url(registry_url)) as registry:
        run_id = None if target.run_dir is None else run_id_of_folder(registry, target.run_dir)
        return registry.record_evaluation(report, run_id=run_id, target=target.folder)


# -- output -------------------------------------------------------------------------------


def scorecard(aggregates: dict[str, Any]) -> str:
    """Correct, total and accuracy overall and per category, section and difficulty."""
    rows: list[list[Any]] = []

    def add(group: str, name: str, tally: dict[str, Any]) -> None:
        rows.append([group, name, tally["correct"], tally["total"], f"{tally['accuracy']:.3f}"])

    add("overall", "all", aggregates["overall"])
    for group in ("category", "section", "difficulty"):
        for name, tally in aggregates[f"by_{group}"].items():
            add(group, name, tally)
    return table(["GROUP", "NAME", "CORRECT", "TOTAL", "ACCURACY"], rows)


def summary(report: EvalReport, target: Target, folder: Path, evaluation_id: str | None) -> str:
    s = report.settings
    mode = "greedy" if s.temperature == 0 else f"temperature {s.temperature}, seed {s.seed}"
    head = [
        ("model", target.describe()),
        ("eval set", f"{report.eval_path} (sha256 {report.eval_sha256[:12]})"),
        ("scorer", f"{report.scorer} v{report.scorer_version}"),
        ("generation", f"{mode}, at most {s.max_new_tokens} new tokens"),
        ("items", f"{len(report.predictions)} in {report.seconds:.1f} s"),
    ]
    tail = [("report", f"{folder} (report.json, predictions.jsonl)")]
    if evaluation_id is not None:
        tail.append(("registry", f"evaluation {evaluation_id}"))

    def block(pairs: list[tuple[str, str]]) -> str:
        return "\n".join(f"{k:<11} {v}" for k, v in pairs)

    return "\n\n".join([block(head), scorecard(report.aggregates), block(tail)])


def _warn(text: str) -> None:
    sys.stderr.write(f"tunixrt eval: warning: {text}\n")


def run(args: argparse.Namespace) -> int:
    if args.target == "compare":
        from tunixrt.cli import compare

        args.eval_command = "compare"
        return compare.run(args)
    from tunixrt.registry import RegistryError
    from tunixrt.registry.urls import mask_text
    from tunixrt.targets import resolve

    eval_config(EvalConfig(), args.rest)  # a bad override fails before anything loads
    target = resolve(args.target, step=args.step, registry_url=args.registry)
    cfg = eval_config(base_config(target, args.rest), args.rest)
    path = eval_path(target, cfg)
    items = _items(path, cfg, categories(target, cfg))
    report = evaluate(target, cfg, path, items)
    folder = report_folder(target, path, args.out)
    evaluation_id = None
    if not args.no_registry:
        try:
            evaluation_id = record_evaluation(report, target, args.registry)
        except RegistryError as err:
            _warn(f"not recorded in the registry: {mask_text(str(err))}")
    document = {
        **report.to_dict(),
        "target": os.path.abspath(target.folder),
        "evaluation_id": evaluation_id,
    }
    write_report(folder, document, [p.to_dict() for p in report.predictions])
    if args.json:
        out = json.dumps({**document, "report_dir": str(folder)}, indent=2)
    else:
        out = summary(report, target, folder, evaluation_id)
    sys.stdout.write(out + "\n")
    return 0


USAGE = """tunixrt eval [-h] [--step N] [--out FOLDER] [--json] [--no-registry]
                    [--registry URL] TARGET [eval.KEY=VALUE ...]
       tunixrt eval compare [--json] [--registry URL] A B"""

DESCRIPTION = """\
Generate answers for the items of an eval set and score them. TARGET is a registered run
id, a run folder (its newest checkpoint, or --step), a checkpoint step folder
(RUN/checkpoints/STEP) or a Hugging Face folder (config.json). The eval set and the
generation settings are the run's own (eval.*; the eval set falls back to
dataset.eval_path, and to the bundled datasets/dev-reasoning/eval.jsonl for a Hugging
Face folder or a run on the bundled traces); eval.KEY=VALUE overrides any of them. Every
item is evaluated unless eval.max_examples=N (N > 0) is given.

Prints a scorecard (overall, per category, section and difficulty) or, with --json, the
report; writes report.json and predictions.jsonl to RUN/eval/step-STEP-NAME/ (NAME: the
eval file's stem), FOLDER/eval/NAME/ for a Hugging Face folder, or --out; and records
the evaluation and its predictions in the registry.

`tunixrt eval compare A B` compares two evaluations: A and B are each an evaluation id
(or prefix) in the registry, a run id (its latest evaluation), or a folder or
report.json written by `tunixrt eval`. It prints the accuracy of both overall and per
category with the difference, and the items (matched by id) that went from right to
wrong and from wrong to right; it warns when the eval files or the scorers differ."""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "eval",
        help="answer accuracy of a checkpoint or Hugging Face folder; `eval compare A B`",
        usage=USAGE,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("target", metavar="TARGET", help="run id, run folder, checkpoint, HF folder")
    p.add_argument(
        "rest",
        nargs="*",
        metavar="eval.KEY=VALUE",
        help="overrides, e.g. eval.max_examples=50 eval.max_new_tokens=128 (compare: A B)",
    )
    p.add_argument("--step", type=int, metavar="N", help="the checkpoint step of a run")
    p.add_argument("--out", metavar="FOLDER", help="write report.json and predictions here")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-registry", action="store_true", help="do not record the evaluation")
    p.add_argument(
        "--registry",
        metavar="URL",
        help="SQLAlchemy URL (default: $TUNIXRT_REGISTRY_URL, else outputs/registry.db)",
    )
    p.set_defaults(func=run, eval_command=None, more_positionals="rest")
