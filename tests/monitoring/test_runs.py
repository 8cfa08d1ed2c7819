"""Reading runs back from MLflow without Prefect: the core functions behind the gate, the drift flow's windows and
series, the baseline, a resumed nightly eval and orphaned runs, on a tracker over a SQLite store with runs written
by hand."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric

from reasonloop.errors import ReasonloopError
from reasonloop.evaluation.gate import GateReport
from reasonloop.monitoring.config import QualityDriftConfig
from reasonloop.monitoring.drift_windows import NO_REFERENCE, NO_RUN, read_quality_series, read_windows
from reasonloop.monitoring.eval_run import FLOW_COMPLETE_TAG, IDENTITY_TAG, interrupted_eval
from reasonloop.monitoring.runs import (
    RESULTS_ARTIFACT,
    baseline_run_id,
    finished_runs,
    recent_runs,
    run_results,
    set_baseline,
)
from reasonloop.monitoring.tracking import Tracker, writer_tags
from reasonloop.schemas import AnswerRecord, EvalSummary, Question, QuestionResult

START = 1_700_000_000_000  # ms


@pytest.fixture()
def tracker(tmp_path: Path) -> Tracker:
    return Tracker(uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment_prefix="t", artifact_root=tmp_path / "art")


def result(qid: str, answer: str, cache_hit: bool = False) -> QuestionResult:
    return QuestionResult(question=Question(id=qid, question=f"question {qid}?", reference="r"), retrieved=[],
                          answer=AnswerRecord(question_id=qid, answer=answer, cache_hit=cache_hit))


def night(tracker: Tracker, minute: int, results: list[QuestionResult] | None = None,
          metrics: dict[str, float] | None = None, status: str = "FINISHED", tags: dict[str, str] | None = None,
          index_version: int | None = None) -> str:
    """A nightly-eval run started `minute` minutes after START, with its results artifact and metrics."""
    client, at = tracker.client(), START + minute * 60_000
    run = client.create_run(tracker.ensure_experiment("nightly-eval"), start_time=at, tags=tags or {})
    if results is not None:
        client.log_text(run.info.run_id, "".join(r.model_dump_json() + "\n" for r in results), RESULTS_ARTIFACT)
    if index_version is not None:
        for key, value in {"index.version": index_version, "index.content_hash": f"{index_version:064d}",
                           "index.collection": f"c-v{index_version:04d}"}.items():
            client.log_param(run.info.run_id, key, value)
    client.log_batch(run.info.run_id, metrics=[Metric(k, v, at, 0) for k, v in (metrics or {}).items()])
    if status != "RUNNING":
        client.set_terminated(run.info.run_id, status, end_time=at + 1000)
    return run.info.run_id


def test_finished_runs_newest_first_within_a_time_bound(tracker: Tracker) -> None:
    ids = [night(tracker, minute) for minute in range(4)]
    night(tracker, 9, status="RUNNING")
    experiment = tracker.experiment_id("nightly-eval")
    assert experiment is not None
    assert [r.info.run_id for r in finished_runs(tracker, experiment, 10)] == ids[::-1]
    assert [r.info.run_id for r in finished_runs(tracker, experiment, 10, before=START + 2 * 60_000)] == ids[1::-1]
    assert [r.info.run_id for r in finished_runs(tracker, experiment, 2, until=START + 2 * 60_000)] == ids[2:0:-1]


def test_the_drift_windows_without_a_run_with_one_and_with_history(tracker: Tracker) -> None:
    assert read_windows(tracker, 5).note == NO_RUN
    first = night(tracker, 0, [result("a", "old a"), result("b", "old b")], index_version=1)
    alone = read_windows(tracker, 5)
    assert alone.current is not None and alone.current.run_id == first and alone.note == NO_REFERENCE
    assert alone.current.index_ref == f"v1@{'0' * 12}" and alone.current.index_collection == "c-v0001"
    second = night(tracker, 1, [result("a", "new a"), result("b", "reused b", cache_hit=True)])
    third = night(tracker, 2, [result("a", "current a")])
    windows = read_windows(tracker, 5)
    assert windows.current is not None and windows.current.run_id == third and windows.note is None
    assert windows.reference_kind == "previous_runs" and [r.run_id for r in windows.reference] == [first, second]
    # one value per question: its newest freshly made answer, a reused one only when there is nothing fresher
    assert sorted((r.question.id, r.answer.answer) for r in windows.reference_results) == [("a", "new a"),
                                                                                          ("b", "old b")]
    assert [r.answer.answer for r in windows.current_results] == ["current a"]
    set_baseline(tracker, first)
    pinned = read_windows(tracker, 5)
    assert pinned.reference_kind == "baseline" and [r.run_id for r in pinned.reference] == [first]
    assert read_windows(tracker, 5, run_id=second).reference[-1].run_id == first  # a given run, not the newest


def test_the_quality_series_up_to_the_current_run(tracker: Tracker) -> None:
    ids = [night(tracker, m, metrics={"accuracy": 0.5 + m / 100} | ({"grounding_rate": 0.9} if m else {}))
           for m in range(6)]
    windows = read_windows(tracker, 5, run_id=ids[3])
    series = read_quality_series(tracker, windows.current, QualityDriftConfig(history=3, reference_runs=2))
    assert series.run_ids == ids[1:4] and series.n_reference == 2  # the current run last, nothing after it
    assert series.values["accuracy"] == pytest.approx([0.51, 0.52, 0.53])
    full = read_quality_series(tracker, read_windows(tracker, 5).current, QualityDriftConfig(history=40))
    assert math.isnan(full.values["grounding_rate"][0]) and len(full.run_ids) == 6  # a night without the metric
    assert read_quality_series(tracker, None, QualityDriftConfig()).values == {"accuracy": [], "grounding_rate": []}


def test_a_baseline_must_be_a_finished_nightly_eval_with_results(tracker: Tracker) -> None:
    assert baseline_run_id(tracker) is None
    good = night(tracker, 0, [result("a", "x")])
    without = night(tracker, 1)
    running = night(tracker, 2, [result("a", "x")], status="RUNNING")
    with pytest.raises(ReasonloopError, match="no run nope in"):
        set_baseline(tracker, "nope")
    with pytest.raises(ReasonloopError, match="is not a finished nightly-eval run"):
        set_baseline(tracker, running)
    with pytest.raises(ReasonloopError, match="has no readable eval/results.jsonl"):
        set_baseline(tracker, without)
    other = tracker.client().create_run(tracker.ensure_experiment("canary")).info.run_id
    tracker.client().set_terminated(other)
    with pytest.raises(ReasonloopError, match="is not a finished nightly-eval run"):
        set_baseline(tracker, other)
    assert baseline_run_id(tracker) is None  # nothing was set by the refusals
    set_baseline(tracker, good)
    assert baseline_run_id(tracker) == good and [r.answer.answer for r in run_results(tracker, good)] == ["x"]
    assert list(recent_runs(tracker, 10, kinds=("nightly-eval",), finished_only=True)["run_id"]) == [without, good]


def test_a_logged_eval_whose_flow_was_killed_is_found_again(tracker: Tracker) -> None:
    identity = "config-questions-index"
    assert interrupted_eval(tracker, identity) is None  # no experiment yet: looks, creates nothing
    assert tracker.experiment_id("nightly-eval") is None
    dead = {"reasonloop.host": writer_tags()["reasonloop.host"], "reasonloop.pid": str(2**22 + 7)}  # no such pid
    logged = night(tracker, 0, tags={IDENTITY_TAG: identity, FLOW_COMPLETE_TAG: "false", **dead},
                   metrics={"accuracy": 0.75})
    summary, gate = EvalSummary(n_questions=4, n_failed=0, n_judge_errors=0, accuracy=0.75), GateReport(
        baseline_run_id=None, passed=True)
    tracker.client().log_text(logged, summary.model_dump_json(), "eval/summary.json")
    tracker.client().log_text(logged, gate.model_dump_json(), "eval/gate.json")
    found = interrupted_eval(tracker, identity)
    assert found is not None
    report, read_gate = found
    assert report.run_id == logged and report.metrics["accuracy"] == 0.75 and read_gate == gate
    assert "resumed" in report.rows and report.rows["accuracy [95% CI]"] == "0.750"
    assert interrupted_eval(tracker, "another-identity") is None
    night(tracker, 1, tags={IDENTITY_TAG: "mine", FLOW_COMPLETE_TAG: "false", **writer_tags()})
    assert interrupted_eval(tracker, "mine") is None  # its writer (this process) may still be at work


def test_runs_a_killed_writer_left_running_are_marked_failed(tracker: Tracker) -> None:
    host = writer_tags()["reasonloop.host"]
    orphan = night(tracker, 0, status="RUNNING", tags={"reasonloop.host": host, "reasonloop.pid": str(2**22 + 9)})
    ours = night(tracker, 1, status="RUNNING", tags={"reasonloop.host": host, "reasonloop.pid": str(os.getpid())})
    elsewhere = night(tracker, 2, status="RUNNING", tags={"reasonloop.host": "another-host", "reasonloop.pid": "1"})
    tracker.ensure_experiment("nightly-eval")  # the next writer looks first
    client = MlflowClient(tracker.uri)
    assert client.get_run(orphan).info.status == "FAILED" and "reasonloop.orphaned" in client.get_run(orphan).data.tags
    assert client.get_run(ours).info.status == client.get_run(elsewhere).info.status == "RUNNING"
