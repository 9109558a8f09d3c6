"""Fail when the tracked files hold a secret that the committed baseline does not.

Usage: python .ci/check_secrets.py [BASELINE] (default .secrets.baseline), from the
repo root. detect-secrets scans every file git tracks; a finding counts as known when
the baseline holds the same secret (by hash) in the same file, wherever the line moved
to. Known findings are the audited false positives of the baseline: fake passwords in
tests, the masking patterns, sha256 digests in manifests. To accept a new one after
checking it is not a secret: detect-secrets scan --baseline .secrets.baseline.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path


def findings(report: dict) -> dict[tuple[str, str], dict]:
    """(file, secret hash) -> the finding, from a detect-secrets report."""
    return {
        (path, item["hashed_secret"]): item
        for path, items in report.get("results", {}).items()
        for item in items
    }


def new_secrets(baseline: dict, scan: dict, baseline_path: str) -> list[str]:
    """file:line: type, for every finding of `scan` that `baseline` does not hold. The
    baseline's own hashes are not secrets."""
    known = findings(baseline)
    return [
        f"{path}:{item['line_number']}: {item['type']}"
        for (path, secret), item in sorted(findings(scan).items())
        if (path, secret) not in known and Path(path) != Path(baseline_path)
    ]


def scan() -> dict:
    exe = shutil.which("detect-secrets", path=str(Path(sys.executable).parent))
    if exe is None:
        raise SystemExit("detect-secrets is not installed: pip install -e '.[dev]'")
    out = subprocess.run([exe, "scan"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main(argv: list[str]) -> int:
    path = argv[0] if argv else ".secrets.baseline"
    baseline = json.loads(Path(path).read_text())
    new = new_secrets(baseline, scan(), path)
    for line in new:
        sys.stderr.write(f"secret scan: {line}\n")
    if new:
        sys.stderr.write(
            f"secret scan: {len(new)} finding(s) not in the baseline; remove the secret, or "
            "if it is none, accept it with: detect-secrets scan --baseline .secrets.baseline\n"
        )
        return 1
    sys.stdout.write(f"secret scan: no new secrets ({len(findings(baseline))} known)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
