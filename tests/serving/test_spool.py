"""The spool and its exporter without the endpoint: every acknowledged answer and feedback reaches MLflow exactly
once, with several exporters on one spool, and when an exporter died after writing but before marking."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import mlflow

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
    [(trace_id, body, attempt)] = spool.claim_asks(1, lease_s=0.05)  # claimed by an exporter that then died ...
    assert attempt == 1
    written = log_live_trace(LiveAnswer.model_validate_json(body), experiment)  # ... after writing the trace
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
