"""Concurrency: two reindexes at once are serialized by the lock; an eval that starts during a reindex reads one index
version throughout."""

from __future__ import annotations

import json
import os
import signal
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from reasonloop.retrieval.index_versions import IndexStore

from ..support.openai_server import OpenAIServer
from ..support.servers import reasonloop_env, wait_for
from ..support.trials import (
    results_rows,
    run,
    runs_of,
)
from ..support.zygote import Zygote
from .test_faults import numbered_questions, scripted_answers

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server")]


def changed_corpus(corpus: Path, share: int = 2) -> None:
    """Rewrite every `share`-th paragraph (a new index version with new chunk ids for them)."""
    path = next(corpus.glob("*.jsonl"))
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    path.write_text("".join(json.dumps({**r, "text": f"Revised. {r['text']}"} if i % share == 0 else r) + "\n"
                            for i, r in enumerate(rows)), encoding="utf-8")


def lock_holder(store: IndexStore) -> str:
    path = store.root / ".lock"
    return path.read_text(encoding="utf-8") if path.exists() else ""


def race_for_the_lock(zygote: Zygote, env: dict[str, str], store: IndexStore, first_log: Path,
                      second_log: Path) -> dict[int, int]:
    """Two reindexes, the second started while the first is frozen (SIGSTOP) inside the lock, so the second meets a
    held lock however slowly either starts; their exit statuses by pid, the first's first."""
    first = zygote.start("reindex", env, first_log)
    wait_for("the first reindex took no lock", lambda: lock_holder(store).startswith(f"pid {first} "), 120,
             first_log, poll_s=0.05)
    os.kill(first, signal.SIGSTOP)
    try:
        second = zygote.start("reindex", env, second_log)
        # the flow takes the lock right after loading its quality sets: give the second a moment there
        before_lock = "Task run 'load-quality-sets"
        wait_for("the second reindex did not reach the lock",
                 lambda: second_log.exists() and before_lock in second_log.read_text("utf-8", "replace"), 120,
                 second_log, poll_s=0.1)
        time.sleep(1.0)
    finally:
        os.kill(first, signal.SIGCONT)
    return {first: zygote.wait(first), second: zygote.wait(second)}


def test_two_reindexes_at_once_are_serialized_by_the_lock(zygote: Zygote, tiny_data: tuple[Path, Path],
                                                          tmp_path: Path) -> None:
    corpus, questions = tiny_data

    def env(state: Path, wait_s: float) -> dict[str, str]:
        return reasonloop_env(state, corpus={"path": corpus}, index={"lock_wait_s": wait_s},
                              quality={"datasets": {"squad_sample": {"questions": questions}}})

    for name, wait_s in (("waits", 120.0), ("gives-up", 0.0)):
        state = tmp_path / name
        store = IndexStore(state, "reasonloop")
        assert run(zygote, "reindex", env(state, wait_s), tmp_path / f"{name}-first.log") == 0
        changed_corpus(corpus, share=3 if name == "waits" else 4)  # real work for the pair that follows
        statuses = race_for_the_lock(zygote, env(state, wait_s), store, tmp_path / f"{name}-a.log",
                                     second_log := tmp_path / f"{name}-b.log")
        new_version = {int(r.data.tags["reasonloop.pid"]): r.data.metrics["new_version"]
                       for r in runs_of(state, "reindex") if r.info.status == "FINISHED"}
        first, second = statuses
        if name == "waits":  # the second waited for the first to publish, then found the corpus already indexed
            assert list(statuses.values()) == [0, 0] and new_version[first] == 1 and new_version[second] == 0
        else:  # no waiting: the second says who holds the lock and stops, having logged and written nothing
            assert list(statuses.values()) == [0, 1], statuses
            assert f"another reindex of 'reasonloop' is running (pid {first} " in second_log.read_text(errors="replace")
            assert second not in new_version and new_version[first] == 1
        assert store.require_current().version == 2


def test_an_eval_during_a_reindex_reads_one_index_version(zygote: Zygote, tiny_data: tuple[Path, Path],
                                                           tmp_path: Path) -> None:
    corpus, few = tiny_data
    questions = numbered_questions(few, 40, tmp_path / "q40.jsonl")
    answer = scripted_answers(questions)

    def slow(request: dict[str, Any]) -> Any:
        reply = answer(request)
        reply.delay_s = 0.1
        return reply

    with OpenAIServer(slow) as server:
        state = tmp_path / "state"
        env = reasonloop_env(state, corpus={"path": corpus}, questions={"path": questions},
                             quality={"datasets": {"squad_sample": {"questions": few}}}, safety={"enabled": False},
                             drift={"enabled": False}, eval={"batch_size": 4},
                             # one batch at a time: when the first model call arrives no retrieval is in flight, so
                             # the freeze below never holds a read open in Chroma's SQLite (which would block the
                             # reindex's writes until the eval resumes: a race, seen once on a loaded machine)
                             prefect={"max_workers": 1},
                             llm={"provider": "openai", "model": "scripted", "base_url": server.base_url,
                                  "max_concurrency": 1})
        assert run(zygote, "reindex", env, tmp_path / "first.log") == 0
        changed_corpus(corpus)
        evaluating = zygote.start("eval", env, tmp_path / "eval.log")
        wait_for("the eval asked nothing", lambda: server.calls, 120, tmp_path / "eval.log", poll_s=0.05)
        os.kill(evaluating, signal.SIGSTOP)  # frozen mid-batch while a whole reindex serves v2
        try:
            assert zygote.wait(zygote.start("reindex", env, tmp_path / "reindex.log")) == 0
        finally:
            os.kill(evaluating, signal.SIGCONT)
        assert zygote.wait(evaluating) == 0
    store = IndexStore(state, "reasonloop")
    [eval_run] = runs_of(state, "nightly-eval")
    read = int(eval_run.data.params["index.version"])
    assert store.require_current().version == 2 and read == 1  # it began on v1 and stayed there ...
    served = datetime.fromisoformat(store.manifest(2).created_at).timestamp()
    assert served < eval_run.info.end_time / 1000  # ... though v2 was served before it ended
    chunks, newer = (set(store.catalog(store.manifest(v)).chunk_ids()) for v in (read, 2))  # type: ignore[union-attr]
    retrieved = {c["chunk_id"] for row in results_rows(state, eval_run, tmp_path / "dl") for c in row["retrieved"]}
    assert retrieved <= chunks and retrieved - newer  # every chunk from v1, some of them not in v2 at all


