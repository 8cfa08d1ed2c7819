"""Live traffic feeding the flows: requests and feedback to the served endpoint (and a trace from another app
instrumented with MLflow tracing) -> the live eval judges the window without references, sends thumbs-down and
corrected answers to review and runs drift on live windows -> the DPO build takes the traces' ratings and
corrections, through the same hygiene and leakage guard, with the trace ids as lineage."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from reasonloop.providers import build_live_service, build_tracker
from reasonloop.serving.app import create_app
from reasonloop.settings import Settings, load_settings

from ..conftest import SAMPLE_CORPUS, read_jsonl, write_jsonl
from ..support.indexing import build_index

pytestmark = pytest.mark.usefixtures("prefect_server")

WON = "How many times did Denver's defense sack Cam Newton?"
SISTERS = "What were the names of Tesla's sisters?"
IN_EVAL_SET = "Which NFL team represented the AFC at Super Bowl 50?"
UNRATED = ["Which network broadcast Super Bowl 50 in the U.S.?", "When did Tesla emigrate to the United States?"]
OTHER_APP = "support-bot"
OTHER_ANSWER = "His sisters were Milka, Angelina and Marica."


@dataclass(frozen=True)
class Traffic:
    settings: Settings
    served: dict[str, dict[str, Any]]  # question -> the endpoint's response
    other_trace_id: str  # the other app's readable trace


def other_app_traces(settings: Settings) -> str:
    """Two traces another app logged with MLflow tracing into its own experiment: a chat call in OpenAI format with
    a retriever span, rated up by its user, and a trace with no recognisable question (skipped)."""
    from mlflow.entities import AssessmentSource

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    experiment_id = build_tracker(settings).client().create_experiment(OTHER_APP)
    root = mlflow.start_span_no_context("chat", span_type="CHAT_MODEL", experiment_id=experiment_id, inputs={
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": SISTERS}]})
    search = mlflow.start_span_no_context("search", span_type="RETRIEVER", parent_span=root, inputs={"query": SISTERS})
    search.set_outputs([{"page_content": read_jsonl(SAMPLE_CORPUS)[11]["text"], "id": "kb-7",
                         "metadata": {"doc_id": "tesla-family", "score": 0.8}}])
    search.end()
    root.set_outputs({"choices": [{"message": {"role": "assistant", "content": OTHER_ANSWER}}]})
    root.end()
    unreadable = mlflow.start_span_no_context("heartbeat", experiment_id=experiment_id, inputs={"n": 1})
    unreadable.end()
    mlflow.flush_trace_async_logging()
    mlflow.log_feedback(trace_id=root.trace_id, name="user_rating", value=True,
                        source=AssessmentSource(source_type="HUMAN", source_id="someone"))
    return root.trace_id


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory) -> Traffic:
    """Five questions to the endpoint over 12 SQuAD paragraphs, with feedback on three; then the other app's."""
    root = tmp_path_factory.mktemp("live-loop")
    corpus = write_jsonl(root / "corpus" / "tiny.jsonl", read_jsonl(SAMPLE_CORPUS)[:12]).parent
    eval_set = write_jsonl(root / "eval.jsonl", [{"id": "q1", "question": IN_EVAL_SET, "reference": "Denver Broncos"}])
    settings = load_settings(state_dir=root / "state", corpus={"path": corpus}, questions={"path": eval_set},
                             quality={"datasets": {"eval": {"questions": eval_set}}},
                             preferences={"feedback_dir": root / "no-feedback-files", "traces_window": "1h"})
    settings = settings.updated({"live": {"experiments": [build_tracker(settings).experiment_name("live"),
                                                          OTHER_APP]}})
    build_index(settings)
    service = build_live_service(settings, lambda: settings)
    served = {}
    with TestClient(create_app(service)) as client:
        for i, question in enumerate([WON, SISTERS, IN_EVAL_SET, *UNRATED]):
            response = client.post("/v1/ask", json={"question": question, "session_id": f"s-{i}"})
            assert response.status_code == 200, response.text
            served[question] = response.json()
        feedback = [{"trace_id": served[WON]["trace_id"], "rating": "down", "comment": "give the number",
                     "corrected_answer": "Seven times."},
                    {"trace_id": served[SISTERS]["trace_id"], "rating": "down"},
                    {"trace_id": served[IN_EVAL_SET]["trace_id"], "corrected_answer": "The Denver Broncos."}]
        for body in feedback:
            assert client.post("/v1/feedback", json=body).status_code == 200
        assert service.exporter.drain(60)
    return Traffic(settings=settings, served=served, other_trace_id=other_app_traces(settings))


def run_of(settings: Settings, run_id: str) -> Any:
    return build_tracker(settings).client().get_run(run_id)


def artifact_rows(settings: Settings, run_id: str, path: str) -> list[dict[str, Any]]:
    build_tracker(settings).activate()
    local = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path))
    return read_jsonl(local)


def test_the_live_eval_judges_a_window_of_traffic_without_references(traffic: Traffic) -> None:
    from flows.live_eval import nightly_eval_live

    settings = traffic.settings
    report = nightly_eval_live(settings, "1h")
    run = run_of(settings, report.run_id)
    params, metrics = run.data.params, run.data.metrics
    assert params["source"] == "traces" and run.data.tags["reasonloop.source"] == "traces"
    assert params["window.experiments"].split(",") == settings.live.experiments
    assert params["window.since"] < params["window.until"]
    assert metrics["n_traces"] == 5 + 1 and metrics["n_skipped"] == 1  # the other app's heartbeat has no question
    assert "accuracy" not in metrics and not any(k.startswith("accuracy") for k in metrics)  # no references
    assert 0.0 <= metrics["grounding_rate"] <= 1.0 and "reasoning_quality" in metrics
    assert metrics["n_rated"] == 3 and metrics["thumbs_up_rate"] == pytest.approx(1 / 3)
    assert metrics["n_corrected"] == 2 and metrics["arm.production.n_questions"] == 6

    results = artifact_rows(settings, report.run_id, "eval/results.jsonl")
    assert sorted(r["question"]["question"] for r in results) == sorted([WON, SISTERS, IN_EVAL_SET, *UNRATED, SISTERS])
    assert all(r["question"]["reference"] is None and r["verdict"]["referenced"] is False for r in results)
    other = next(r for r in artifact_rows(settings, report.run_id, "eval/live.jsonl")
                 if r["mlflow_trace_id"] == traffic.other_trace_id)
    assert other["source"] == "app" and other["rating"] is True

    queue = {row["question_id"]: row for row in artifact_rows(settings, report.run_id, "eval/review.jsonl")}
    won = queue[traffic.served[WON]["trace_id"]]
    assert any(r.startswith("user: thumbs down (give the number)") for r in won["reasons"])
    assert any("user: corrected to" in r for r in won["reasons"])
    assert traffic.served[IN_EVAL_SET]["trace_id"] in queue  # a correction alone is a reason to look
    assert metrics["n_review"] == len(queue)

    [drift] = build_tracker(settings).client().search_runs(
        [build_tracker(settings).experiment_id("drift")], f"params.`current.run_id` = '{report.run_id}'")
    assert drift.data.params["current.kind"] == "live-eval" and drift.data.params["reference.kind"] == "none"


def test_the_cli_runs_it_and_drift_compares_live_windows(traffic: Traffic, monkeypatch: pytest.MonkeyPatch) -> None:
    from reasonloop.cli import app

    settings = traffic.settings
    for key, value in {"STATE_DIR": str(settings.state_dir), "CORPUS": json.dumps({"path": str(settings.corpus.path)}),
                       "LIVE": json.dumps({"experiments": settings.live.experiments}),
                       "QUESTIONS": json.dumps({"path": str(settings.questions.path)})}.items():
        monkeypatch.setenv(f"REASONLOOP_{key}", value)
    bad = CliRunner().invoke(app, ["eval", "--source", "file", "--since", "1h"])
    assert bad.exit_code == 2 and "--since applies to --source traces only" in bad.output
    first = {r.info.run_id for r in build_tracker(settings).client().search_runs(
        [build_tracker(settings).experiment_id("live-eval")])}
    result = CliRunner().invoke(app, ["eval", "--source", "traces", "--since", "2h"])
    assert result.exit_code == 0, result.output
    assert "live eval" in result.output and "6 (1 unreadable, skipped)" in result.output
    [run] = [r for r in build_tracker(settings).client().search_runs(
        [build_tracker(settings).experiment_id("live-eval")]) if r.info.run_id not in first]
    [drift] = build_tracker(settings).client().search_runs(
        [build_tracker(settings).experiment_id("drift")], f"params.`current.run_id` = '{run.info.run_id}'")
    assert drift.data.params["reference.kind"] == "previous_runs"
    assert drift.data.params["reference.run_ids"].split(",") == sorted(first)


def test_the_dpo_build_takes_ratings_and_corrections_from_traces(traffic: Traffic) -> None:
    from flows.build_dpo import build_dpo

    settings = traffic.settings
    report = build_dpo(settings)
    m = report.metrics
    assert m["n_feedback"] == 4 and m["n_feedback_from_traces"] == 4  # three on the API's traces, one on the app's
    assert m["n_leaked"] == 1  # the correction of a question of the eval set
    folder = next(p for p in settings.preferences.out_dir.iterdir() if not p.name.startswith("."))
    splits = {name: read_jsonl(folder / f"{name}.jsonl") for name in ("train", "test")}
    by_prompt = {(row := splits[entry["split"]][entry["row"]])["prompt"]: {**row, **entry}
                 for entry in read_jsonl(folder / "lineage.jsonl")}
    assert set(by_prompt) == {WON, SISTERS}
    won, sisters = by_prompt[WON], by_prompt[SISTERS]
    assert won["chosen"] == "Seven times." and won["rejected"] == traffic.served[WON]["answer"]
    # liked on the app, disliked on the API
    assert sisters["chosen"] == OTHER_ANSWER and sisters["rejected"] == traffic.served[SISTERS]["answer"]
    assert traffic.other_trace_id in sisters["source_trace_ids"] and len(sisters["source_trace_ids"]) == 2
    lineage = run_of(settings, report.run_id).data.params["source_trace_ids"].split(",")
    assert traffic.other_trace_id in lineage and len(lineage) == 3  # the leaked correction's trace is not lineage
