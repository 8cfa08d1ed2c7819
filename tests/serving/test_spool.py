"""The spool and its exporter without the endpoint: every acknowledged answer and feedback reaches MLflow exactly
once, with several exporters on one spool, and when an exporter died after writing but before marking."""

from __future__ import annotations

import functools
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import mlflow
import pytest

from reasonloop.monitoring.tracking import Tracker
from reasonloop.schemas import AnswerRecord, Question, RetrievedChunk
from reasonloop.serving.export import LIVE_KIND, Exporter, log_live_feedback, log_live_trace
from reasonloop.serving.models import LiveAnswer, LiveFeedback
from reasonloop.serving.spool import Spool


def answered(i: int) -> LiveAnswer:
    return LiveAnswer(trace_id=f"t{i:03d}", received_ns=time.time_ns(),
                      question=Question(id=f"t{i:03d}", question=f"question {i}?", reference="-"),
                      retrieved=[RetrievedChunk(chunk_id="c", doc_id="d", text="text", score=1.0, rank=1)],
                      answer=AnswerRecord(question_id=f"t{i:03d}", answer=f"answer {i}"), arm="production",
                      index_version="v1@0", prompt_versions={"reasoning": "chain_of_thought@v1"}, session_id=f"s{i}")


def setup(tmp_path: Path, n: int) -> tuple[Spool, Tracker]:
    spool = Spool(tmp_path / "spool.sqlite")
    for i in range(n):
        record = answered(i)
        spool.record_ask(record.trace_id, record.received_ns, record.model_dump_json())
    tracker = Tracker(uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment_prefix="t", artifact_root=tmp_path / "a")
    return spool, tracker


def traces_by_id(tracker: Tracker) -> dict[str, int]:
    tracker.activate()
    found = mlflow.search_traces(locations=[tracker.ensure_experiment(LIVE_KIND)], return_type="list",
                                 include_spans=False)
    counts: dict[str, int] = {}
    for trace in found:
        key = trace.info.tags["reasonloop.trace_id"]
        counts[key] = counts.get(key, 0) + 1
    return counts


def test_two_exporters_on_one_spool_export_each_answer_once(tmp_path: Path) -> None:
    spool, tracker = setup(tmp_path, 40)
    exporters = [Exporter(spool, tracker, batch=5, interval_s=0.01) for _ in range(2)]
    threads = [threading.Thread(target=e.drain, args=(120,)) for e in exporters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    counts = traces_by_id(tracker)
    assert len(counts) == 40 and set(counts.values()) == {1}
    assert spool.backlog() == (0, 0) and spool.mlflow_trace_id("t000")


def test_an_export_cut_short_after_writing_is_not_written_twice(tmp_path: Path) -> None:
    spool, tracker = setup(tmp_path, 2)
    tracker.activate()
    experiment = tracker.ensure_experiment(LIVE_KIND)
    [(trace_id, body, noted)] = spool.claim_asks(1, lease_s=0.05)  # claimed by an exporter that then died ...
    assert noted is None
    written = log_live_trace(LiveAnswer.model_validate_json(body), experiment,  # ... after writing the trace
                             on_start=functools.partial(spool.note_mlflow_id, trace_id))
    mlflow.flush_trace_async_logging()
    feedback = LiveFeedback(trace_id=trace_id, received_ns=time.time_ns(), rating="up")
    time.sleep(0.1)  # its lease runs out
    Exporter(spool, tracker, batch=10, interval_s=0.01, lease_s=0.05).drain(60)
    assert traces_by_id(tracker) == {"t000": 1, "t001": 1} and spool.mlflow_trace_id(trace_id) == written

    feedback_id = spool.record_feedback(trace_id, feedback.received_ns, feedback.model_dump_json())
    [(claimed_id, mlflow_id, _, _)] = spool.claim_feedback(1, lease_s=0.05)  # claimed, assessed, then died
    log_live_feedback(feedback, mlflow_id, claimed_id)
    time.sleep(0.1)
    Exporter(spool, tracker, batch=10, interval_s=0.01, lease_s=0.05).drain(60)
    ratings = [a for a in mlflow.get_trace(written).info.assessments if a.name == "user_rating"]
    assert claimed_id == feedback_id and len(ratings) == 1 and ratings[0].feedback.value is True


def test_what_a_dead_exporter_claimed_moves_on_at_the_next_start_and_a_live_ones_claim_holds(tmp_path: Path) -> None:
    import subprocess
    import sys

    spool, tracker = setup(tmp_path, 3)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()
    [(first, _, _)] = spool.claim_asks(1, lease_s=3600)  # claimed by this (live) process for an hour
    [(second, _, _)] = spool.claim_asks(1, lease_s=3600)
    with spool._db() as db:  # the second claim was a process that has exited since
        db.execute("UPDATE asks SET claimed_by = ? WHERE trace_id = ?", (f"{socket.gethostname()}:{dead}", second))
    exporter = Exporter(spool, tracker, batch=10, interval_s=0.01, lease_s=3600, nice=None)
    exporter.start()
    try:
        assert not exporter.drain(5)  # the live claim holds: one answer waits for its lease
        assert (first, second) == ("t000", "t001") and set(traces_by_id(tracker)) == {"t001", "t002"}
        assert spool.backlog() == (1, 0)
    finally:
        exporter.stop(drain_s=0.1)


def test_the_exporter_in_its_own_process_exports_and_drains_before_it_stops(tmp_path: Path) -> None:
    spool, tracker = setup(tmp_path, 5)
    exporter = Exporter(spool, tracker, batch=2, interval_s=0.01, nice=5)
    exporter.start()
    spool.record_feedback("t000", time.time_ns(), LiveFeedback(trace_id="t000", received_ns=time.time_ns(),
                                                                rating="down").model_dump_json())
    exporter.stop(drain_s=120)  # the child drains, then exits
    assert exporter._worker is not None and exporter._worker.exitcode == 0
    assert spool.backlog() == (0, 0) and traces_by_id(tracker) == {f"t{i:03d}": 1 for i in range(5)}


def test_a_trace_whose_write_was_cut_before_its_tags_is_replaced_not_doubled(tmp_path: Path) -> None:
    spool, tracker = setup(tmp_path, 1)
    tracker.activate()
    experiment = tracker.ensure_experiment(LIVE_KIND)
    [(trace_id, body, _)] = spool.claim_asks(1, lease_s=0.05)
    partial = log_live_trace(LiveAnswer.model_validate_json(body), experiment,
                             on_start=functools.partial(spool.note_mlflow_id, trace_id))
    mlflow.flush_trace_async_logging()
    tracker.client().delete_trace_tag(partial, "reasonloop.trace_id")  # its spans landed, its tags did not
    time.sleep(0.1)
    Exporter(spool, tracker, batch=10, interval_s=0.01, lease_s=0.05).drain(60)
    [trace] = mlflow.search_traces(locations=[experiment], return_type="list", include_spans=False)
    assert trace.info.tags["reasonloop.trace_id"] == trace_id and trace.info.trace_id != partial
    assert spool.mlflow_trace_id(trace_id) == trace.info.trace_id


def test_a_trace_mlflow_dropped_is_exported_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from reasonloop.serving import export

    spool, tracker = setup(tmp_path, 3)
    calls: list[str] = []

    def dropping(answer: LiveAnswer, experiment_id: str, on_start: Callable[[str], None]) -> str:
        calls.append(answer.trace_id)
        if len(calls) == 2:  # MLflow's exporter logged "Failed to send trace" and dropped it
            on_start("tr-" + "0" * 32)
            return "tr-" + "0" * 32
        return log_live_trace(answer, experiment_id, on_start)

    monkeypatch.setattr(export, "log_live_trace", dropping)
    Exporter(spool, tracker, batch=10, interval_s=0.01).drain(60)
    assert calls == ["t000", "t001", "t002", "t001"]  # retried in the next round
    assert traces_by_id(tracker) == {"t000": 1, "t001": 1, "t002": 1} and spool.backlog() == (0, 0)


def test_the_exporter_gives_way_to_requests_in_flight_until_the_backlog_is_full(tmp_path: Path) -> None:
    spool, tracker = setup(tmp_path, 3)
    exporter = Exporter(spool, tracker, batch=10, interval_s=0.01, max_backlog=5)
    assert not exporter.giving_way()  # nothing in flight: export
    with exporter.busy():
        assert exporter.giving_way()  # a request in flight and room in the spool: answer first
        for i in (3, 4):
            record = answered(i)
            spool.record_ask(record.trace_id, record.received_ns, record.model_dump_json())
        assert not exporter.giving_way()  # the spool holds max_backlog: export anyway
