"""Crash and concurrency trials: runs forked from the warm process (`zygote`), killed or overlapped on purpose, and
what the stores hold afterwards."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mlflow

from .zygote import Zygote

TRIALS = 10  # runs really killed mid-way, per flow
FLOW_COMPLETE = "reasonloop.flow_complete"


def run(zygote: Zygote, flow: str, env: dict[str, str], log: Path, kill_after: float | None = None) -> int:
    """One forked run to its end, or SIGKILLed after `kill_after` seconds; its exit status (-9 when killed)."""
    pid = zygote.start(flow, env, log)
    if kill_after is not None:
        time.sleep(kill_after)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return zygote.wait(pid)


def timed(zygote: Zygote, flow: str, env: dict[str, str], log: Path) -> float:
    started = time.monotonic()
    assert run(zygote, flow, env, log) == 0, log.read_text(errors="replace")[-3000:]
    return time.monotonic() - started


def trial_seeds(killed: Callable[[], int]) -> Iterator[int]:
    """Seeds for trials until TRIALS runs were really killed mid-way: on a loaded machine a kill may come after a
    run ended, and that trial (still checked) does not count. At most 3 x TRIALS."""
    for seed in range(3 * TRIALS):
        if killed() >= TRIALS:
            return
        yield seed


def fastest_of_two(zygote: Zygote, flow: str, base: Path, env: Any, tmp_path: Path) -> tuple[float, Path]:
    """Two uninterrupted runs from copies of `base`: the faster one's seconds (the first run of a fresh process pays
    for its caches; kills are timed against a warm run) and the second's state folder, the reference."""
    durations = []
    for name in ("warm-up", "reference"):
        state = tmp_path / name
        shutil.copytree(base, state)
        durations.append(timed(zygote, flow, env(state), tmp_path / f"{name}.log"))
    return min(durations), state


def runs_of(state: Path, kind: str) -> list[Any]:
    client = mlflow.MlflowClient(f"sqlite:///{state / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(f"reasonloop-{kind}")
    return client.search_runs([experiment.experiment_id]) if experiment else []


def assert_no_duplicate_or_orphan(state: Path, kind: str) -> Any:
    """Exactly one finished run; any other was cut short and is marked FAILED as an orphan; none left RUNNING."""
    runs = runs_of(state, kind)
    finished = [r for r in runs if r.info.status == "FINISHED"]
    others = [r for r in runs if r.info.status != "FINISHED"]
    assert len(finished) == 1, [(r.info.status, r.data.tags.get("reasonloop.flow_complete")) for r in runs]
    assert all(r.info.status == "FAILED" and "reasonloop.orphaned" in r.data.tags for r in others)
    return finished[0]


def results_of(state: Path, run: Any, scratch: Path) -> dict[str, tuple[str, bool | None]]:
    rows = results_rows(state, run, scratch)
    return {r["question"]["id"]: (r["answer"]["answer"], (r["verdict"] or {}).get("correct")) for r in rows}


def answered_before(state: Path) -> set[str]:
    """Question ids whose answers the killed run had saved (the only ones it may not ask again)."""
    store = state / "reasoning" / "answers.sqlite"
    if not store.exists():
        return set()
    with sqlite3.connect(store) as connection:
        try:
            rows = connection.execute("SELECT record FROM answers").fetchall()
        except sqlite3.OperationalError:  # killed before the table existed
            return set()
    return {json.loads(record)["question_id"] for (record,) in rows}


def results_rows(state: Path, run: Any, scratch: Path) -> list[dict[str, Any]]:
    client = mlflow.MlflowClient(f"sqlite:///{state / 'mlflow.db'}")
    path = Path(client.download_artifacts(run.info.run_id, "eval/results.jsonl", str(scratch)))
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
