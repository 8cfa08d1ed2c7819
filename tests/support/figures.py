"""Figures a test measured, kept beside its screenshots in .test-artifacts/ (for closing notes and the README)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ARTIFACTS = Path(__file__).resolve().parents[2] / ".test-artifacts"


def record_figures(name: str, figures: dict[str, Any]) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.json"
    path.write_text(json.dumps(figures, indent=2, sort_keys=True, default=str), encoding="utf-8")
    return path
