"""The live canary: a candidate model or prompt version answering a share of live traffic beside production.

Sessions are split by a hash of the canary's id and the session (else the user, else the request): a session stays
on its arm for the canary's whole life, and a new canary reshuffles. The state is one JSON file in the state folder,
written by `reasonloop canary start` and removed when the canary is promoted, rolled back or stopped; the served
endpoint reads it."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from reasonloop.errors import ConfigError
from reasonloop.evaluation.canary import Candidate
from reasonloop.schemas import Record

LIVE_CANARY_FILE = "live_canary.json"


class LiveCanary(Record):
    id: str
    candidate: Candidate
    changes: dict[str, dict[str, Any]] = Field(description="section updates that turn production into the candidate")
    share: float = Field(gt=0.0, lt=1.0, description="share of sessions routed to the candidate")
    started_at: datetime

    @property
    def started_ms(self) -> int:
        return int(self.started_at.timestamp() * 1000)


def arm_of(canary: LiveCanary | None, key: str) -> Literal["production", "candidate"]:
    """The arm a session (or user, or request) is answered by: sticky for the canary's life."""
    if canary is None:
        return "production"
    digest = hashlib.sha256(f"{canary.id}:{key}".encode()).digest()
    return "candidate" if int.from_bytes(digest[:8], "big") / 2**64 < canary.share else "production"


def read_canary(path: Path) -> LiveCanary | None:
    """The running live canary, None when there is none."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        return LiveCanary.model_validate_json(text)
    except ValueError as exc:
        raise ConfigError(f"{path}: not a live canary ({exc}); `reasonloop canary stop` removes it") from None


def write_canary(path: Path, canary: LiveCanary) -> None:
    """Write the state atomically (the endpoint reads the old or the new file, never half of one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(canary.model_dump(mode="json"), indent=1))
    os.replace(tmp, path)


def refuse_second(path: Path) -> None:
    """One live canary at a time: two would split the same sessions."""
    if (running := read_canary(path)) is not None:
        raise ConfigError(f"a live canary is already running: {running.candidate.spec} (id {running.id}, since "
                          f"{running.started_at:%Y-%m-%d %H:%M} UTC); `reasonloop canary stop` ends it")


def start_canary(path: Path, candidate: Candidate, changes: dict[str, dict[str, Any]], share: float,
                 now: datetime) -> LiveCanary:
    """A new live canary, refused while another runs."""
    refuse_second(path)
    canary = LiveCanary(id=uuid.uuid4().hex[:12], candidate=candidate, changes=changes, share=share, started_at=now)
    write_canary(path, canary)
    return canary


def clear_canary(path: Path) -> None:
    path.unlink(missing_ok=True)
