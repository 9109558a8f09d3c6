"""The CI gates fail when they should: the secret scan on a new secret (wherever the
known ones moved to), the coverage settings on what `make coverage` relies on."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

from tests.helpers.paths import ROOT

# a GitHub token's shape, planted in throwaway repos below; not a credential
FAKE_TOKEN = "ghp_" + "Zq8Xr2Lm4Nv6Bt1Yc3Wd5Ef7Gh9Jk0Pa2Sb4T"  # pragma: allowlist secret


def check_secrets() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "check_secrets", ROOT / ".ci" / "check_secrets.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def git_repo(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    subprocess.run(["git", "init", "-q"], cwd=folder, check=True)
    subprocess.run(["git", "add", "."], cwd=folder, check=True)
    return folder


def scan_into(folder: Path) -> Path:
    exe = Path(sys.executable).parent / "detect-secrets"
    out = subprocess.run([exe, "scan"], cwd=folder, capture_output=True, text=True, check=True)
    (folder / ".secrets.baseline").write_text(out.stdout)
    return folder / ".secrets.baseline"


def test_a_new_secret_fails_and_a_known_one_passes_wherever_it_moved(tmp_path, monkeypatch, capsys):
    gate = check_secrets()
    repo = git_repo(tmp_path / "repo", {"a.py": f'TOKEN = "{FAKE_TOKEN}"\n', "b.py": "x = 1\n"})
    monkeypatch.chdir(repo)
    (repo / "empty.baseline").write_text('{"results": {}}')
    assert gate.main(["empty.baseline"]) == 1  # no baseline entry: a new secret
    assert "a.py:1: GitHub Token" in capsys.readouterr().err
    baseline = scan_into(repo)
    assert gate.main([str(baseline)]) == 0
    (repo / "a.py").write_text(f'"""Moved down."""\n\nTOKEN = "{FAKE_TOKEN}"\n')
    assert gate.main([str(baseline)]) == 0  # the same secret, two lines lower
    (repo / "b.py").write_text(f'OTHER = "{FAKE_TOKEN[:-4]}WXYZ"\n')
    assert gate.main([str(baseline)]) == 1
    assert "b.py:1: GitHub Token" in capsys.readouterr().err


def test_the_committed_baseline_holds_only_audited_false_positives():
    baseline = json.loads((ROOT / ".secrets.baseline").read_text())
    found = [item for items in baseline["results"].values() for item in items]
    assert found and all(item.get("is_secret") is False for item in found)


def test_coverage_follows_subprocesses_with_a_floor():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["coverage"]
    assert "subprocess" in config["run"]["patch"] and config["run"]["branch"]
    assert config["run"]["parallel"] and set(config["run"]["source"]) == {
        "tunixrt",
        "hydra_plugins",
    }
    assert config["report"]["fail_under"] >= 90


@pytest.mark.parametrize("module", ["tunixrt", "hydra_plugins"])
def test_no_coverage_pragmas_in_the_library(module):
    hits = [
        f"{path}:{n}"
        for path in (ROOT / module).rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if "pragma: no cover" in line
    ]
    assert not hits
