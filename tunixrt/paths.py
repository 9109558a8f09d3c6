"""Where tunixrt finds its own files and writes by default."""

from __future__ import annotations

from pathlib import Path

# The folder runs, the default registry (registry.db) and the compile cache go under.
OUTPUTS = "outputs"


def repo_path(*parts: str) -> Path:
    """A path inside the installed package's data (wheel) or the source checkout:
    `repo_path("datasets", "dev-reasoning")`, `repo_path("conf")`."""
    package = Path(__file__).resolve().parent
    packaged = package / ("_" + parts[0])
    base = packaged if packaged.exists() else package.parent / parts[0]
    return base.joinpath(*parts[1:])
