"""Crash, resume and concurrency. The nightly eval and the reindex, SIGKILLed at seeded random points (10 trials
each), then run again: the re-run completes, asks the model nothing it had already answered (counted at the server),
gives the same results as an uninterrupted run, and MLflow holds no duplicate and no orphaned run. Two reindexes at
once are serialized by the lock; an eval that starts during a reindex reads one index version throughout.

Each run is a real process forked from a warm one (tests/support/zygote.py), so a trial costs the run, not ~10 s
of imports.
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import mlflow
import pytest

from reasonloop.index_versions import IndexStore

from .support.figures import record_figures
from .support.openai_server import OpenAIServer
from .support.servers import reasonloop_env
from .support.zygote import Zygote
from .test_faults import numbered_questions, question_of, scripted_answers

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server")]
TRIALS = 10
FLOW_COMPLETE = "reasonloop.flow_complete"


@pytest.fixture(scope="module")
def zygote(prefect_server: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Zygote]:
    """The warm process, pointed at the session's Prefect test server."""
    from prefect.settings import PREFECT_API_URL

    env = {**reasonloop_env(tmp_path_factory.mktemp("zygote") / "unused"),
           "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    warm = Zygote(env, tmp_path_factory.mktemp("zygote-log") / "zygote.log")
    yield warm
    warm.close()


def run(zygote: Zygote, flow: str, env: dict[str, str], log: Path, kill_after: float | None = None) -> int:
    """One forked run to its end, or SIGKILLed after `kill_after` seconds; its exit status (-9 when killed)."""
    import os

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


def test_a_killed_nightly_eval_resumes_without_asking_twice(zygote: Zygote, tiny_data: tuple[Path, Path],
                                                            tmp_path: Path) -> None:
    corpus, few = tiny_data
    questions = numbered_questions(few, 40, tmp_path / "q40.jsonl")
    asked: list[str] = []
    answer = scripted_answers(questions)

    def responder(request: dict[str, Any]) -> Any:
        asked.append(question_of(request))
        reply = answer(request)
        reply.delay_s = 0.1  # answering is a good part of the run: kills land in it
        return reply

    with OpenAIServer(responder) as server:
        def env(state: Path) -> dict[str, str]:
            return reasonloop_env(state, corpus={"path": corpus}, questions={"path": questions},
                                  quality={"datasets": {"squad_sample": {"questions": few}}},
                                  safety={"enabled": False}, eval={"batch_size": 8},
                                  llm={"provider": "openai", "model": "scripted", "base_url": server.base_url,
                                       "max_concurrency": 2, "max_retries": 0})

        base = tmp_path / "base"  # one index, copied into every trial
        assert run(zygote, "reindex", env(base), tmp_path / "base.log") == 0
        full, reference_state = fastest_of_two(zygote, "eval", base, env, tmp_path)
        reference = results_of(reference_state, assert_no_duplicate_or_orphan(reference_state, "nightly-eval"),
                               tmp_path / "ref")
        assert len(reference) == 40

        outcomes: list[tuple[float, int, int, int, bool]] = []
        for seed in trial_seeds(lambda: sum(o[1] == -signal.SIGKILL and not o[4] for o in outcomes)):
            state = tmp_path / f"trial{seed}"
            shutil.copytree(base, state)
            kill_after = random.Random(seed).uniform(0.05, 0.95) * full
            status = run(zygote, "eval", env(state), tmp_path / f"trial{seed}.log", kill_after)
            saved, before = answered_before(state), len(asked)
            completed = [r for r in runs_of(state, "nightly-eval") if r.data.tags.get(FLOW_COMPLETE) == "true"]
            assert run(zygote, "eval", env(state), tmp_path / f"trial{seed}-rerun.log") == 0
            again = set(asked[before:])
            assert not again & {q for q in again if _id(questions, q) in saved}, f"trial {seed}: asked again"
            if completed:  # the kill came after the flow was through: the re-run is the next nightly eval
                assert not again and len(runs_of(state, "nightly-eval")) == 2
                finished = next(r for r in runs_of(state, "nightly-eval") if r.info.run_id != completed[0].info.run_id)
            else:  # interrupted: the re-run resumed it, and one run stands for it
                finished = assert_no_duplicate_or_orphan(state, "nightly-eval")
            assert finished.data.tags[FLOW_COMPLETE] == "true"
            assert results_of(state, finished, tmp_path / f"r{seed}") == reference, f"trial {seed}"
            assert not [r for r in runs_of(state, "drift") if r.info.status == "RUNNING"]
            outcomes.append((round(kill_after, 2), status, len(saved), len(again), bool(completed)))
    record_figures("crash-eval-trials", {"uninterrupted_s": full, "trials": [dict(zip(
        ("kill_after_s", "status", "answers_saved", "asked_again", "flow_had_completed"), o, strict=True))
        for o in outcomes]})
    killed = [o for o in outcomes if o[1] == -signal.SIGKILL and not o[4]]
    assert len(killed) >= TRIALS, outcomes
    assert any(0 < saved < 40 for _, _, saved, _, _ in killed), outcomes  # some mid-answering, resumed from there


def _id(questions: Path, text: str) -> str:
    return next(q["id"] for q in map(json.loads, questions.read_text().splitlines()) if q["question"] == text)


def test_a_killed_reindex_reruns_to_the_same_index(zygote: Zygote, tiny_data: tuple[Path, Path],
                                                   tmp_path: Path) -> None:
    corpus, questions = tiny_data

    def env(state: Path) -> dict[str, str]:
        return reasonloop_env(state, corpus={"path": corpus}, chroma={"upsert_batch_size": 4},
                              quality={"datasets": {"squad_sample": {"questions": questions}}})

    blank = tmp_path / "blank"  # a state folder whose MLflow database exists (creating one takes seconds)
    blank.mkdir()
    mlflow.MlflowClient(f"sqlite:///{blank / 'mlflow.db'}").search_experiments()
    full, reference_state = fastest_of_two(zygote, "reindex", blank, env, tmp_path)
    reference = IndexStore(reference_state, "reasonloop").require_current()
    outcomes: list[tuple[float, int, int]] = []
    for seed in trial_seeds(lambda: sum(o[1] == -signal.SIGKILL for o in outcomes)):
        state = tmp_path / f"trial{seed}"
        shutil.copytree(blank, state)
        kill_after = random.Random(100 + seed).uniform(0.05, 0.9) * full
        status = run(zygote, "reindex", env(state), tmp_path / f"trial{seed}.log", kill_after)
        assert run(zygote, "reindex", env(state), tmp_path / f"trial{seed}-rerun.log") == 0
        store = IndexStore(state, "reasonloop")
        served = store.require_current()
        assert served.content_hash == reference.content_hash and served.n_chunks == reference.n_chunks
        runs = runs_of(state, "reindex")
        finished = [r for r in runs if r.info.status == "FINISHED"]
        # the re-run's run always records the served version; the killed run's too when it got to log
        assert finished and all(r.data.params["index.content_hash"] == reference.content_hash for r in finished)
        assert sum(r.data.metrics["new_version"] for r in finished) <= 1  # one version built, never two
        assert all(r.info.status == "FAILED" and "reasonloop.orphaned" in r.data.tags
                   for r in runs if r.info.status != "FINISHED")
        outcomes.append((round(kill_after, 2), status, served.version))
    record_figures("crash-reindex-trials", {"uninterrupted_s": full, "trials": [dict(zip(
        ("kill_after_s", "status", "served_version"), o, strict=True)) for o in outcomes]})
    assert len([o for o in outcomes if o[1] == -signal.SIGKILL]) >= TRIALS, outcomes


def changed_corpus(corpus: Path, share: int = 2) -> None:
    """Rewrite every `share`-th paragraph (a new index version with new chunk ids for them)."""
    path = next(corpus.glob("*.jsonl"))
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    path.write_text("".join(json.dumps({**r, "text": f"Revised. {r['text']}"} if i % share == 0 else r) + "\n"
                            for i, r in enumerate(rows)), encoding="utf-8")


def test_two_reindexes_at_once_are_serialized_by_the_lock(zygote: Zygote, tiny_data: tuple[Path, Path],
                                                          tmp_path: Path) -> None:
    corpus, questions = tiny_data

    def env(state: Path, wait_s: float) -> dict[str, str]:
        return reasonloop_env(state, corpus={"path": corpus}, index={"lock_wait_s": wait_s},
                              quality={"datasets": {"squad_sample": {"questions": questions}}})

    for name, wait_s in (("waits", 120.0), ("gives-up", 0.0)):
        state = tmp_path / name
        assert run(zygote, "reindex", env(state, wait_s), tmp_path / f"{name}-first.log") == 0
        changed_corpus(corpus, share=3 if name == "waits" else 4)  # real work for the pair that follows
        first = zygote.start("reindex", env(state, wait_s), tmp_path / f"{name}-a.log")
        time.sleep(0.5)
        second = zygote.start("reindex", env(state, wait_s), tmp_path / f"{name}-b.log")
        statuses = [zygote.wait(first), zygote.wait(second)]
        runs = [r for r in runs_of(state, "reindex") if r.info.status == "FINISHED"]
        if name == "waits":  # the second waited its turn, then found the corpus already indexed
            assert statuses == [0, 0] and sorted(r.data.metrics["new_version"] for r in runs) == [0.0, 1.0, 1.0]
        else:  # no waiting: one of them says who holds the lock and stops, having written nothing
            assert sorted(statuses) == [0, 1], statuses
            loser = tmp_path / f"{name}-{'ab'[statuses.index(1)]}.log"
            assert "another reindex of 'reasonloop' is running (pid" in loser.read_text(errors="replace")
            assert len(runs) == 2  # the first reindex and the winner; the loser logged nothing
        assert IndexStore(state, "reasonloop").require_current().version == 2


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
                             llm={"provider": "openai", "model": "scripted", "base_url": server.base_url,
                                  "max_concurrency": 1})
        assert run(zygote, "reindex", env, tmp_path / "first.log") == 0
        changed_corpus(corpus)
        evaluating = zygote.start("eval", env, tmp_path / "eval.log")
        time.sleep(1.0)
        reindexing = zygote.start("reindex", env, tmp_path / "reindex.log")
        assert zygote.wait(reindexing) == 0 and zygote.wait(evaluating) == 0
    store = IndexStore(state, "reasonloop")
    [eval_run] = runs_of(state, "nightly-eval")
    read = int(eval_run.data.params["index.version"])
    assert store.require_current().version == 2 and read == 1  # it began on v1 and stayed there ...
    served = datetime.fromisoformat(store.manifest(2).created_at).timestamp()
    assert served < eval_run.info.end_time / 1000  # ... though v2 was served before it ended
    chunks = {c for entry in store.manifest(read).documents.values() for c in entry.chunk_ids}
    newer = {c for entry in store.manifest(2).documents.values() for c in entry.chunk_ids}
    retrieved = {c["chunk_id"] for row in results_rows(state, eval_run, tmp_path / "dl") for c in row["retrieved"]}
    assert retrieved <= chunks and retrieved - newer  # every chunk from v1, some of them not in v2 at all


def results_rows(state: Path, run: Any, scratch: Path) -> list[dict[str, Any]]:
    client = mlflow.MlflowClient(f"sqlite:///{state / 'mlflow.db'}")
    path = Path(client.download_artifacts(run.info.run_id, "eval/results.jsonl", str(scratch)))
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
