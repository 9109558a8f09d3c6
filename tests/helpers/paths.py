"""Paths inside the checkout that tests read or run from."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEV_DATA = ROOT / "datasets" / "dev-reasoning"
TRAIN_SCRIPT = ROOT / "scripts" / "train.py"
