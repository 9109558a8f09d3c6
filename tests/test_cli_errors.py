"""The `tunixrt` CLI's one error boundary: bad input in any subcommand is one line on
stderr naming the command, exit code 2, no traceback, no password."""

from __future__ import annotations

import pytest

from tunixrt.cli.main import main

SECRET = "s3cr3t-pw"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["bench", "model=nope"], "model"),
        (["bench", "optimizer.lr=abc"], "optimizer.lr"),
        (["bench", "trainer.max_steps=0"], "trainer.max_steps"),
        (["bench", "dataset=jsonl", "dataset.path=/no/such/file.jsonl"], "/no/such/file.jsonl"),
        (["export", "/no/such/run", "out", "--registry", "sqlite:///no/r.db"], "no registry"),
        (["runs", "show", "abc", "--registry", "sqlite:///no/r.db"], "no registry"),
        (["eval", "abc", "--registry", "sqlite:///no/r.db"], "no registry"),
        (["eval", "abc", "eval.nope=1"], "eval.nope"),
        (["eval", "compare", "abc", "def", "--registry", "sqlite:///no/r.db"], "no registry"),
        (["generate", "abc", "--prompt", "hi", "--registry", "sqlite:///no/r.db"], "no registry"),
    ],
    ids=[
        "unknown-option",
        "wrong-type",
        "out-of-range",
        "missing-file",
        "export",
        "runs",
        "eval",
        "eval-override",
        "eval-compare",
        "generate",
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv, says, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = run(capsys, *argv)
    assert code == 2
    assert err.startswith(f"tunixrt {argv[0]}") and err.count("\n") == 1, err
    assert says in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())  # a failed command leaves nothing behind


def test_a_lookup_never_creates_a_registry(capsys, tmp_path):
    missing = tmp_path / "none" / "registry.db"
    lookups = (
        ["export", "abc123", str(tmp_path / "out")],
        ["runs", "show", "abc123"],
        ["eval", "abc123"],
        ["eval", "compare", "abc123", "def456"],
        ["generate", "abc123", "--prompt", "hi"],
    )
    for argv in lookups:
        code, err = run(capsys, *argv, "--registry", f"sqlite:///{missing}")
        assert code == 2 and "no registry at" in err
    assert not missing.parent.exists()


def test_a_password_never_shows(capsys):
    url = f"postgresql+psycopg://postgres:{SECRET}@127.0.0.1:1/x"
    code, err = run(capsys, "export", "someid", "/tmp/out", "--registry", url)
    assert code == 2 and SECRET not in err and "***" in err
    code, err = run(capsys, "eval", "compare", "someid", "other", "--registry", url)
    assert code == 2 and SECRET not in err and "***" in err
