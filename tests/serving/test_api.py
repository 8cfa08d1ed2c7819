"""The served endpoint in-process (FastAPI's TestClient): a question answered by the production reasoner over the
serving index, traced into MLflow with its spans, tags and feedback as assessments; health, readiness and metrics;
bad requests refused with a JSON error naming the field, writing nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from reasonloop.providers import build_live_service, build_tracker
from reasonloop.serving.app import LiveService, create_app
from reasonloop.settings import Settings, load_settings

from ..conftest import SAMPLE_CORPUS, read_jsonl, write_jsonl
from ..support.indexing import build_index
from ..support.openai_server import OpenAIServer, Reply, user_text

QUESTION = "Which NFL team represented the AFC at Super Bowl 50?"


def cot_reply(answer: str, cite: str) -> str:
    return json.dumps({"reasoning": {"problem": "p", "context": "c", "steps": ["s"], "verification": "v"},
                       "answer": answer, "citations": [cite], "confidence": 0.9})


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings over 12 SQuAD paragraphs, indexed once for the module."""
    root = tmp_path_factory.mktemp("served")
    corpus = write_jsonl(root / "corpus" / "tiny.jsonl", read_jsonl(SAMPLE_CORPUS)[:12]).parent
    settings = load_settings(state_dir=root / "state", corpus={"path": corpus})
    build_index(settings)
    return settings


def serve(settings: Settings) -> tuple[TestClient, LiveService]:
    service = build_live_service(settings, lambda: settings)
    return TestClient(create_app(service)), service


@pytest.fixture(scope="module")
def api(indexed: Settings) -> Iterator[tuple[TestClient, LiveService]]:
    client, service = serve(indexed)
    with client:
        yield client, service


def batch_answer(settings: Settings, question: str) -> Any:
    """The answer the nightly eval's path gives: retrieval and the answer task over the serving index."""
    from reasonloop.providers import build_embedder, build_reasoner, open_serving_index
    from reasonloop.reasoning.answering import answer_questions
    from reasonloop.reasoning.context import retrieve_chunks
    from reasonloop.schemas import Question

    embedder = build_embedder(settings)
    index = open_serving_index(settings, embedder)
    asked = [Question(id="q", question=question, reference="r")]
    contexts = retrieve_chunks(asked, index.retriever, settings.reasoning, settings.optimize)
    [answer] = answer_questions(asked, contexts, build_reasoner(settings, embedder, index), settings.llm.limits())
    return answer


def live_traces(settings: Settings, trace_id: str | None = None) -> list[Any]:
    import mlflow

    tracker = build_tracker(settings)
    experiment = tracker.experiment_id("live")
    if experiment is None:
        return []
    tracker.activate()
    where = f"tags.`reasonloop.trace_id` = '{trace_id}'" if trace_id else None
    return mlflow.search_traces(locations=[experiment], filter_string=where, return_type="list")


def test_a_question_is_answered_traced_and_its_feedback_assessed(api: tuple[TestClient, LiveService],
                                                                 indexed: Settings) -> None:
    client, service = api
    asked = client.post("/v1/ask", json={"question": QUESTION, "session_id": "s-1", "user_id": "u-1",
                                         "metadata": {"channel": "test"}})
    assert asked.status_code == 200, asked.text
    body = asked.json()
    assert body["answer"] == batch_answer(indexed, QUESTION).answer  # the nightly eval's engine, word for word
    assert body["citations"] and body["arm"] == "production"
    assert body["strategy"] == "chain_of_thought" and body["model"] == "extractive-minilm"
    assert body["index_version"].startswith("v1@") and body["prompt_versions"]["reasoning"].startswith(
        "chain_of_thought@v")
    rated = client.post("/v1/feedback", json={"trace_id": body["trace_id"], "rating": "down",
                                              "corrected_answer": "Denver Broncos", "comment": "too long"})
    assert rated.status_code == 200 and rated.json()["recorded"] == ["rating", "correction"]
    assert service.exporter.drain(60)

    [trace] = live_traces(indexed, body["trace_id"])
    tags, metadata = trace.info.tags, trace.info.trace_metadata
    assert tags["reasonloop.arm"] == "production" and tags["reasonloop.index_version"] == body["index_version"]
    assert json.loads(tags["reasonloop.prompt_versions"]) == body["prompt_versions"]
    assert metadata["mlflow.trace.session"] == "s-1" and metadata["mlflow.trace.user"] == "u-1"
    spans = {span.name: span for span in trace.data.spans}
    assert {"ask", "retrieve", "answer"} <= set(spans)
    assert spans["retrieve"].span_type == "RETRIEVER" and spans["retrieve"].outputs  # the chunks it read
    assert {c["id"] for c in spans["retrieve"].outputs} >= set(body["citations"])
    assert spans["answer"].span_type == "LLM" and spans["answer"].get_attribute("mlflow.chat.tokenUsage")
    assert spans["ask"].outputs["answer"] == body["answer"]
    assessments = {a.name: a for a in trace.info.assessments}
    assert assessments["user_rating"].feedback.value is False and assessments["user_rating"].rationale == "too long"
    assert assessments["expected_response"].expectation.value == "Denver Broncos"
    assert assessments["user_rating"].source.source_type == "HUMAN"


def test_health_readiness_and_metrics(api: tuple[TestClient, LiveService]) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    client, _ = api
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"ready": True, "problems": []}
    client.post("/v1/ask", json={"question": QUESTION})
    client.post("/v1/ask", json={"question": ""})
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    requests = {tuple(sorted(s.labels.items())): s.value for s in families["reasonloop_requests"].samples
                if s.name.endswith("_total")}
    assert requests[(("arm", "production"), ("endpoint", "/v1/ask"), ("status", "200"))] >= 1
    errors = {s.labels["kind"]: s.value for s in families["reasonloop_request_errors"].samples
              if s.name.endswith("_total")}
    assert errors["invalid_request"] >= 1
    assert any(s.name == "reasonloop_request_latency_seconds_count" and s.value >= 1
               for s in families["reasonloop_request_latency_seconds"].samples)
    assert [s.value for s in families["reasonloop_canary_share"].samples] == [0.0]
    assert {s.labels["kind"] for s in families["reasonloop_export_backlog"].samples} == {"answers", "feedback"}


TOO_LONG = "Why? " * 900  # 4,500 characters


@pytest.mark.parametrize(("path", "payload", "status", "field"), [
    ("/v1/ask", {}, 422, "question"),
    ("/v1/ask", {"question": "   "}, 422, "question"),
    ("/v1/ask", {"question": TOO_LONG}, 422, "question"),
    ("/v1/ask", {"question": QUESTION, "temperature": 2}, 422, "temperature"),
    ("/v1/ask", {"question": QUESTION, "session_id": "a b"}, 422, "session_id"),
    ("/v1/ask", {"question": QUESTION, "metadata": {f"k{i}": i for i in range(17)}}, 422, "metadata"),
    ("/v1/ask", {"question": QUESTION, "metadata": {"nested": {"a": 1}}}, 422, "metadata.nested"),
    ("/v1/ask", "not json", 422, "(body)"),
    ("/v1/feedback", {"trace_id": "0" * 32, "rating": "up"}, 404, "trace_id"),
    ("/v1/feedback", {"trace_id": "0" * 32, "rating": "meh"}, 422, "rating"),
    ("/v1/feedback", {"trace_id": "0" * 32}, 422, "(body)"),
    ("/v1/feedback", {"rating": "up"}, 422, "trace_id"),
    ("/v1/feedback", {"trace_id": "0" * 32, "corrected_answer": "x" * 8001}, 422, "corrected_answer"),
])
def test_a_bad_request_is_a_json_4xx_naming_the_field_and_writes_nothing(
        api: tuple[TestClient, LiveService], indexed: Settings, path: str, payload: Any, status: int,
        field: str) -> None:
    client, service = api
    assert service.exporter.drain(60)
    before = (service.spool.totals(), len(live_traces(indexed)))
    response = client.post(path, json=payload) if not isinstance(payload, str) else client.post(
        path, content=payload, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] in {"invalid_request", "unknown_trace"} and error["message"]
    assert any(f["field"].startswith(field) for f in error["fields"]), error
    assert service.exporter.drain(60)
    assert (service.spool.totals(), len(live_traces(indexed))) == before


def test_an_oversized_body_is_refused_unread(api: tuple[TestClient, LiveService]) -> None:
    client, service = api
    before = service.spool.totals()
    response = client.post("/v1/ask", content=b'{"question": "' + b"x" * 300_000 + b'"}',
                           headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json()["error"]["type"] == "too_large"
    assert service.spool.totals() == before


def test_without_an_index_it_is_not_ready_and_answers_nothing(tmp_path: Path) -> None:
    settings = load_settings(state_dir=tmp_path / "state")
    client, service = serve(settings)
    with client:
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "reasonloop reindex" in ready.json()["problems"][0]
        asked = client.post("/v1/ask", json={"question": QUESTION})
        assert asked.status_code == 503 and asked.json()["error"]["type"] == "unavailable"
        assert service.spool.totals() == (0, 0)


def test_an_llm_answers_through_the_http_client_and_its_failures_are_traced(indexed: Settings, tmp_path: Path) -> None:
    def responder(request: dict[str, Any]) -> Reply:
        if "Rhine" in user_text(request):
            return Reply(status=500, body='{"error": {"message": "down"}}')
        return Reply(content=cot_reply("Denver Broncos", "Super_Bowl_50#0::0::x"), prompt_tokens=120,
                     completion_tokens=30)

    with OpenAIServer(responder) as server:
        settings = indexed.updated({"llm": {"provider": "openai", "model": "scripted", "base_url": server.base_url,
                                            "max_retries": 1}})
        client, service = serve(settings)
        with client:
            ok = client.post("/v1/ask", json={"question": QUESTION})
            assert ok.status_code == 200 and ok.json()["answer"] == "Denver Broncos"
            assert ok.json()["model"] == "scripted"
            failed = client.post("/v1/ask", json={"question": "How long is the Rhine?"})
            assert failed.status_code == 502 and failed.json()["error"]["type"] == "upstream_error"
            assert len(server.calls) == 1 + 2  # the failed question was retried once
            assert service.exporter.drain(60)
    [trace] = live_traces(indexed, ok.json()["trace_id"])
    usage = next(s for s in trace.data.spans if s.name == "answer").get_attribute("mlflow.chat.tokenUsage")
    assert usage == {"input_tokens": 120, "output_tokens": 30, "total_tokens": 150}
    failed_trace = live_traces(indexed, failed.json()["error"]["message"].split("trace ")[1].split(")")[0])
    assert failed_trace and failed_trace[0].data.spans[0].outputs["error"]
